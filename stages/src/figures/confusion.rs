//! The 2 x 2 confusion-matrix heatmap: counts and shares of all test images.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{bold, colors, percent, render, text, DrawResult, EvaluatedSet, Figure, FigureError};
use crate::metrics::{ClassNames, ConfusionMatrix};

/// Pixel size of `confusion.png`.
pub const CONFUSION_SIZE: (u32, u32) = (780, 580);

/// Draws `confusion.png/.svg` into `out_dir`: true label on the rows, predicted label on the
/// columns, each cell annotated with its count and its share of all test images (the seed's
/// normalisation), coloured on a scale from 0 to the largest share rounded up to 10 %.
pub fn plot_confusion(
    matrix: &ConfusionMatrix,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    plot_confusion_of(
        matrix,
        &ClassNames::default_binary(),
        &EvaluatedSet::TestSplit,
        out_dir,
    )
}

/// [`plot_confusion`] of the two classes `classes` (label 0 first) for the images of `set`,
/// named in the titles.
pub fn plot_confusion_of(
    matrix: &ConfusionMatrix,
    classes: &ClassNames,
    set: &EvaluatedSet,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    if matrix.total() == 0 {
        return Err(FigureError::Input {
            path: out_dir.join("confusion.png"),
            reason: "the confusion matrix is empty".to_owned(),
        });
    }
    let names = [classes.name(0).to_owned(), classes.name(1).to_owned()];
    render(&Heatmap(*matrix, set.clone(), names), out_dir, "confusion")
}

struct Heatmap(ConfusionMatrix, EvaluatedSet, [String; 2]);

// Layout in pixels: the 2 x 2 grid, then the colour bar to its right.
const GRID_LEFT: i32 = 190;
const GRID_TOP: i32 = 100;
const CELL: i32 = 185;
const BAR_LEFT: i32 = GRID_LEFT + 2 * CELL + 45;
const BAR_WIDTH: i32 = 26;

/// What each cell means, indexed like the matrix rows (true, predicted).
const ROLES: [[&str; 2]; 2] = [
    ["true negative", "false positive"],
    ["false negative", "true positive"],
];

pub(super) fn centred(style: TextStyle<'_>) -> TextStyle<'_> {
    style.pos(Pos::new(HPos::Center, VPos::Center))
}

/// One line of a heatmap cell: its text, its offset below the cell's centre, its font.
pub(super) struct CellLine<'a> {
    pub text: &'a str,
    pub dy: i32,
    pub style: TextStyle<'static>,
}

/// One cell of a confusion heatmap (the two-class one and the C-class one): the fill, a thin
/// border, and its lines centred on the cell, white on a dark fill and ink on a light one.
pub(super) fn draw_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    side: i32,
    fill: RGBColor,
    lines: &[CellLine<'_>],
) -> DrawResult<DB> {
    let corners = [(x, y), (x + side, y + side)];
    root.draw(&Rectangle::new(corners, fill.filled()))?;
    root.draw(&Rectangle::new(corners, colors::INK.stroke_width(1)))?;
    let ink = if colors::is_dark(fill) {
        WHITE
    } else {
        colors::INK
    };
    let (cx, cy) = (x + side / 2, y + side / 2);
    for line in lines {
        root.draw(&Text::new(
            line.text,
            (cx, cy + line.dy),
            centred(line.style.clone().color(&ink)),
        ))?;
    }
    Ok(())
}

impl Heatmap {
    /// Top of the colour scale: the largest share rounded up to a tenth.
    fn scale_max(&self) -> f64 {
        let max = self
            .0
            .fractions()
            .iter()
            .flatten()
            .fold(0.0f64, |a, &b| a.max(b));
        ((max * 10.0).ceil() / 10.0).max(0.1)
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        CONFUSION_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let m = &self.0;
        let total = m.total();
        let correct = m.true_negatives + m.true_positives;
        let scale = self.scale_max();
        let (width, _) = CONFUSION_SIZE;
        let mid_x = (width / 2) as i32;
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            self.1.confusion_title(correct, total),
            (mid_x, 32),
            centred(bold(24.0)),
        ))?;
        root.draw(&Text::new(
            self.1.confusion_subtitle(correct, total),
            (mid_x, 64),
            centred(text(16.0)),
        ))?;

        let fractions = m.fractions();
        let counts = m.rows();
        for (t, row) in counts.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let corner = (GRID_LEFT + p as i32 * CELL, GRID_TOP + t as i32 * CELL);
                let fill = colors::blues(fractions[t][p] / scale);
                let (count, share) = (count.to_string(), percent(fractions[t][p]));
                let lines = [
                    CellLine {
                        text: &count,
                        dy: -26,
                        style: bold(36.0),
                    },
                    CellLine {
                        text: &share,
                        dy: 14,
                        style: text(21.0),
                    },
                    CellLine {
                        text: ROLES[t][p],
                        dy: 46,
                        style: text(15.0),
                    },
                ];
                draw_cell(root, corner, CELL, fill, &lines)?;
            }
        }

        // Class names: true on the rows (left), predicted on the columns (below).
        let grid_bottom = GRID_TOP + 2 * CELL;
        for (i, name) in self.2.iter().enumerate() {
            let along = i as i32 * CELL + CELL / 2;
            root.draw(&Text::new(
                name.as_str(),
                (GRID_LEFT - 12, GRID_TOP + along),
                text(19.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                name.as_str(),
                (GRID_LEFT + along, grid_bottom + 22),
                centred(text(19.0)),
            ))?;
        }
        root.draw(&Text::new(
            "True label",
            (45, GRID_TOP + CELL),
            centred(bold(20.0).transform(FontTransform::Rotate270)),
        ))?;
        root.draw(&Text::new(
            "Predicted label",
            (GRID_LEFT + CELL, grid_bottom + 62),
            centred(bold(20.0)),
        ))?;

        // Colour bar: a stack of thin bands from the scale's top (dark) to 0 (white).
        let bands = 100;
        let height = 2 * CELL;
        for i in 0..bands {
            let y0 = GRID_TOP + height * i / bands;
            let y1 = GRID_TOP + height * (i + 1) / bands;
            let t = 1.0 - (f64::from(i) + 0.5) / f64::from(bands);
            root.draw(&Rectangle::new(
                [(BAR_LEFT, y0), (BAR_LEFT + BAR_WIDTH, y1)],
                colors::blues(t).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(BAR_LEFT, GRID_TOP), (BAR_LEFT + BAR_WIDTH, grid_bottom)],
            colors::INK.stroke_width(1),
        ))?;
        let ticks = (scale * 10.0).round() as i32;
        // At most six labels so they never crowd: every tenth, or every fifth of the scale.
        let step = if ticks <= 5 { 1 } else { 2 };
        for k in (0..=ticks).filter(|k| k % step == 0 || *k == ticks) {
            let y = grid_bottom - height * k / ticks;
            root.draw(&PathElement::new(
                vec![(BAR_LEFT + BAR_WIDTH, y), (BAR_LEFT + BAR_WIDTH + 6, y)],
                colors::INK,
            ))?;
            root.draw(&Text::new(
                format!("{} %", 10 * k),
                (BAR_LEFT + BAR_WIDTH + 10, y),
                text(15.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            self.1.share_label(),
            (BAR_LEFT + BAR_WIDTH + 75, GRID_TOP + CELL),
            centred(text(16.0).transform(FontTransform::Rotate90)),
        ))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{assert_png, assert_svg_contains, svg_texts};

    #[test]
    fn seed_matrix_is_drawn_and_annotated() {
        let dir = tempfile::tempdir().unwrap();
        let m = ConfusionMatrix::from_rows([[22, 0], [1, 32]]);
        let paths = plot_confusion(&m, dir.path()).unwrap();
        assert_png(&paths[0], CONFUSION_SIZE);
        assert_svg_contains(
            &paths[1],
            &[
                "Confusion matrix: 54 of 55 test images correct",
                "58.2 %",
                "40.0 %",
                "1.8 %",
                "Predicted label",
                "True label",
                "NORMAL",
                "COVID",
            ],
        );
        let cells = svg_texts(&paths[1]);
        for count in ["22", "0", "1", "32"] {
            assert!(cells.iter().any(|t| t == count), "no cell says {count}");
        }
        let names = ["NORMAL".to_string(), "COVID".to_string()];
        assert_eq!(Heatmap(m, EvaluatedSet::TestSplit, names).scale_max(), 0.6);
    }

    #[test]
    fn empty_matrix_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = plot_confusion(&ConfusionMatrix::default(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("confusion.png"), "{error}");
    }
}
