//! The figures of an evaluation with three or more classes: the C x C confusion heatmap
//! (counts and row shares) and every class's one-vs-rest ROC curve in one plot.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::confusion::{centred, draw_cell, CellLine};
use super::{bold, colors, percent, render, text, DrawResult, EvaluatedSet, Figure, FigureError};
use crate::metrics::ClassResults;

/// The side of the C x C grid in pixels, whatever C.
const GRID: i32 = 560;
const GRID_LEFT: i32 = 200;
const GRID_TOP: i32 = 100;
const BAR_WIDTH: i32 = 26;

/// Pixel size of a C-class `confusion.png`.
pub const CLASS_CONFUSION_SIZE: (u32, u32) = (
    (GRID_LEFT + GRID + 170) as u32,
    (GRID_TOP + GRID + 110) as u32,
);

/// Pixel size of a C-class `roc.png` (square, as the two-class one).
pub const CLASS_ROC_SIZE: (u32, u32) = (760, 760);

/// Draws `confusion.png/.svg`: true class on the rows, predicted class on the columns, each
/// cell with its count and its share of the row (the true class's recall on the diagonal),
/// coloured by that share; a row of a class absent from the set says `n/a`.
pub fn plot_class_confusion(
    results: &ClassResults,
    set: &EvaluatedSet,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    if results.total() == 0 {
        return Err(FigureError::Input {
            path: out_dir.join("confusion.png"),
            reason: "the confusion matrix is empty".to_owned(),
        });
    }
    render(&Matrix(results, set), out_dir, "confusion")
}

/// Draws `roc.png/.svg`: each class's one-vs-rest ROC curve in its own colour, the legend
/// naming the class and its AUC (or why it has no curve), the macro AUC in the corner.
pub fn plot_class_roc(
    results: &ClassResults,
    set: &EvaluatedSet,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    render(&Curves(results, set), out_dir, "roc")
}

struct Matrix<'a>(&'a ClassResults, &'a EvaluatedSet);

/// The share of row `t` in cell `p`; `None` for a row without images.
fn row_share(confusion: &[Vec<u64>], t: usize, p: usize) -> Option<f64> {
    let total: u64 = confusion[t].iter().sum();
    (total > 0).then(|| confusion[t][p] as f64 / total as f64)
}

impl Figure for Matrix<'_> {
    fn size(&self) -> (u32, u32) {
        CLASS_CONFUSION_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let results = self.0;
        let confusion = &results.evaluation.confusion;
        let c = confusion.len() as i32;
        let cell = GRID / c;
        let grid = cell * c;
        // Cell text shrinks with the cell so that ten classes still fit.
        let scale = (f64::from(cell) / 185.0).min(1.0);
        let total = results.total();
        let correct = results.evaluation.accuracy.successes;
        let mid_x = (CLASS_CONFUSION_SIZE.0 / 2) as i32;
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            self.1.confusion_title(correct, total),
            (mid_x, 32),
            centred(bold(24.0)),
        ))?;
        root.draw(&Text::new(
            self.1.class_confusion_subtitle(correct, total),
            (mid_x, 64),
            centred(text(16.0)),
        ))?;
        for t in 0..confusion.len() {
            for p in 0..confusion.len() {
                let share = row_share(confusion, t, p);
                let corner = (GRID_LEFT + p as i32 * cell, GRID_TOP + t as i32 * cell);
                let fill = colors::blues(share.unwrap_or(0.0));
                let count = confusion[t][p].to_string();
                let share = share.map_or("n/a".to_string(), percent);
                let lines = [
                    CellLine {
                        text: &count,
                        dy: -(18.0 * scale) as i32,
                        style: bold(34.0 * scale),
                    },
                    CellLine {
                        text: &share,
                        dy: (20.0 * scale) as i32,
                        style: text(20.0 * scale),
                    },
                ];
                draw_cell(root, corner, cell, fill, &lines)?;
            }
        }
        let grid_bottom = GRID_TOP + grid;
        for (i, name) in results.classes.names().iter().enumerate() {
            let along = i as i32 * cell + cell / 2;
            root.draw(&Text::new(
                name.as_str(),
                (GRID_LEFT - 12, GRID_TOP + along),
                text(18.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                name.as_str(),
                (GRID_LEFT + along, grid_bottom + 22),
                centred(text(18.0)),
            ))?;
        }
        root.draw(&Text::new(
            "True class",
            (30, GRID_TOP + grid / 2),
            centred(bold(20.0).transform(FontTransform::Rotate270)),
        ))?;
        root.draw(&Text::new(
            "Predicted class",
            (GRID_LEFT + grid / 2, grid_bottom + 62),
            centred(bold(20.0)),
        ))?;
        // Colour bar: row share from 100 % (dark) to 0 (white).
        let bar_left = GRID_LEFT + grid + 40;
        let bands = 100;
        for i in 0..bands {
            let y0 = GRID_TOP + grid * i / bands;
            let y1 = GRID_TOP + grid * (i + 1) / bands;
            let t = 1.0 - (f64::from(i) + 0.5) / f64::from(bands);
            root.draw(&Rectangle::new(
                [(bar_left, y0), (bar_left + BAR_WIDTH, y1)],
                colors::blues(t).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bar_left, GRID_TOP), (bar_left + BAR_WIDTH, grid_bottom)],
            colors::INK.stroke_width(1),
        ))?;
        for k in (0..=10).step_by(2) {
            let y = grid_bottom - grid * k / 10;
            root.draw(&PathElement::new(
                vec![(bar_left + BAR_WIDTH, y), (bar_left + BAR_WIDTH + 6, y)],
                colors::INK,
            ))?;
            root.draw(&Text::new(
                format!("{} %", 10 * k),
                (bar_left + BAR_WIDTH + 10, y),
                text(15.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            "share of the true class",
            (bar_left + BAR_WIDTH + 80, GRID_TOP + grid / 2),
            centred(text(16.0).transform(FontTransform::Rotate90)),
        ))?;
        Ok(())
    }
}

struct Curves<'a>(&'a ClassResults, &'a EvaluatedSet);

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        CLASS_ROC_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let results = self.0;
        root.fill(&WHITE)?;
        let root = root.margin(10, 10, 10, 25);
        let range = -0.01..1.01;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.1.class_roc_title(), bold(22.0))
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(range.clone(), range)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(colors::LIGHT_GRAY)
            .axis_style(colors::INK)
            .x_desc("false positive rate (1 − specificity)")
            .y_desc("true positive rate (sensitivity)")
            .axis_desc_style(text(18.0))
            .label_style(text(15.0))
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()?;
        let chance = colors::GRAY.stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            8,
            6,
            chance,
        ))?;
        for (k, class) in results.evaluation.classes.iter().enumerate() {
            let name = results.classes.name(k);
            let line = colors::CATEGORIES[k % colors::CATEGORIES.len()].stroke_width(3);
            let (points, label) = match class.auc {
                Some(auc) => (
                    results.roc[k]
                        .points
                        .iter()
                        .map(|p| (p.fpr, p.tpr))
                        .collect(),
                    format!("{name} (AUC = {auc:.3})"),
                ),
                None if class.support == 0 => (Vec::new(), format!("{name}: absent, no curve")),
                None => (Vec::new(), format!("{name}: the only class, no curve")),
            };
            chart
                .draw_series(LineSeries::new(points, line))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
        }
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label("chance (AUC = 0.5)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], chance));
        let macro_auc = results
            .evaluation
            .macro_auc
            .map_or("macro AUC: n/a".to_string(), |a| {
                format!("macro AUC = {a:.3}")
            });
        chart.plotting_area().draw(&Text::new(
            macro_auc,
            (0.04, 0.95),
            bold(18.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(14)
            .label_font(text(16.0))
            .background_style(WHITE.mix(0.9))
            .border_style(colors::GRAY)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
