//! The features stage: the frozen VGG16 base's pooled output for every image, computed once.
//!
//! Keyed (by the engine) on the base weights file and the normalized images only, so a change
//! of the split, the head or the training parameters reuses it.

use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::model::inference::pooled_features;
use crate::model::spec::HEAD_INPUTS;
use crate::model::{checkpoint, Backend, ModelError};
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: images are {got}x{got}, but the base was built for {want}x{want}")]
    Size {
        path: String,
        got: usize,
        want: usize,
    },
}

/// What the stage did, for the run record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeaturesReport {
    pub images: usize,
    pub image_size: usize,
    pub pooling: String,
    /// The forward algorithm of the convolutions (`direct` or `winograd`).
    pub conv: String,
    pub features_per_image: usize,
}

/// Reads `base` (written by [`checkpoint::save_base`]) and `images` (N x S x S x 3 f32) and
/// writes `out` (N x 512 f32), computed on `backend`.
pub fn compute(
    backend: &dyn Backend,
    base: &Path,
    images: &Path,
    out: &Path,
    progress: &dyn Progress,
) -> Result<FeaturesReport, FeaturesError> {
    let checkpoint::BaseCheckpoint { spec, weights } = checkpoint::load_base(base)?;
    let (shape, values) = arrays::read_f32(images)?;
    let side = spec.size().pixels();
    let n = match shape.as_slice() {
        [n, h, w, 3] if *h == side && *w == side => *n,
        [_, h, _, 3] => {
            return Err(FeaturesError::Size {
                path: images.display().to_string(),
                got: *h,
                want: side,
            })
        }
        _ => {
            return Err(ArrayError::Shape {
                path: images.to_path_buf(),
                shape,
                expected: "N x H x W x 3".into(),
            }
            .into())
        }
    };
    let extractor = backend.feature_extractor(spec, &weights)?;
    let out_values = pooled_features(extractor.as_ref(), &spec, &values, n, progress)?;
    arrays::write_f32(out, &[n, HEAD_INPUTS], out_values)?;
    Ok(FeaturesReport {
        images: n,
        image_size: side,
        pooling: spec.pooling().name().to_string(),
        conv: spec.conv().name().to_string(),
        features_per_image: HEAD_INPUTS,
    })
}

/// Writes the base of a whole-model checkpoint on its own (see [`checkpoint::save_base`]),
/// so that the features depend on nothing the head or training can change.
pub fn write_base(model_checkpoint: &Path, out: &Path) -> Result<(), ModelError> {
    let model = checkpoint::load(model_checkpoint)?;
    checkpoint::save_base(&model.spec, &model.weights.base, out)
}
