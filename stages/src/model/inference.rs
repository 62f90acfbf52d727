//! Running a model above the backend seam: the frozen base's features for any number of
//! images, in the backend's batches with progress, and probabilities from features or images.

use super::backend::{Backend, FeatureExtractor};
use super::checkpoint::Model;
use super::error::ModelError;
use super::spec::{check_image_len, AdamSettings, HeadSpec, NetworkSpec, HEAD_INPUTS};
use super::weights::HeadWeights;
use crate::metrics::multiclass::predicted_class;
use crate::progress::Progress;

/// The pooled base features `[n, 512]` (row i for image i) of `n` NHWC images of `spec`'s
/// size, in the extractor's batches, one unit of progress per image.
///
/// This is the expensive pass (about 33 GFLOP per 237x237 image).
pub fn pooled_features(
    extractor: &dyn FeatureExtractor,
    spec: &NetworkSpec,
    images: &[f32],
    n: usize,
    progress: &dyn Progress,
) -> Result<Vec<f32>, ModelError> {
    let len = spec.image_len();
    check_image_len(images.len(), n, spec.size().pixels())?;
    progress.start("VGG16 base features", n as u64);
    let mut out = Vec::with_capacity(n * HEAD_INPUTS);
    for chunk in images.chunks(extractor.batch_size() * len) {
        let b = chunk.len() / len;
        out.extend(extractor.pooled_features(chunk, b)?);
        progress.advance(b as u64);
    }
    Ok(out)
}

/// The head's logits for `n` feature rows (`features` is `[n, 512]`), no dropout: one per
/// row for a two-class head, else `n x C` row-major.
pub fn head_logits(
    backend: &dyn Backend,
    head: HeadSpec,
    weights: &HeadWeights,
    features: &[f32],
    n: usize,
) -> Result<Vec<f32>, ModelError> {
    if features.len() != n * HEAD_INPUTS {
        return Err(ModelError::InputLength {
            what: "head features",
            got: features.len(),
            expected: n * HEAD_INPUTS,
            detail: format!("{n} rows of {HEAD_INPUTS}"),
        });
    }
    // A trainer is the backend's one way to run the head; predicting makes no step, so
    // Adam's settings and the class weights play no part.
    let trainer = backend.head_trainer(head, weights, AdamSettings::default(), None, 0)?;
    trainer.logits(features.to_vec(), n)
}

/// Every class's probability for `n` samples: `n x classes` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassProbabilities {
    pub classes: usize,
    pub values: Vec<f32>,
}

impl ClassProbabilities {
    /// Sample `i`'s probabilities, class 0 first.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.classes..(i + 1) * self.classes]
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.values.len() / self.classes.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sample `i`'s most probable class; ties go to the lower index. (For two classes that is
    /// class 1 where its probability is above 0.5: the default threshold's decision.)
    pub fn predicted(&self, i: usize) -> usize {
        predicted_class(self.row(i))
    }

    /// The probability of class 1 of each sample of a two-class model: the seed's one number
    /// per image, bit for bit `sigmoid(logit)`. `None` for more classes.
    pub fn positive(&self) -> Option<Vec<f32>> {
        (self.classes == 2).then(|| self.values.chunks_exact(2).map(|r| r[1]).collect())
    }

    /// From a head's logits ([`head_logits`]) for `classes` classes: for two, one logit per
    /// row and the row `[1 - p, p]` with `p = sigmoid(logit)`, as the seed computed it; for
    /// more, the softmax of each row, computed stably (`exp(z - max) / sum exp(z - max)`, in
    /// `f64`).
    pub fn from_logits(logits: &[f32], classes: usize) -> Self {
        let values = if classes == 2 {
            logits
                .iter()
                .flat_map(|&z| {
                    let p = sigmoid(z);
                    [1.0 - p, p]
                })
                .collect()
        } else {
            logits.chunks_exact(classes).flat_map(softmax).collect()
        };
        Self { classes, values }
    }
}

/// The softmax of one row of logits, stably in `f64`, rounded to `f32`.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits
        .iter()
        .map(|&z| f64::from(z))
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&z| (f64::from(z) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Every class's probability for `n` feature rows (`features` is `[n, 512]`), by the head
/// `head` with `weights`: for two classes the row `[1 - p, p]`, `p = sigmoid(logit)` as the
/// seed computed it; for more the softmax of the logits.
pub fn class_probabilities(
    backend: &dyn Backend,
    head: HeadSpec,
    weights: &HeadWeights,
    features: &[f32],
    n: usize,
) -> Result<ClassProbabilities, ModelError> {
    let logits = head_logits(backend, head, weights, features, n)?;
    Ok(ClassProbabilities::from_logits(&logits, head.classes()))
}

/// Every class's probability for `n` NHWC images: the head on the base's features.
pub fn predict(
    backend: &dyn Backend,
    model: &Model,
    images: &[f32],
    n: usize,
    progress: &dyn Progress,
) -> Result<ClassProbabilities, ModelError> {
    let extractor = backend.feature_extractor(model.spec, &model.weights.base)?;
    let features = pooled_features(extractor.as_ref(), &model.spec, images, n, progress)?;
    class_probabilities(backend, model.head, &model.weights.head, &features, n)
}

/// The logistic function, `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
