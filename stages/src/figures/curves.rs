//! Training versus validation curves per epoch: `accuracy` and `loss`.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{bold, colors, render, text, DrawResult, Figure, FigureError};
use crate::metrics::{EpochRecord, History};

/// Pixel size of `accuracy.png` and `loss.png`.
pub const HISTORY_SIZE: (u32, u32) = (900, 600);

/// Draws `accuracy.png/.svg` and `loss.png/.svg` into `out_dir`, training against validation
/// per epoch; returns the four paths. The validation curve is left out when the history has
/// none; NaN or infinite values (a diverged run) are skipped rather than drawn.
pub fn plot_history(history: &History, out_dir: &Path) -> Result<Vec<PathBuf>, FigureError> {
    let mut paths = Vec::with_capacity(4);
    for metric in [Metric::Accuracy, Metric::Loss] {
        let curves = Curves::new(history, metric);
        if curves.training.is_empty() && curves.validation.is_empty() {
            return Err(FigureError::Input {
                path: out_dir.join(format!("{}.png", metric.stem())),
                reason: format!("the history has no finite {} values", metric.stem()),
            });
        }
        paths.extend(render(&curves, out_dir, metric.stem())?);
    }
    Ok(paths)
}

#[derive(Clone, Copy)]
enum Metric {
    Accuracy,
    Loss,
}

impl Metric {
    fn stem(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss",
        }
    }

    /// The caption; it names the validation split's size where the history records it, since
    /// a curve over a handful of images swings by whole images' worth of accuracy.
    fn title(self, val_images: Option<u32>) -> String {
        let what = match self {
            Metric::Accuracy => "Accuracy per epoch: training vs validation",
            Metric::Loss => "Loss per epoch: training vs validation",
        };
        match val_images {
            Some(1) => format!("{what} (1 image)"),
            Some(n) => format!("{what} ({n} images)"),
            None => what.to_string(),
        }
    }

    fn axis(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss (binary cross-entropy)",
        }
    }

    fn training(self, e: &EpochRecord) -> Option<f64> {
        Some(match self {
            Metric::Accuracy => e.accuracy,
            Metric::Loss => e.loss,
        })
    }

    fn validation(self, e: &EpochRecord) -> Option<f64> {
        match self {
            Metric::Accuracy => e.val_accuracy,
            Metric::Loss => e.val_loss,
        }
    }
}

/// The two curves of one metric, as finite (epoch, value) points.
struct Curves {
    metric: Metric,
    /// The validation split's size, when the history records it.
    val_images: Option<u32>,
    training: Vec<(f64, f64)>,
    validation: Vec<(f64, f64)>,
}

impl Curves {
    fn new(history: &History, metric: Metric) -> Self {
        let points = |value: fn(Metric, &EpochRecord) -> Option<f64>| {
            history
                .epochs
                .iter()
                .filter_map(|e| Some((f64::from(e.epoch), value(metric, e)?)))
                .filter(|(_, v)| v.is_finite())
                .collect::<Vec<_>>()
        };
        Self {
            metric,
            val_images: history.epochs.iter().find_map(|e| e.val_images),
            training: points(Metric::training),
            validation: points(Metric::validation),
        }
    }

    fn all(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.training.iter().chain(&self.validation)
    }

    /// Epoch axis: the epochs plus a little room, so the first and last markers are not
    /// cut in half by the axes.
    fn x_range(&self) -> std::ops::Range<f64> {
        let first = self.all().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let last = self.all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let pad = (0.02 * (last - first)).max(0.5);
        first - pad..last + pad
    }

    /// Value axis: accuracy on [a round lower bound, 1], loss on [0, a bit above the max].
    fn y_range(&self) -> std::ops::Range<f64> {
        let low = self.all().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let high = self.all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        match self.metric {
            Metric::Accuracy => {
                // Down to the tenth below the lowest value, so early epochs stay visible but
                // a run that hovers near 1 is not squashed into a line at the top.
                let floor = ((low - 0.03) * 10.0).floor() / 10.0;
                floor.clamp(0.0, 0.9)..high.max(1.0) + 0.02
            }
            Metric::Loss => {
                let low = low.min(0.0);
                let high = if high > low { high } else { low + 1.0 };
                low..high + 0.05 * (high - low)
            }
        }
    }
}

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        HISTORY_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let root = root.margin(10, 10, 10, 25);
        let x_range = self.x_range();
        let x_labels = ((x_range.end - x_range.start).ceil() as usize + 1).min(10);
        let mut chart = ChartBuilder::on(&root)
            .caption(self.metric.title(self.val_images), bold(24.0))
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(x_range, self.y_range())?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT) // the fine mesh is too busy at this size
            .bold_line_style(colors::LIGHT_GRAY)
            .axis_style(colors::INK)
            .x_desc("epoch")
            .y_desc(self.metric.axis())
            .axis_desc_style(text(18.0))
            .label_style(text(15.0))
            // Few enough labels that plotters' step is at least one epoch; whole epochs only.
            .x_labels(x_labels)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;

        for (points, label, color) in [
            (&self.training, "training", colors::BLUE),
            (&self.validation, "validation", colors::ORANGE),
        ] {
            if points.is_empty() {
                continue;
            }
            let line = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), line))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
            // Markers keep a one-epoch run (a single point) visible.
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        let position = match self.metric {
            Metric::Accuracy => SeriesLabelPosition::LowerRight,
            Metric::Loss => SeriesLabelPosition::UpperRight,
        };
        chart
            .configure_series_labels()
            .position(position)
            .margin(12)
            .label_font(text(16.0))
            .background_style(WHITE.mix(0.9))
            .border_style(colors::GRAY)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{assert_png, assert_svg_contains, plausible_history};

    #[test]
    fn writes_both_figures_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let paths = plot_history(&plausible_history(12), dir.path()).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["accuracy.png", "accuracy.svg", "loss.png", "loss.svg"]
        );
        assert_png(&paths[0], HISTORY_SIZE);
        assert_png(&paths[2], HISTORY_SIZE);
        assert_svg_contains(&paths[1], &["Accuracy per epoch", "validation", "epoch"]);
        assert_svg_contains(&paths[3], &["Loss per epoch", "training"]);
    }

    #[test]
    fn the_caption_names_how_many_images_the_validation_curve_rests_on() {
        let mut history = plausible_history(3);
        let dir = tempfile::tempdir().unwrap();
        let paths = plot_history(&history, dir.path()).unwrap();
        let svg = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(!svg.contains("images)"), "no count recorded, none shown");
        for e in &mut history.epochs {
            e.val_images = Some(23);
        }
        let paths = plot_history(&history, dir.path()).unwrap();
        assert_svg_contains(&paths[1], &["training vs validation (23 images)"]);
        assert_svg_contains(&paths[3], &["training vs validation (23 images)"]);
    }

    #[test]
    fn ranges_fit_the_data() {
        let history = plausible_history(50);
        let accuracy = Curves::new(&history, Metric::Accuracy);
        let x = accuracy.x_range();
        // Two percent of the 49 epochs' span on each side.
        assert!(
            (x.start - 0.02).abs() < 1e-9 && (x.end - 50.98).abs() < 1e-9,
            "{x:?}"
        );
        let y = accuracy.y_range();
        assert!(y.start >= 0.0 && y.end > 1.0, "{y:?}");
        let loss = Curves::new(&history, Metric::Loss);
        let y = loss.y_range();
        let max = history.epochs.iter().map(|e| e.loss).fold(0.0, f64::max);
        assert_eq!(y.start, 0.0);
        assert!(y.end > max, "{y:?} vs {max}");
    }

    #[test]
    fn single_epoch_without_validation_still_draws() {
        let mut history = plausible_history(1);
        history.epochs[0].val_loss = None;
        history.epochs[0].val_accuracy = None;
        let curves = Curves::new(&history, Metric::Loss);
        assert_eq!(curves.x_range(), 0.5..1.5);
        assert!(curves.validation.is_empty());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(plot_history(&history, dir.path()).unwrap().len(), 4);
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut history = plausible_history(4);
        history.epochs[1].loss = f64::NAN;
        history.epochs[2].val_loss = Some(f64::INFINITY);
        let curves = Curves::new(&history, Metric::Loss);
        let epochs = |points: &[(f64, f64)]| points.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(epochs(&curves.training), [1.0, 3.0, 4.0]);
        assert_eq!(epochs(&curves.validation), [1.0, 2.0, 4.0]);
        assert!(curves.y_range().end.is_finite());
    }

    #[test]
    fn empty_history_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = plot_history(&History::default(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("accuracy.png"), "{error}");
    }
}
