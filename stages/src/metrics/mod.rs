//! Evaluation metrics of the classifier (model1's binary COVID / NORMAL one, and C classes),
//! and their CSV files.
//!
//! Everything here is a pure function of the true labels (0 = NORMAL, 1 = COVID) and the
//! predicted probabilities of COVID. The definitions follow scikit-learn and Keras so that a
//! run of this pipeline can be compared number for number with the seed notebook:
//!
//! - [`binary_cross_entropy`]: Keras' `binary_crossentropy` (probabilities clamped to
//!   `[1e-7, 1 - 1e-7]`), averaged over the samples.
//! - [`categorical`]: the C-class softmax losses (Keras' `sparse_categorical_crossentropy`).
//! - [`ConfusionMatrix`]: sklearn's `confusion_matrix` (rows = true, columns = predicted).
//! - [`ClassificationReport`]: sklearn's `classification_report(labels=[0, 1])`.
//! - [`roc_curve`] / [`RocCurve::auc`]: sklearn's `roc_curve(drop_intermediate=False)` and
//!   `roc_auc_score`.
//! - [`Proportion::wilson`]: the Wilson score interval for sensitivity and specificity.
//! - [`multiclass`]: the C-class metrics (one-vs-rest per class, macro F1 and AUC, pairwise AUC).
//!
//! [`Evaluation`] bundles all of them for two classes, [`ClassResults`] for three or more
//! (names from [`ClassNames`]; [`slug`] says how metric names derive from class names);
//! [`io`] and [`class_io`] write and read the stage's CSV files
//! (`metrics.csv`, `confusion.csv`, `classification_report.csv`, `roc.csv`,
//! `predictions.csv`); [`History`] owns the trainer's `history.csv`.

pub mod categorical;
pub mod class_io;
mod class_results;
mod confusion;
mod evaluation;
mod history;
pub mod io;
mod loss;
pub mod multiclass;
mod names;
mod proportion;
mod report;
mod roc;
#[cfg(test)]
mod sklearn_check;

use std::path::PathBuf;

pub use class_results::ClassResults;
pub use confusion::ConfusionMatrix;
pub use evaluation::Evaluation;
pub use history::{EpochRecord, History};
pub use loss::{binary_cross_entropy, KERAS_EPSILON};
pub use names::{slug, ClassNames};
pub use proportion::{Interval, Proportion, Z_95};
pub use report::{ClassMetrics, ClassificationReport};
pub use roc::{roc_curve, RocCurve, RocPoint};

/// Label of a normal (negative) X-ray.
pub const NORMAL: u8 = 0;
/// Label of a COVID-19 (positive) X-ray.
pub const COVID: u8 = 1;
/// model1's two classes, indexed by label: the names of a two-class evaluation that is given
/// none (a two-class checkpoint's default), never a stand-in for an experiment's own classes.
pub const CLASS_NAMES: [&str; 2] = ["NORMAL", "COVID"];
/// The decision threshold of the seed experiment.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Why metrics could not be computed, or their files not written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Labels and probabilities must pair up one to one.
    #[error("{labels} labels but {probabilities} probabilities")]
    LengthMismatch { labels: usize, probabilities: usize },
    /// There is nothing to evaluate.
    #[error("no samples to evaluate")]
    Empty,
    /// A label other than 0 (NORMAL) or 1 (COVID).
    #[error("label {value} at index {index} is neither 0 (NORMAL) nor 1 (COVID)")]
    InvalidLabel { index: usize, value: u8 },
    /// A probability that is NaN or outside [0, 1].
    #[error("probability {value} at index {index} is not in [0, 1]")]
    InvalidProbability { index: usize, value: f32 },
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be written or parsed.
    #[error("{path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// A CSV file parsed but its content makes no sense.
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
    /// Class names that cannot name metrics (fewer than two, or two with the same slug).
    #[error("{message}")]
    ClassNames { message: String },
    /// Bad input to the C-class metrics.
    #[error(transparent)]
    Multiclass(#[from] Box<multiclass::MulticlassError>),
    /// Bad input to a C-class loss.
    #[error(transparent)]
    Categorical(#[from] categorical::CategoricalError),
}

/// The class predicted for a probability of COVID.
///
/// Strictly above the threshold counts as COVID, as Keras' `binary_accuracy` does
/// (`y_pred > threshold`), so that accuracies match the training log exactly.
pub fn predicted_label(probability: f32, threshold: f32) -> u8 {
    if probability > threshold {
        COVID
    } else {
        NORMAL
    }
}

/// Six images of three classes with hand-checked metrics (see `class_results/tests.rs`).
#[cfg(test)]
pub(crate) fn class_results_fixture() -> (Vec<u32>, Vec<f32>) {
    class_results::tests::six()
}

/// Checks labels and probabilities once, so every metric below can assume clean input.
pub(crate) fn validate(labels: &[u8], probabilities: &[f32]) -> Result<(), MetricsError> {
    if labels.len() != probabilities.len() {
        return Err(MetricsError::LengthMismatch {
            labels: labels.len(),
            probabilities: probabilities.len(),
        });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, &l)| l > COVID) {
        return Err(MetricsError::InvalidLabel { index, value });
    }
    if let Some((index, &value)) = probabilities
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MetricsError::InvalidProbability { index, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_strict_like_keras() {
        assert_eq!(predicted_label(0.5, 0.5), NORMAL);
        assert_eq!(predicted_label(0.500_001, 0.5), COVID);
        assert_eq!(predicted_label(0.0, 0.5), NORMAL);
        assert_eq!(predicted_label(1.0, 0.5), COVID);
    }

    #[test]
    fn validation_rejects_bad_input() {
        assert!(matches!(
            validate(&[0, 1], &[0.5]),
            Err(MetricsError::LengthMismatch {
                labels: 2,
                probabilities: 1
            })
        ));
        assert!(matches!(validate(&[], &[]), Err(MetricsError::Empty)));
        assert!(matches!(
            validate(&[0, 2], &[0.1, 0.2]),
            Err(MetricsError::InvalidLabel { index: 1, value: 2 })
        ));
        assert!(matches!(
            validate(&[0, 1], &[0.1, f32::NAN]),
            Err(MetricsError::InvalidProbability { index: 1, .. })
        ));
        assert!(matches!(
            validate(&[0], &[1.5]),
            Err(MetricsError::InvalidProbability { index: 0, .. })
        ));
        assert!(validate(&[0, 1], &[0.0, 1.0]).is_ok());
    }
}
