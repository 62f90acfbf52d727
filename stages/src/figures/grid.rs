//! The grid of test images captioned with predicted and true class and a probability, errors
//! framed in red. Class names and the decisions come from the evaluate stage's
//! `predictions.csv`, so the grid shows what the metrics counted, for two classes or more.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{bold, colors, render, text, DrawResult, Figure, FigureError};

/// The most images one grid shows (6 x 6): beyond that the thumbnails get too small to read.
pub const MAX_GRID_IMAGES: usize = 36;

const COLUMNS: usize = 6;
/// Thumbnails are scaled to fit this square, keeping their aspect ratio.
const THUMB: u32 = 170;
const CELL_WIDTH: u32 = 200;
const CELL_HEIGHT: u32 = 236;
const HEADER: u32 = 84;
const MARGIN: u32 = 20;
/// Wide enough for the title and subtitle even when only a few images are shown.
const MIN_WIDTH: u32 = 820;
/// Width of the frame around a misclassified image.
const ERROR_FRAME: i32 = 5;

/// One test image with its true and predicted class and the probability its caption shows.
#[derive(Debug, Clone, Copy)]
pub struct PredictionSample<'a> {
    /// `height x width x 3` RGB bytes, row-major (the layout of the seed's `X_Train.npy`).
    pub image: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// The image's true class, by name.
    pub true_class: &'a str,
    /// The class the model predicted, by name.
    pub predicted: &'a str,
    /// Two classes: the probability of the positive class; more: of the predicted class (what
    /// the grid's subtitle says, see [`plot_predictions`]).
    pub probability: f32,
}

impl PredictionSample<'_> {
    fn wrong(&self) -> bool {
        self.true_class != self.predicted
    }
}

/// Pixel size of `predictions.png` for a test set of `samples` images.
pub fn prediction_grid_size(samples: usize) -> (u32, u32) {
    let shown = samples.clamp(1, MAX_GRID_IMAGES);
    let columns = shown.min(COLUMNS) as u32;
    let rows = shown.div_ceil(COLUMNS) as u32;
    (
        (columns * CELL_WIDTH + 2 * MARGIN).max(MIN_WIDTH),
        HEADER + rows * CELL_HEIGHT + MARGIN / 2,
    )
}

/// Which images the grid shows, in test order: every misclassified image (the first
/// [`MAX_GRID_IMAGES`] of them), then the first correctly classified ones until the grid is
/// full. With at most [`MAX_GRID_IMAGES`] images that is all of them.
pub fn select_for_grid(samples: &[PredictionSample<'_>]) -> Vec<usize> {
    let errors = samples.iter().filter(|s| s.wrong()).count();
    let room_for_correct = MAX_GRID_IMAGES.saturating_sub(errors);
    let (mut errors_left, mut correct_left) = (MAX_GRID_IMAGES, room_for_correct);
    let mut chosen = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let left = if s.wrong() {
            &mut errors_left
        } else {
            &mut correct_left
        };
        if *left > 0 {
            *left -= 1;
            chosen.push(i);
        }
    }
    chosen
}

/// Draws `predictions.png/.svg` into `out_dir`: a grid of at most [`MAX_GRID_IMAGES`] test
/// images chosen by [`select_for_grid`], each captioned with the predicted class and its
/// probability, the true class and its index in `samples`. Misclassified images get a red
/// frame and a red caption; the title counts over all samples. `probability_note` ends the
/// subtitle, saying what `p` is ("p = predicted probability of COVID").
pub fn plot_predictions(
    samples: &[PredictionSample<'_>],
    probability_note: &str,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let invalid = |reason: String| FigureError::Input {
        path: out_dir.join("predictions.png"),
        reason,
    };
    if samples.is_empty() {
        return Err(invalid("no test images to show".to_owned()));
    }
    for (i, s) in samples.iter().enumerate() {
        let expected = (s.width as usize)
            .checked_mul(s.height as usize)
            .and_then(|n| n.checked_mul(3));
        if s.width == 0 || s.height == 0 || expected != Some(s.image.len()) {
            return Err(invalid(format!(
                "image {i} has {} bytes, not {} x {} x 3",
                s.image.len(),
                s.height,
                s.width
            )));
        }
        if s.true_class.is_empty() || s.predicted.is_empty() {
            return Err(invalid(format!("image {i} has an empty class name")));
        }
        if !(0.0..=1.0).contains(&s.probability) {
            return Err(invalid(format!(
                "image {i} has probability {}",
                s.probability
            )));
        }
    }
    let tiles = select_for_grid(samples)
        .into_iter()
        .map(|index| Tile::new(index, &samples[index]))
        .collect();
    let grid = Grid {
        tiles,
        total: samples.len(),
        correct: samples.iter().filter(|s| !s.wrong()).count(),
        probability_note: probability_note.to_owned(),
    };
    render(&grid, out_dir, "predictions")
}

/// One shown image, already scaled down to its thumbnail.
struct Tile {
    index: usize,
    thumbnail: Vec<u8>,
    size: (u32, u32),
    true_class: String,
    predicted: String,
    probability: f32,
}

impl Tile {
    fn new(index: usize, sample: &PredictionSample<'_>) -> Self {
        let scale = f64::from(THUMB) / f64::from(sample.width.max(sample.height));
        let size = (
            ((f64::from(sample.width) * scale).round() as u32).max(1),
            ((f64::from(sample.height) * scale).round() as u32).max(1),
        );
        Self {
            index,
            thumbnail: downscale(sample, size),
            size,
            true_class: sample.true_class.to_owned(),
            predicted: sample.predicted.to_owned(),
            probability: sample.probability,
        }
    }
}

/// Box-filter resampling: each output pixel averages the source pixels it covers, which
/// keeps fine texture from aliasing when a 237-pixel X-ray becomes a 170-pixel thumbnail.
fn downscale(sample: &PredictionSample<'_>, (width, height): (u32, u32)) -> Vec<u8> {
    let (sw, sh) = (sample.width as usize, sample.height as usize);
    let (w, h) = (width as usize, height as usize);
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let y0 = y * sh / h;
        let y1 = ((y + 1) * sh).div_ceil(h).max(y0 + 1).min(sh);
        for x in 0..w {
            let x0 = x * sw / w;
            let x1 = ((x + 1) * sw).div_ceil(w).max(x0 + 1).min(sw);
            let mut sum = [0u32; 3];
            for row in y0..y1 {
                for col in x0..x1 {
                    let at = (row * sw + col) * 3;
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += u32::from(sample.image[at + c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    out
}

struct Grid {
    tiles: Vec<Tile>,
    total: usize,
    correct: usize,
    probability_note: String,
}

impl Figure for Grid {
    fn size(&self) -> (u32, u32) {
        prediction_grid_size(self.total)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (width, _) = self.size();
        let mid_x = (width / 2) as i32;
        let centred = Pos::new(HPos::Center, VPos::Center);
        let wrong = self.total - self.correct;
        root.draw(&Text::new(
            format!(
                "Test predictions: {} of {} correct, {wrong} misclassified",
                self.correct, self.total
            ),
            (mid_x, 28),
            bold(24.0).pos(centred),
        ))?;
        let shown = if self.tiles.len() < self.total {
            format!(
                "{} of {} images shown, every misclassified one included; ",
                self.tiles.len(),
                self.total
            )
        } else {
            String::new()
        };
        root.draw(&Text::new(
            format!(
                "{shown}red frame = misclassified; {}",
                self.probability_note
            ),
            (mid_x, 60),
            text(16.0).pos(centred),
        ))?;

        let columns = self.tiles.len().min(COLUMNS) as i32;
        let grid_left = mid_x - columns * CELL_WIDTH as i32 / 2;
        for (k, tile) in self.tiles.iter().enumerate() {
            let (col, row) = ((k % COLUMNS) as i32, (k / COLUMNS) as i32);
            let cell_x = grid_left + col * CELL_WIDTH as i32;
            let cell_y = HEADER as i32 + row * CELL_HEIGHT as i32;
            let cx = cell_x + CELL_WIDTH as i32 / 2;
            // Centre the thumbnail in its square so non-square images line up too.
            let x = cx - tile.size.0 as i32 / 2;
            let y = cell_y + 8 + (THUMB - tile.size.1) as i32 / 2;
            let misclassified = tile.predicted != tile.true_class;
            if misclassified {
                root.draw(&Rectangle::new(
                    [
                        (x - ERROR_FRAME, y - ERROR_FRAME),
                        (
                            x + tile.size.0 as i32 + ERROR_FRAME,
                            y + tile.size.1 as i32 + ERROR_FRAME,
                        ),
                    ],
                    colors::ERROR_RED.filled(),
                ))?;
            }
            if let Some(bitmap) =
                BitMapElement::with_ref((x, y), tile.size, tile.thumbnail.as_slice())
            {
                root.draw(&bitmap)?;
            }
            let caption_y = cell_y + 8 + THUMB as i32 + 20;
            let (style, ink) = if misclassified {
                (bold(15.0), colors::ERROR_RED)
            } else {
                (text(15.0), colors::INK)
            };
            root.draw(&Text::new(
                format!("pred: {}, p={:.2}", tile.predicted, tile.probability),
                (cx, caption_y),
                style.color(&ink).pos(centred),
            ))?;
            root.draw(&Text::new(
                format!("true: {}  (#{})", tile.true_class, tile.index),
                (cx, caption_y + 20),
                style.color(&ink).pos(centred),
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{assert_png, assert_svg_contains, blob_image};

    /// `n` synthetic X-rays alternating COVID/NORMAL, all right except those in `wrong`.
    const NAMES: [&str; 2] = ["NORMAL", "COVID"];
    const NOTE: &str = "p = predicted probability of COVID";

    fn images(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| blob_image(48, 40, i as u64)).collect()
    }

    fn samples<'a>(images: &'a [Vec<u8>], wrong: &[usize]) -> Vec<PredictionSample<'a>> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let label = i % 2;
                let right = if label == 1 { 0.93 } else { 0.04 };
                let p = if wrong.contains(&i) {
                    1.0 - right
                } else {
                    right
                };
                PredictionSample {
                    image,
                    width: 48,
                    height: 40,
                    true_class: NAMES[label],
                    predicted: NAMES[usize::from(p > 0.5)],
                    probability: p,
                }
            })
            .collect()
    }

    #[test]
    fn selection_keeps_every_error_within_the_cap() {
        let images = images(55);
        let chosen = select_for_grid(&samples(&images, &[3, 40, 54]));
        assert_eq!(chosen.len(), MAX_GRID_IMAGES);
        // Three errors leave room for 33 correct ones: 0..=33 without the error at 3.
        assert!(chosen.contains(&3) && chosen.contains(&40) && chosen.contains(&54));
        assert_eq!(chosen[..5], [0, 1, 2, 3, 4]);
        assert_eq!(chosen[32..], [32, 33, 40, 54]);
        assert!(chosen.windows(2).all(|w| w[0] < w[1]));
        // Small sets are shown whole.
        assert_eq!(
            select_for_grid(&samples(&images[..5], &[])),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn grid_size_follows_the_count() {
        assert_eq!(prediction_grid_size(55), (1240, 84 + 6 * 236 + 10));
        assert_eq!(prediction_grid_size(7), (1240, 84 + 2 * 236 + 10));
        assert_eq!(prediction_grid_size(2), (820, 84 + 236 + 10));
    }

    #[test]
    fn downscale_averages_blocks() {
        // 2 x 2 image of four gray levels -> one pixel of their rounded mean.
        let image = [0, 0, 0, 10, 10, 10, 20, 20, 20, 31, 31, 31];
        let sample = PredictionSample {
            image: &image,
            width: 2,
            height: 2,
            true_class: "NORMAL",
            predicted: "NORMAL",
            probability: 0.0,
        };
        assert_eq!(downscale(&sample, (1, 1)), [15, 15, 15]);
        assert_eq!(downscale(&sample, (2, 2)), image);
    }

    #[test]
    fn writes_the_grid_with_captions() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(8);
        let paths = plot_predictions(&samples(&images, &[5]), NOTE, dir.path()).unwrap();
        assert_png(&paths[0], prediction_grid_size(8));
        assert_svg_contains(
            &paths[1],
            &[
                "Test predictions: 7 of 8 correct, 1 misclassified",
                "pred: NORMAL, p=0.07",
                "true: COVID  (#5)",
                "<image",
            ],
        );
    }

    #[test]
    fn three_class_captions_name_the_classes_and_frame_errors_in_red() {
        let dir = tempfile::tempdir().unwrap();
        let image = blob_image(48, 40, 1);
        let sample = |true_class, predicted, probability| PredictionSample {
            image: &image,
            width: 48,
            height: 40,
            true_class,
            predicted,
            probability,
        };
        let samples = [
            sample("COVID-19", "COVID-19", 0.81),
            sample("PNEUMONIA", "COVID-19", 0.64),
            sample("NORMAL", "NORMAL", 0.97),
        ];
        let note = "p = probability of the predicted class";
        let paths = plot_predictions(&samples, note, dir.path()).unwrap();
        let size = prediction_grid_size(3);
        assert_png(&paths[0], size);
        assert_svg_contains(
            &paths[1],
            &[
                "Test predictions: 2 of 3 correct, 1 misclassified",
                "red frame = misclassified; p = probability of the predicted class",
                "pred: COVID-19, p=0.64",
                "true: PNEUMONIA  (#1)",
                "pred: NORMAL, p=0.97",
            ],
        );
        // The second tile is framed in red: a pixel of its frame, left of its thumbnail.
        let png = image::open(&paths[0]).unwrap().to_rgb8();
        let mid_x = size.0 as i32 / 2;
        let grid_left = mid_x - 3 * CELL_WIDTH as i32 / 2;
        let cx = grid_left + CELL_WIDTH as i32 + CELL_WIDTH as i32 / 2;
        let x = cx - THUMB as i32 / 2 - 2;
        let y = HEADER as i32 + 8 + THUMB as i32 / 2;
        assert_eq!(png.get_pixel(x as u32, y as u32).0, [214, 39, 40]);
        // The first is not.
        let x0 = x - CELL_WIDTH as i32;
        assert_ne!(png.get_pixel(x0 as u32, y as u32).0, [214, 39, 40]);
    }

    #[test]
    fn malformed_images_are_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let short = [0u8; 10];
        let sample = PredictionSample {
            image: &short,
            width: 2,
            height: 2,
            true_class: "COVID",
            predicted: "COVID",
            probability: 0.9,
        };
        let error = plot_predictions(&[sample], NOTE, dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("predictions.png"), "{error}");
        assert!(error.contains("image 0 has 10 bytes"), "{error}");
        assert!(plot_predictions(&[], NOTE, dir.path()).is_err());
    }
}
