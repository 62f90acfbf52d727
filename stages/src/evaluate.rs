//! The evaluate stage: the trained model's predictions on the test rows (or, for an external
//! evaluation set, on every row), every metric of [`crate::metrics`] written as CSV, and the
//! set's confusion matrix and ROC curve drawn, titled with the set they show.

use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::figures::{plot_confusion_of, plot_roc_of, EvaluatedSet, FigureError};
use crate::metrics::io::{write_all, write_predictions_csv, PREDICTIONS_CSV};
use crate::metrics::{Evaluation, MetricsError};
use crate::model::inference::{head_logits, sigmoid};
use crate::model::spec::HEAD_INPUTS;
use crate::model::{checkpoint, Backend, ModelError};
use crate::validate::{self, ConfigError};

/// The evaluate and plot stages' parameter: the probability above which an image is called
/// positive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct ThresholdConfig {
    pub threshold: f64,
}

impl ThresholdConfig {
    /// A probability: in [0, 1], not NaN. The experiment's check and the stages call this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::within("threshold", self.threshold, 0.0..=1.0, "[0, 1]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{path}: {message}")]
    Index { path: String, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Figure(#[from] FigureError),
}

pub struct EvaluateInputs<'a> {
    /// The trained checkpoint.
    pub model: &'a Path,
    pub features: &'a Path,
    pub labels: &'a Path,
    /// The split's test rows; `None` evaluates every row (an external evaluation set, loaded
    /// apart from the training data).
    pub test_index: Option<&'a Path>,
    /// The load stage's `index.csv`, to name each test image.
    pub index: &'a Path,
}

/// Writes `metrics.csv`, `confusion.csv`, `classification_report.csv`, `roc.csv`,
/// `predictions.csv` and the figures [`FIGURES`] (PNG and SVG) into `out_dir`, and returns
/// the evaluation.
pub fn run(
    backend: &dyn Backend,
    inputs: &EvaluateInputs,
    threshold: f32,
    out_dir: &Path,
) -> Result<Evaluation, EvaluateError> {
    ThresholdConfig {
        threshold: threshold.into(),
    }
    .validate()?;
    // Only the head: the features are given.
    let model = checkpoint::load_head(inputs.model)?;
    let (shape, features) = arrays::read_f32(inputs.features)?;
    let labels = arrays::read_labels(inputs.labels)?;
    let rows = match inputs.test_index {
        Some(path) => arrays::read_index(path)?,
        None => (0..labels.len()).collect(),
    };
    let names = image_names(inputs.index)?;
    if shape.len() != 2 || shape[1] != HEAD_INPUTS || shape[0] != labels.len() {
        return Err(ArrayError::Shape {
            path: inputs.features.to_path_buf(),
            shape,
            expected: format!("{} x {HEAD_INPUTS}", labels.len()),
        }
        .into());
    }
    let mut x = Vec::with_capacity(rows.len() * HEAD_INPUTS);
    let mut y = Vec::with_capacity(rows.len());
    let mut images = Vec::with_capacity(rows.len());
    for &r in &rows {
        let (Some(&label), Some(name)) = (labels.get(r), names.get(r)) else {
            return Err(EvaluateError::Index {
                path: inputs
                    .test_index
                    .unwrap_or(inputs.labels)
                    .display()
                    .to_string(),
                message: format!("row {r} is out of range for {} images", labels.len()),
            });
        };
        x.extend_from_slice(&features[r * HEAD_INPUTS..(r + 1) * HEAD_INPUTS]);
        y.push(label);
        images.push(name.clone());
    }
    let probabilities: Vec<f32> = head_logits(backend, model.head, &model.weights, &x, rows.len())?
        .into_iter()
        .map(sigmoid)
        .collect();
    let evaluation = Evaluation::compute(&y, &probabilities, threshold)?;
    write_all(&evaluation, out_dir)?;
    write_predictions_csv(
        &y,
        &probabilities,
        &images,
        threshold,
        &out_dir.join(PREDICTIONS_CSV),
    )?;
    // Drawn here rather than by the plot stage, so that every evaluation, however many
    // external sets an experiment has, gets its own figures from the numbers it computed.
    let set = match inputs.test_index {
        Some(_) => EvaluatedSet::TestSplit,
        None => EvaluatedSet::external(&evaluation.confusion),
    };
    plot_confusion_of(&evaluation.confusion, set, out_dir)?;
    plot_roc_of(&evaluation.roc, set, out_dir)?;
    Ok(evaluation)
}

/// The figures the stage draws, by file stem (each as PNG and SVG).
pub const FIGURES: [&str; 2] = ["confusion", "roc"];

/// The `path` column of the load stage's `index.csv`, by row.
fn image_names(index: &Path) -> Result<Vec<String>, EvaluateError> {
    let err = |message: String| EvaluateError::Index {
        path: index.display().to_string(),
        message,
    };
    let mut reader = csv::Reader::from_path(index).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let column = headers
        .iter()
        .position(|h| h == "path")
        .ok_or_else(|| err("no `path` column".into()))?;
    reader
        .records()
        .map(|r| {
            r.map_err(|e| err(e.to_string()))
                .map(|rec| rec.get(column).unwrap_or_default().to_string())
        })
        .collect()
}
