//! Running a model above the backend seam: the frozen base's features for any number of
//! images, in the backend's batches with progress, and probabilities from features or images.

use super::backend::{Backend, FeatureExtractor};
use super::checkpoint::Model;
use super::error::ModelError;
use super::spec::{check_image_len, AdamSettings, HeadSpec, NetworkSpec, HEAD_INPUTS};
use super::weights::HeadWeights;
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

/// The head's logits for `n` feature rows (`features` is `[n, 512]`), no dropout.
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
    // Adam's settings play no part.
    let trainer = backend.head_trainer(head, weights, AdamSettings::default(), 0)?;
    trainer.logits(features.to_vec(), n)
}

/// Probabilities of class 1 for `n` NHWC images: sigmoid(head(base features)).
pub fn predict(
    backend: &dyn Backend,
    model: &Model,
    images: &[f32],
    n: usize,
    progress: &dyn Progress,
) -> Result<Vec<f32>, ModelError> {
    let extractor = backend.feature_extractor(model.spec, &model.weights.base)?;
    let features = pooled_features(extractor.as_ref(), &model.spec, images, n, progress)?;
    Ok(
        head_logits(backend, model.head, &model.weights.head, &features, n)?
            .into_iter()
            .map(sigmoid)
            .collect(),
    )
}

/// The logistic function, `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
