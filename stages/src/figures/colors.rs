//! The few colours the figures share, chosen to stay distinct for colour-blind readers.

use plotters::style::RGBColor;

/// Text and axes.
pub(crate) const INK: RGBColor = RGBColor(33, 33, 33);
/// Training curves and the ROC curve (matplotlib's default blue).
pub(crate) const BLUE: RGBColor = RGBColor(31, 119, 180);
/// Validation curves (matplotlib's default orange).
pub(crate) const ORANGE: RGBColor = RGBColor(255, 127, 14);
/// Misclassified images and their captions.
pub(crate) const ERROR_RED: RGBColor = RGBColor(214, 39, 40);
/// Reference lines such as the ROC chance diagonal.
pub(crate) const GRAY: RGBColor = RGBColor(130, 130, 130);
/// Light frames and grid lines.
pub(crate) const LIGHT_GRAY: RGBColor = RGBColor(215, 215, 215);

/// One colour per class in the one-vs-rest ROC curves (matplotlib's "tab10", in order,
/// cycled past ten classes).
pub(crate) const CATEGORIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A sequential white-to-blue scale for `t` in [0, 1] (like matplotlib's "Blues").
pub(crate) fn blues(t: f64) -> RGBColor {
    // Piecewise-linear through a few stops of "Blues"; enough for a 2 x 2 heatmap.
    const STOPS: [(f64, [f64; 3]); 4] = [
        (0.0, [247.0, 251.0, 255.0]),
        (0.35, [158.0, 202.0, 225.0]),
        (0.7, [49.0, 130.0, 189.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let upper = STOPS.iter().position(|(s, _)| *s >= t).unwrap_or(3).max(1);
    let (t0, c0) = STOPS[upper - 1];
    let (t1, c1) = STOPS[upper];
    let u = (t - t0) / (t1 - t0);
    let mix = |i: usize| (c0[i] + u * (c1[i] - c0[i])).round() as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

/// Whether text on `background` should be white rather than dark, by perceived luminance.
pub(crate) fn is_dark(background: RGBColor) -> bool {
    let RGBColor(r, g, b) = background;
    0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b) < 140.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blues_runs_from_white_to_dark_blue() {
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(blues(0.35), RGBColor(158, 202, 225));
        assert_eq!(blues(f64::NAN), blues(0.0));
        assert_eq!(blues(7.0), blues(1.0));
        assert!(!is_dark(blues(0.1)));
        assert!(is_dark(blues(0.9)));
    }
}
