//! Small inline SVG charts for the self-contained pages `sweep.html` and `compare.html`: a
//! parallel-coordinates plot (a sweep's parameters against its metric) and a line chart
//! (learning curves, ROC curves of several runs overlaid). No scripts, no network: plain SVG
//! text, so a page opens anywhere and stays the same bytes for the same data. The plot bounds
//! ([`bounds`]) and tick labels ([`number_text`]) are also those of `compare`'s terminal plot.

use std::fmt::Write;

use super::escape::Esc;

/// A plot's x and y ranges: `((x_min, x_max), (y_min, y_max))`.
pub type Bounds = ((f64, f64), (f64, f64));

/// The ranges spanning `points`, a range of one value widened by 0.5 each way (one epoch, a
/// flat curve) so that placing a point never divides by zero. NaN coordinates are skipped (as
/// `f64::min` and `max` skip them); with no points at all the ranges are infinite and empty,
/// which a caller checks with `x_min.is_finite()`.
pub fn bounds<'a>(points: impl IntoIterator<Item = &'a (f64, f64)>) -> Bounds {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    let pad = |a: f64, b: f64| if b > a { (a, b) } else { (a - 0.5, b + 0.5) };
    (pad(x0, x1), pad(y0, y1))
}

/// Colours that stay apart for the first runs of a comparison (Okabe-Ito, colour-blind safe).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8A7A00", "#555555",
];

/// One value on a parallel-coordinates axis.
#[derive(Debug, Clone, PartialEq)]
pub enum AxisValue {
    Number(f64),
    Text(String),
}

/// One vertical axis: its title and each line's value on it (`None`: the line has none, e.g.
/// the metric of a failed point).
pub struct Axis {
    pub title: String,
    pub values: Vec<Option<AxisValue>>,
}

/// Where a value sits on an axis, from 0 (bottom) to 1 (top); `None` when it is not on it.
type Position = Box<dyn Fn(&AxisValue) -> Option<f64>>;

/// An axis' placement of values and its tick labels.
struct Scale {
    ticks: Vec<(f64, String)>,
    position: Position,
}

fn scale(values: &[Option<AxisValue>]) -> Scale {
    let numbers: Vec<f64> = values
        .iter()
        .flatten()
        .filter_map(|v| match v {
            AxisValue::Number(x) if x.is_finite() => Some(*x),
            _ => None,
        })
        .collect();
    let all_numeric = values
        .iter()
        .flatten()
        .all(|v| matches!(v, AxisValue::Number(x) if x.is_finite()));
    if all_numeric && !numbers.is_empty() {
        let lo = numbers.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Learning rates and unit counts (32..256) spread over factors: a log axis spaces
        // them evenly.
        let log = lo > 0.0 && hi / lo >= 8.0;
        let t = move |x: f64| if log { x.ln() } else { x };
        let (a, b) = (t(lo), t(hi));
        let span = if b > a { b - a } else { 1.0 };
        let position = move |v: &AxisValue| match v {
            AxisValue::Number(x) if x.is_finite() => {
                Some(if b > a { (t(*x) - a) / span } else { 0.5 })
            }
            _ => None,
        };
        let mut distinct: Vec<f64> = numbers.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let ticks = if distinct.len() <= 6 {
            distinct
        } else {
            vec![lo, hi]
        };
        let ticks = ticks
            .into_iter()
            .filter_map(|x| position(&AxisValue::Number(x)).map(|p| (p, number_text(x))))
            .collect();
        return Scale {
            ticks,
            position: Box::new(position),
        };
    }
    let mut categories: Vec<String> = Vec::new();
    for v in values.iter().flatten() {
        let text = match v {
            AxisValue::Number(x) => number_text(*x),
            AxisValue::Text(s) => s.clone(),
        };
        if !categories.contains(&text) {
            categories.push(text);
        }
    }
    let n = categories.len();
    let at = move |i: usize| {
        if n <= 1 {
            0.5
        } else {
            i as f64 / (n - 1) as f64
        }
    };
    let ticks = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (at(i), c.clone()))
        .collect();
    let position = move |v: &AxisValue| {
        let text = match v {
            AxisValue::Number(x) => number_text(*x),
            AxisValue::Text(s) => s.clone(),
        };
        categories.iter().position(|c| *c == text).map(at)
    };
    Scale {
        ticks,
        position: Box::new(position),
    }
}

/// A number as a tick label: short, and exact for the values people sweep (1e-4, 0.2, 64).
pub fn number_text(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').to_string()
    }
}

/// A colour from blue (worst) to orange (best) for `t` in 0..=1.
fn ramp(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let (r0, g0, b0) = (0x33 as f64, 0x66 as f64, 0xcc as f64);
    let (r1, g1, b1) = (0xe6 as f64, 0x7e as f64, 0x00 as f64);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(r0, r1), mix(g0, g1), mix(b0, b1))
}

/// Parallel coordinates: one vertical axis per entry of `axes` (the parameters, then the
/// metric last), one line per point, coloured by `quality` (0 worst .. 1 best; `None`: a
/// failed point, drawn dashed in grey). `best` is drawn on top, thicker.
pub fn parallel_coordinates(
    axes: &[Axis],
    quality: &[Option<f64>],
    best: Option<usize>,
    labels: &[String],
) -> String {
    let (w, h) = (160.0 * axes.len().max(2) as f64, 360.0);
    let (top, bottom, left, right) = (40.0, 30.0, 70.0, 70.0);
    let x_of = |i: usize| {
        left + if axes.len() <= 1 {
            0.0
        } else {
            (w - left - right) * i as f64 / (axes.len() - 1) as f64
        }
    };
    let y_of = |p: f64| top + (h - top - bottom) * (1.0 - p);
    let scales: Vec<Scale> = axes.iter().map(|a| scale(&a.values)).collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="parallel coordinates" xmlns="http://www.w3.org/2000/svg" font-size="12" font-family="system-ui, sans-serif">"#
    );
    let lines = quality.len();
    let mut order: Vec<usize> = (0..lines).filter(|&i| Some(i) != best).collect();
    order.extend(best);
    for i in order {
        let mut points = Vec::new();
        for (a, axis) in axes.iter().enumerate() {
            if let Some(p) = axis
                .values
                .get(i)
                .and_then(|v| v.as_ref())
                .and_then(|v| (scales[a].position)(v))
            {
                points.push(format!("{:.1},{:.1}", x_of(a), y_of(p)));
            }
        }
        let (stroke, width, dash) = match quality.get(i).copied().flatten() {
            Some(q) if Some(i) == best => (ramp(q), 3.5, ""),
            Some(q) => (ramp(q), 1.6, ""),
            None => ("#999999".to_string(), 1.2, r#" stroke-dasharray="4 3""#),
        };
        let label = labels.get(i).map_or(String::new(), |l| l.clone());
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="{width}" stroke-opacity="0.85"{dash} points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            Esc(&label)
        );
    }
    for (a, axis) in axes.iter().enumerate() {
        let x = x_of(a);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="currentColor" stroke-opacity="0.6"/>"#,
            h - bottom
        );
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="600" fill="currentColor">{}</text>"#,
            top - 16.0,
            Esc(&axis.title)
        );
        for (p, text) in &scales[a].ticks {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="currentColor" fill-opacity="0.75">{}</text>"#,
                x - 5.0,
                y_of(*p) + 4.0,
                Esc(text)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (validation curves, the chance diagonal).
    pub dashed: bool,
    pub color: String,
}

/// A line chart with linear axes spanning the data (or `fixed` bounds), and a legend.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    fixed: Option<Bounds>,
) -> String {
    let (w, h) = (560.0, 360.0);
    let (top, bottom, left, right) = (34.0, 44.0, 56.0, 16.0);
    let all = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let ((x0, x1), (y0, y1)) = fixed.unwrap_or_else(|| {
        let spanned = bounds(all);
        if spanned.0 .0.is_finite() {
            spanned
        } else {
            // No finite point: an empty unit square rather than a chart of infinities.
            ((0.0, 1.0), (0.0, 1.0))
        }
    });
    let px = |x: f64| left + (w - left - right) * (x - x0) / (x1 - x0);
    let py = |y: f64| top + (h - top - bottom) * (1.0 - (y - y0) / (y1 - y0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" font-size="12" font-family="system-ui, sans-serif"><text x="{cx}" y="18" text-anchor="middle" font-weight="600" fill="currentColor">{t}</text>"#,
        t = Esc(title),
        cx = w / 2.0
    );
    let _ = write!(
        s,
        r#"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="currentColor" stroke-opacity="0.5"/>"#,
        w - left - right,
        h - top - bottom
    );
    for i in 0..=4 {
        let fx = x0 + (x1 - x0) * i as f64 / 4.0;
        let fy = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="currentColor" fill-opacity="0.75">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="currentColor" fill-opacity="0.75">{}</text>"#,
            px(fx),
            h - bottom + 16.0,
            number_text(fx),
            left - 5.0,
            py(fy) + 4.0,
            number_text(fy)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="currentColor">{}</text><text x="14" y="{:.1}" text-anchor="middle" fill="currentColor" transform="rotate(-90 14 {:.1})">{}</text>"#,
        left + (w - left - right) / 2.0,
        h - 8.0,
        Esc(x_label),
        top + (h - top - bottom) / 2.0,
        top + (h - top - bottom) / 2.0,
        Esc(y_label)
    );
    for line in series {
        let pts: Vec<String> = line
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dash = if line.dashed {
            r#" stroke-dasharray="5 4""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"><title>{}</title></polyline>"#,
            line.color,
            pts.join(" "),
            Esc(&line.name)
        );
    }
    for (i, line) in series.iter().enumerate() {
        let y = top + 14.0 + 16.0 * i as f64;
        let dash = if line.dashed {
            r#" stroke-dasharray="5 4""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" fill="currentColor">{}</text>"#,
            w - right - 190.0,
            w - right - 166.0,
            line.color,
            w - right - 160.0,
            y + 4.0,
            Esc(&line.name)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_span_the_points_and_widen_a_single_value() {
        assert_eq!(
            bounds(&[(1.0, 0.5), (3.0, 0.25), (2.0, f64::NAN)]),
            ((1.0, 3.0), (0.25, 0.5))
        );
        assert_eq!(bounds(&[(2.0, 0.75)]), ((1.5, 2.5), (0.25, 1.25)));
        let ((x0, _), _) = bounds(std::iter::empty());
        assert!(!x0.is_finite());
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number_text(64.0), "64");
        assert_eq!(number_text(0.2), "0.2");
        assert_eq!(number_text(1e-4), "1e-4");
        assert_eq!(number_text(0.0), "0");
    }

    #[test]
    fn wide_positive_ranges_get_a_log_axis_and_text_is_categorical() {
        let lr = scale(&[
            Some(AxisValue::Number(1e-4)),
            Some(AxisValue::Number(1e-3)),
            Some(AxisValue::Number(1e-2)),
        ]);
        let mid = (lr.position)(&AxisValue::Number(1e-3)).expect("on the axis");
        assert!((mid - 0.5).abs() < 1e-12, "{mid}");
        let conv = scale(&[
            Some(AxisValue::Text("direct".into())),
            None,
            Some(AxisValue::Text("winograd".into())),
        ]);
        assert_eq!(
            (conv.position)(&AxisValue::Text("winograd".into())),
            Some(1.0)
        );
        assert_eq!(conv.ticks.len(), 2);
    }

    #[test]
    fn charts_escape_names_and_draw_one_line_per_series() {
        let svg = line_chart(
            "loss",
            "epoch",
            "loss",
            &[
                Series {
                    name: "a<b".into(),
                    points: vec![(1.0, 0.5), (2.0, 0.25)],
                    dashed: false,
                    color: PALETTE[0].into(),
                },
                Series {
                    name: "c".into(),
                    points: vec![(1.0, 0.7)],
                    dashed: true,
                    color: PALETTE[1].into(),
                },
            ],
            None,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(!svg.contains("<script"));
    }
}
