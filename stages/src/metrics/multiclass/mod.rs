//! Metrics of a C-class classifier (C >= 2) from true labels and softmax outputs, as
//! scikit-learn computes them, each proportion with its Wilson 95 % interval.
//!
//! The predicted class is the argmax of a row; a tie goes to the lowest class index, as
//! `numpy.argmax` breaks it. Per class, everything is one-vs-rest: the class is "positive",
//! every other class "negative". Where sklearn would divide 0 by 0 and report 0 (or NaN) with a
//! warning, a proportion here is a [`Proportion`] with no trials, whose value and interval are
//! `None`, so a report can print "n/a" rather than a misleading 0.

use super::{roc_curve, MetricsError, Proportion};

/// Why multi-class metrics could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MulticlassError {
    /// One class is no classification.
    #[error("{n_classes} classes given; at least 2 are needed")]
    TooFewClasses { n_classes: usize },
    /// The probabilities must form an N x C matrix, one row per label.
    #[error(
        "{labels} labels with {n_classes} classes need {} probabilities, got {probabilities}",
        labels * n_classes
    )]
    LengthMismatch {
        labels: usize,
        n_classes: usize,
        probabilities: usize,
    },
    /// There is nothing to evaluate.
    #[error("no samples to evaluate")]
    Empty,
    /// A label that names no class.
    #[error("label {value} at index {index} is not a class (expected 0 to {})", n_classes - 1)]
    InvalidLabel {
        index: usize,
        value: u32,
        n_classes: usize,
    },
    /// A probability that is NaN or outside [0, 1].
    #[error("probability {value} of class {class} for sample {sample} is not in [0, 1]")]
    InvalidProbability {
        sample: usize,
        class: usize,
        value: f32,
    },
    /// A class named for the pairwise AUC that does not exist.
    #[error("class {class} named for the pairwise AUC is not one of the {n_classes} classes")]
    UnknownClass { class: usize, n_classes: usize },
    /// The pairwise AUC compares two different classes.
    #[error("the pairwise AUC needs two different classes, got class {class} twice")]
    SameClass { class: usize },
    /// A binary metric failed on input this module already checked (a bug, not bad input).
    #[error(transparent)]
    Binary(#[from] MetricsError),
}

/// One class against the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct OneVsRest {
    /// Images whose true class is this one (sklearn's `support`).
    pub support: u64,
    /// Recall: found out of [`support`](Self::support); no trials when the class is absent.
    pub sensitivity: Proportion,
    /// Other-class images not predicted as this class, out of all other-class images; no
    /// trials when every image is of this class.
    pub specificity: Proportion,
    /// Right out of all predictions of this class; no trials when it was never predicted.
    pub precision: Proportion,
    /// sklearn's F1, `2tp / (2tp + fp + fn)`: the harmonic mean of precision and recall where
    /// both exist, 0 when one of them is undefined and the other 0 or undefined (as sklearn's
    /// default `zero_division`, which also warns), so that macro and weighted F1 match sklearn.
    pub f1: f64,
    /// F1 was `0 / 0` (class neither present nor predicted) and set to 0, as sklearn does.
    pub f1_ill_defined: bool,
    /// ROC AUC of this class's probability against "true class is this one"; `None` when the
    /// class is absent or is the only one present (sklearn 1.9 gives NaN with a warning).
    pub auc: Option<f64>,
}

/// Every multi-class figure of one evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct MulticlassEvaluation {
    /// `confusion[t][p]`: images of true class `t` predicted as `p` (sklearn's
    /// `confusion_matrix(labels=range(C))`: rows true, columns predicted).
    pub confusion: Vec<Vec<u64>>,
    /// Correct predictions out of all images.
    pub accuracy: Proportion,
    /// Indexed by class.
    pub classes: Vec<OneVsRest>,
    /// Unweighted mean of the C per-class F1 values: sklearn's
    /// `f1_score(average='macro', labels=range(C))`, absent classes counting as their F1 (0).
    pub macro_f1: f64,
    /// Mean of per-class F1 weighted by support: `f1_score(average='weighted')`.
    pub weighted_f1: f64,
    /// Mean of the defined per-class AUCs: sklearn's `roc_auc_score(multi_class='ovr',
    /// average='macro')` when every class is present. With a class absent sklearn 1.9 returns
    /// NaN; here the mean runs over the classes that have an AUC (`None` if none has).
    pub macro_auc: Option<f64>,
}

/// Checks the labels and the N x C probabilities once, so the metrics can assume clean input.
fn validate(
    labels: &[u32],
    probabilities: &[f32],
    n_classes: usize,
) -> Result<(), MulticlassError> {
    if n_classes < 2 {
        return Err(MulticlassError::TooFewClasses { n_classes });
    }
    if labels.len().checked_mul(n_classes) != Some(probabilities.len()) {
        return Err(MulticlassError::LengthMismatch {
            labels: labels.len(),
            n_classes,
            probabilities: probabilities.len(),
        });
    }
    if labels.is_empty() {
        return Err(MulticlassError::Empty);
    }
    if let Some((index, &value)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= n_classes)
    {
        return Err(MulticlassError::InvalidLabel {
            index,
            value,
            n_classes,
        });
    }
    if let Some((i, &value)) = probabilities
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MulticlassError::InvalidProbability {
            sample: i / n_classes,
            class: i % n_classes,
            value,
        });
    }
    Ok(())
}

/// The class with the highest probability in `row`; the lowest index among equal maxima,
/// as `numpy.argmax`.
pub fn predicted_class(row: &[f32]) -> usize {
    let mut best = 0;
    for (class, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = class;
        }
    }
    best
}

/// ROC AUC of `scores` against `positive`, `None` when only one kind is present.
fn auc(
    positive: impl Iterator<Item = bool>,
    scores: Vec<f32>,
) -> Result<Option<f64>, MulticlassError> {
    let labels: Vec<u8> = positive.map(u8::from).collect();
    Ok(roc_curve(&labels, &scores)?.auc())
}

/// Column `class` of the row-major `probabilities`, for the samples `keep` accepts.
fn column(
    probabilities: &[f32],
    n_classes: usize,
    class: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<f32> {
    probabilities
        .chunks_exact(n_classes)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, row)| row[class])
        .collect()
}

impl MulticlassEvaluation {
    /// All figures for `labels` in `0..n_classes` and row-major `probabilities` (N x C, one
    /// softmax row per label).
    pub fn compute(
        labels: &[u32],
        probabilities: &[f32],
        n_classes: usize,
    ) -> Result<Self, MulticlassError> {
        validate(labels, probabilities, n_classes)?;
        let mut confusion = vec![vec![0u64; n_classes]; n_classes];
        for (&label, row) in labels.iter().zip(probabilities.chunks_exact(n_classes)) {
            confusion[label as usize][predicted_class(row)] += 1;
        }
        let total = labels.len() as u64;
        let correct = (0..n_classes).map(|k| confusion[k][k]).sum();
        let mut classes = Vec::with_capacity(n_classes);
        for k in 0..n_classes {
            let tp = confusion[k][k];
            let support: u64 = confusion[k].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[k]).sum();
            let (fn_, fp) = (support - tp, predicted - tp);
            let tn = total - support - fp;
            let f1_denominator = 2 * tp + fp + fn_;
            let positive = labels.iter().map(|&l| l as usize == k);
            classes.push(OneVsRest {
                support,
                sensitivity: Proportion {
                    successes: tp,
                    trials: support,
                },
                specificity: Proportion {
                    successes: tn,
                    trials: total - support,
                },
                precision: Proportion {
                    successes: tp,
                    trials: predicted,
                },
                f1: if f1_denominator == 0 {
                    0.0
                } else {
                    (2 * tp) as f64 / f1_denominator as f64
                },
                f1_ill_defined: f1_denominator == 0,
                auc: auc(positive, column(probabilities, n_classes, k, |_| true))?,
            });
        }
        let macro_f1 = classes.iter().map(|c| c.f1).sum::<f64>() / n_classes as f64;
        let weighted_f1 =
            classes.iter().map(|c| c.f1 * c.support as f64).sum::<f64>() / total as f64;
        let defined: Vec<f64> = classes.iter().filter_map(|c| c.auc).collect();
        let macro_auc =
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        Ok(Self {
            confusion,
            accuracy: Proportion {
                successes: correct,
                trials: total,
            },
            classes,
            macro_f1,
            weighted_f1,
            macro_auc,
        })
    }
}

/// The one-vs-one AUC of classes `a` and `b` (Hand & Till 2001), as sklearn's
/// `roc_auc_score(multi_class='ovo')` scores each pair: on the samples whose true class is `a`
/// or `b` only, the mean of AUC(p_a, y == a) and AUC(p_b, y == b). The order of `a` and `b`
/// does not matter. `None` when either class is absent (sklearn then forms no such pair).
pub fn pairwise_auc(
    labels: &[u32],
    probabilities: &[f32],
    n_classes: usize,
    a: usize,
    b: usize,
) -> Result<Option<f64>, MulticlassError> {
    validate(labels, probabilities, n_classes)?;
    for class in [a, b] {
        if class >= n_classes {
            return Err(MulticlassError::UnknownClass { class, n_classes });
        }
    }
    if a == b {
        return Err(MulticlassError::SameClass { class: a });
    }
    let in_pair = |i: usize| labels[i] as usize == a || labels[i] as usize == b;
    let pair_labels = || {
        labels
            .iter()
            .filter(|&&l| l as usize == a || l as usize == b)
    };
    let auc_a = auc(
        pair_labels().map(|&l| l as usize == a),
        column(probabilities, n_classes, a, in_pair),
    )?;
    let auc_b = auc(
        pair_labels().map(|&l| l as usize == b),
        column(probabilities, n_classes, b, in_pair),
    )?;
    Ok(auc_a.zip(auc_b).map(|(x, y)| (x + y) / 2.0))
}

#[cfg(test)]
mod sklearn_check;
#[cfg(test)]
mod tests;
