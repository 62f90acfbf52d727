//! The plot stage: the training curves and the test split's prediction grid, from the files
//! the train and evaluate stages wrote. (Each evaluation's confusion matrix and ROC curve are
//! drawn by the evaluate stage itself, see [`crate::evaluate`].)

use std::path::{Path, PathBuf};

use crate::arrays::{self, ArrayError};
use crate::figures::{plot_history, plot_predictions, FigureError, PredictionSample};
use crate::metrics::io::read_predictions_csv;
use crate::metrics::{History, MetricsError};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Figure(#[from] FigureError),
    #[error("{0}")]
    Mismatch(String),
}

pub struct PlotInputs<'a> {
    pub history: &'a Path,
    pub predictions: &'a Path,
    /// The load stage's uint8 images, for the prediction grid.
    pub images: &'a Path,
    pub test_index: &'a Path,
}

/// The file names the stage writes (each figure as PNG and SVG).
pub const FIGURES: [&str; 3] = ["accuracy", "loss", "predictions"];

pub fn run(inputs: &PlotInputs, threshold: f32, out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = plot_history(&History::read_csv(inputs.history)?, out_dir)?;
    let predictions = read_predictions_csv(inputs.predictions)?;

    let (shape, pixels) = arrays::read_u8(inputs.images)?;
    let rows = arrays::read_index(inputs.test_index)?;
    let (h, w) = match shape.as_slice() {
        [_, h, w, 3] => (*h, *w),
        _ => {
            return Err(ArrayError::Shape {
                path: inputs.images.to_path_buf(),
                shape,
                expected: "N x H x W x 3 uint8".into(),
            }
            .into())
        }
    };
    if rows.len() != predictions.labels.len() {
        return Err(PlotError::Mismatch(format!(
            "{} lists {} test rows but {} has {} predictions",
            inputs.test_index.display(),
            rows.len(),
            inputs.predictions.display(),
            predictions.labels.len()
        )));
    }
    let image_len = h * w * 3;
    let mut samples = Vec::with_capacity(rows.len());
    for (i, &r) in rows.iter().enumerate() {
        let image = pixels
            .get(r * image_len..(r + 1) * image_len)
            .ok_or_else(|| PlotError::Mismatch(format!("test row {r} is not among the images")))?;
        samples.push(PredictionSample {
            image,
            width: w as u32,
            height: h as u32,
            label: predictions.labels[i],
            probability: predictions.probabilities[i],
        });
    }
    written.extend(plot_predictions(&samples, threshold, out_dir)?);
    Ok(written)
}
