//! `artifacts/sweeps/ID/sweep.html`: a sweep on one self-contained page (same rules as
//! report.html: inline CSS and SVG, nothing fetched): the best point, a parallel-coordinates
//! plot of the swept parameters against the goal metric, and the table of points, sortable by
//! any column with a small inline script (the page reads fine without it).

use std::fmt::Write;

use pipeline_engine::experiment::sweep_spec::value_text;
use pipeline_engine::sweep::table::{PointStatus, SweepTable};

use super::charts::{self, AxisValue};
use super::escape::Esc;
use super::page;
use super::style::CHART_CSS;

/// The sortable columns' cursor and arrow, and the best point's row.
const SWEEP_CSS: &str = r#"
th.sortable { cursor: pointer; }
th.sortable::after { content: " \2195"; color: var(--muted); }
tr.best td { background: color-mix(in srgb, var(--ok) 12%, transparent); }
"#;

/// Sorts the table by the clicked column: numbers as numbers, the rest as text.
const SORT_SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    var asc = false;
    th.addEventListener("click", function () {
      asc = !asc;
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v") || a.cells[col].textContent;
        var y = b.cells[col].getAttribute("data-v") || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"#;

pub fn render(t: &SweepTable) -> String {
    let mut out = String::new();
    let _ = render_into(&mut out, t);
    out
}

fn render_into(out: &mut String, t: &SweepTable) -> std::fmt::Result {
    let metrics = t.metric_names();
    let best = t.best();
    page::open(
        out,
        &format!("sweep {}", t.id),
        &format!("{SWEEP_CSS}{CHART_CSS}\n"),
    )?;
    writeln!(out, "<h1>sweep {}</h1>", Esc(&t.id))?;
    let count = |s: PointStatus| t.points.iter().filter(|p| p.status == s).count();
    writeln!(
        out,
        "<p class=\"sub\">experiment <code>{}</code> ({}) · {} · {} points: {} succeeded, {} failed, {} pending · updated {}</p>",
        Esc(&t.experiment),
        Esc(&t.experiment_path),
        Esc(&t.search),
        t.points.len(),
        count(PointStatus::Succeeded),
        count(PointStatus::Failed),
        count(PointStatus::Pending),
        Esc(&t.updated)
    )?;
    if !t.base_overrides.is_empty() {
        writeln!(
            out,
            "<p class=\"sub\">every point with <code>{}</code></p>",
            Esc(&t.base_overrides.join(" "))
        )?;
    }

    writeln!(out, "<h2>Best point</h2>")?;
    match (best, &t.goal) {
        (Some(b), Some(goal)) => {
            writeln!(out, "<dl class=\"facts\">")?;
            writeln!(
                out,
                "<dt>goal</dt><dd><code>{}</code></dd>",
                Esc(&goal.to_string())
            )?;
            writeln!(
                out,
                "<dt>point</dt><dd>{:02}: <code>{}</code></dd>",
                b.point.index,
                Esc(&b.point.label())
            )?;
            if let Some(v) = b.metrics.get(&goal.metric) {
                writeln!(out, "<dt>{}</dt><dd>{v:.6}</dd>", Esc(&goal.metric))?;
            }
            if let Some(run) = &b.run {
                writeln!(
                    out,
                    "<dt>run</dt><dd><a href=\"../../runs/{0}/report.html\"><code>{0}</code></a></dd>",
                    Esc(run)
                )?;
            }
            writeln!(out, "</dl>")?;
        }
        _ => writeln!(
            out,
            "<p>No point has succeeded with the goal's metric yet.</p>"
        )?,
    }

    if let Some(goal) = &t.goal {
        writeln!(out, "<h2>Parameters against {}</h2>", Esc(&goal.metric))?;
        let mut axes: Vec<charts::Axis> = t
            .keys
            .iter()
            .map(|key| charts::Axis {
                title: key.clone(),
                values: t
                    .points
                    .iter()
                    .map(|p| {
                        p.point
                            .values
                            .iter()
                            .find(|v| &v.key == key)
                            .map(|v| match &v.value {
                                toml::Value::Integer(i) => AxisValue::Number(*i as f64),
                                toml::Value::Float(f) => AxisValue::Number(*f),
                                other => AxisValue::Text(value_text(other)),
                            })
                    })
                    .collect(),
            })
            .collect();
        let values: Vec<Option<f64>> = t
            .points
            .iter()
            .map(|p| {
                (p.status == PointStatus::Succeeded)
                    .then(|| p.metrics.get(&goal.metric).copied())
                    .flatten()
                    .filter(|v| v.is_finite())
            })
            .collect();
        axes.push(charts::Axis {
            title: goal.metric.clone(),
            values: values.iter().map(|v| v.map(AxisValue::Number)).collect(),
        });
        let (lo, hi) = values
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        let quality: Vec<Option<f64>> = values
            .iter()
            .map(|v| {
                v.map(|v| {
                    let q = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
                    if goal.maximize {
                        q
                    } else {
                        1.0 - q
                    }
                })
            })
            .collect();
        let best_index = best.and_then(|b| t.points.iter().position(|p| p.point == b.point));
        let labels: Vec<String> = t
            .points
            .iter()
            .map(|p| format!("point {:02}: {}", p.point.index, p.point.label()))
            .collect();
        writeln!(
            out,
            "<p class=\"sub\">one line per point, from blue (worst) to orange (best); the best point thick; failed points grey and dashed</p>\n<div class=\"scroll\">{}</div>",
            charts::parallel_coordinates(&axes, &quality, best_index, &labels)
        )?;
    }

    writeln!(out, "<h2>Points</h2>")?;
    writeln!(
        out,
        "<p class=\"sub\">click a column to sort; also in <a href=\"table.csv\">table.csv</a> and <a href=\"table.json\">table.json</a></p>"
    )?;
    writeln!(
        out,
        "<div class=\"scroll\"><table class=\"sortable\"><thead><tr>"
    )?;
    write!(out, "<th>point</th>")?;
    for k in &t.keys {
        write!(out, "<th>{}</th>", Esc(k))?;
    }
    write!(out, "<th>status</th>")?;
    for m in &metrics {
        write!(out, "<th>{}</th>", Esc(m))?;
    }
    writeln!(
        out,
        "<th>time</th><th>run</th><th>error</th><th>log</th></tr></thead><tbody>"
    )?;
    for p in &t.points {
        let is_best = best.is_some_and(|b| b.point == p.point);
        write!(out, "<tr{}>", if is_best { " class=\"best\"" } else { "" })?;
        write!(out, "<td class=\"num\">{:02}</td>", p.point.index)?;
        for k in &t.keys {
            let v = p
                .point
                .values
                .iter()
                .find(|v| &v.key == k)
                .map_or(String::new(), |v| value_text(&v.value));
            write!(out, "<td class=\"num\"><code>{}</code></td>", Esc(&v))?;
        }
        let status = match p.status {
            PointStatus::Pending => "pending",
            PointStatus::Succeeded => "succeeded",
            PointStatus::Failed => "failed",
        };
        write!(
            out,
            "<td><span class=\"badge {status}\">{status}</span></td>"
        )?;
        for m in &metrics {
            match p.metrics.get(m) {
                Some(v) => write!(out, "<td class=\"num\" data-v=\"{v}\">{v:.4}</td>")?,
                None => write!(out, "<td class=\"num\" data-v=\"\"></td>")?,
            }
        }
        match p.duration_s {
            Some(d) => write!(out, "<td class=\"num\" data-v=\"{d}\">{d:.1} s</td>")?,
            None => write!(out, "<td></td>")?,
        }
        match &p.run {
            Some(run) => write!(
                out,
                "<td><a href=\"../../runs/{0}/report.html\"><code>{0}</code></a></td>",
                Esc(run)
            )?,
            None => write!(out, "<td></td>")?,
        }
        write!(
            out,
            "<td class=\"failed\">{}</td><td><a href=\"{1}\">{1}</a></td></tr>",
            Esc(p.error.as_deref().unwrap_or("")),
            Esc(&p.log)
        )?;
        writeln!(out)?;
    }
    writeln!(out, "</tbody></table></div>")?;
    page::close(out, Some(SORT_SCRIPT))
}
