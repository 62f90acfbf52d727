//! The ROC curve of the test set, its AUC in the legend, against the chance diagonal.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{bold, colors, render, text, DrawResult, EvaluatedSet, Figure, FigureError};
use crate::metrics::RocCurve;

/// Pixel size of `roc.png` (square, so the diagonal is at 45 degrees).
pub const ROC_SIZE: (u32, u32) = (700, 700);

/// Draws `roc.png/.svg` into `out_dir`. An empty curve (a test set with one class, where the
/// ROC is undefined) still gives a figure: the diagonal and a note saying why.
pub fn plot_roc(curve: &RocCurve, out_dir: &Path) -> Result<Vec<PathBuf>, FigureError> {
    plot_roc_of(curve, &EvaluatedSet::TestSplit, out_dir)
}

/// [`plot_roc`] for the images of `set`, named in the title.
pub fn plot_roc_of(
    curve: &RocCurve,
    set: &EvaluatedSet,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    render(&Roc(curve, set), out_dir, "roc")
}

struct Roc<'a>(&'a RocCurve, &'a EvaluatedSet);

impl Figure for Roc<'_> {
    fn size(&self) -> (u32, u32) {
        ROC_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let root = root.margin(10, 10, 10, 25);
        // A hair of room past 0 and 1 so curves along the edges are not hidden by the axes.
        let range = -0.01..1.01;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.1.roc_title(), bold(24.0))
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(range.clone(), range)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT) // the fine mesh is too busy at this size
            .bold_line_style(colors::LIGHT_GRAY)
            .axis_style(colors::INK)
            .x_desc("false positive rate (1 − specificity)")
            .y_desc("true positive rate (sensitivity)")
            .axis_desc_style(text(18.0))
            .label_style(text(15.0))
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()?;

        // The diagonal goes under the curve, but its legend entry after the curve's.
        let chance = colors::GRAY.stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            8,
            6,
            chance,
        ))?;
        match self.0.auc() {
            Some(auc) => {
                let line = colors::BLUE.stroke_width(3);
                chart
                    .draw_series(LineSeries::new(
                        self.0.points.iter().map(|p| (p.fpr, p.tpr)),
                        line,
                    ))?
                    .label(format!("ROC (AUC = {auc:.3})"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
            }
            None => {
                chart.plotting_area().draw(&Text::new(
                    self.1.one_class_note(),
                    // Top left, clear of the diagonal.
                    (0.04, 0.9),
                    text(18.0).pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
        }
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label("chance (AUC = 0.5)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], chance));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(14)
            .label_font(text(17.0))
            .background_style(WHITE.mix(0.9))
            .border_style(colors::GRAY)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{assert_png, assert_svg_contains};
    use crate::metrics::roc_curve;

    #[test]
    fn curve_and_auc_in_the_legend() {
        let dir = tempfile::tempdir().unwrap();
        let curve = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        let paths = plot_roc(&curve, dir.path()).unwrap();
        assert_png(&paths[0], ROC_SIZE);
        assert_svg_contains(
            &paths[1],
            &["ROC curve on the test set", "AUC = 0.750", "chance"],
        );
    }

    #[test]
    fn undefined_curve_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let paths = plot_roc(&RocCurve::default(), dir.path()).unwrap();
        assert_png(&paths[0], ROC_SIZE);
        assert_svg_contains(&paths[1], &["only one class"]);
    }
}
