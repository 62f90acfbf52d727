//! The plot stage: the training curves and the test split's prediction grid, from the files
//! the train and evaluate stages wrote. (Each evaluation's confusion matrix and ROC curve are
//! drawn by the evaluate stage itself, see [`crate::evaluate`].)

use std::path::{Path, PathBuf};

use crate::arrays::{self, ArrayError};
use crate::figures::{plot_history, plot_predictions, FigureError, PredictionSample};
use crate::metrics::io::{read_predictions_csv, Predictions};
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
    if rows.len() != predictions.true_classes.len() {
        return Err(PlotError::Mismatch(format!(
            "{} lists {} test rows but {} has {} predictions",
            inputs.test_index.display(),
            rows.len(),
            inputs.predictions.display(),
            predictions.true_classes.len()
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
            true_class: &predictions.true_classes[i],
            predicted: &predictions.predicted[i],
            probability: predictions.probabilities[i],
        });
    }
    let note = probability_note(&predictions, threshold);
    written.extend(plot_predictions(&samples, &note, out_dir)?);
    Ok(written)
}

/// What the grid's `p` is: for three or more classes the predicted class's probability; for
/// two the positive class's, that class named by the predictions themselves. The evaluate
/// stage called an image positive above its own threshold, so the image of highest `p` was
/// called positive whenever any was: when the highest and the lowest `p` were called
/// differently, the highest one's class is the positive one. When every image was called the
/// same, that class is positive if its highest `p` is above `threshold` (the plot stage's,
/// normally the evaluate stage's too), else the positive class is a true class never
/// predicted.
fn probability_note(predictions: &Predictions, threshold: f32) -> String {
    if predictions.classes.is_some() {
        return "p = probability of the predicted class".into();
    }
    let rows: Vec<(&String, f32)> = predictions
        .predicted
        .iter()
        .zip(predictions.probabilities.iter().copied())
        .collect();
    let by_p = |a: &&(&String, f32), b: &&(&String, f32)| a.1.total_cmp(&b.1);
    let highest = rows.iter().max_by(by_p);
    let lowest = rows.iter().min_by(by_p);
    let positive = match (highest, lowest) {
        (Some(&(high, p)), Some(&(low, _))) => {
            if high != low || p > threshold {
                Some(high)
            } else {
                predictions
                    .true_classes
                    .iter()
                    .find(|t| !predictions.predicted.contains(t))
            }
        }
        _ => None,
    };
    match positive {
        Some(name) => format!("p = predicted probability of {name}"),
        None => "p = predicted probability of the positive class".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predictions(rows: &[(&str, &str, f32)], classes: Option<Vec<String>>) -> Predictions {
        Predictions {
            true_classes: rows.iter().map(|r| r.0.to_string()).collect(),
            predicted: rows.iter().map(|r| r.1.to_string()).collect(),
            probabilities: rows.iter().map(|r| r.2).collect(),
            classes,
        }
    }

    #[test]
    fn the_note_names_the_positive_class_of_the_experiment() {
        let model1 = predictions(&[("NORMAL", "NORMAL", 0.1), ("COVID", "COVID", 0.9)], None);
        assert_eq!(
            probability_note(&model1, 0.5),
            "p = predicted probability of COVID"
        );
        // Everything called PNEUMONIA: COVID-19 is the class never predicted.
        let all_negative = predictions(
            &[
                ("PNEUMONIA", "PNEUMONIA", 0.1),
                ("COVID-19", "PNEUMONIA", 0.3),
            ],
            None,
        );
        assert_eq!(
            probability_note(&all_negative, 0.5),
            "p = predicted probability of COVID-19"
        );
        // The evaluate stage's threshold was 0.9: 0.7 was called NORMAL, 0.95 COVID.
        let strict = predictions(
            &[
                ("NORMAL", "NORMAL", 0.7),
                ("COVID", "COVID", 0.95),
                ("COVID", "NORMAL", 0.2),
            ],
            None,
        );
        assert_eq!(
            probability_note(&strict, 0.5),
            "p = predicted probability of COVID"
        );
        let three = predictions(&[("A", "B", 0.6)], Some(vec!["A".into(), "B".into()]));
        assert_eq!(
            probability_note(&three, 0.5),
            "p = probability of the predicted class"
        );
    }
}
