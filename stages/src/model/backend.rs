//! The seam between the model-level code and the devices that compute it.
//!
//! Everything above this seam (the Keras `fit` loop, the features, train, evaluate and
//! predict stages, checkpoints, the head and its training step) is written once, on host values: a
//! [`NetworkSpec`], a [`HeadSpec`] and torchvision-named weights ([`super::weights`]).
//! A backend turns those into something that runs on its device:
//!
//! - a [`FeatureExtractor`]: the frozen base's pooled features for a batch of images;
//! - a [`Trainer`]: one Adam step on a batch (the head alone on features, or the whole
//!   network on images), logits without dropout, and the weights back on the host.
//!
//! Adding a backend means implementing [`Backend`] and these two traits, and nothing else
//! above them. The CPU backend (`model::cpu`) is dfdx with the project's own conv and pool
//! kernels, every shape checked at compile time; it is also the numerical reference.

use super::error::ModelError;
use super::spec::{AdamSettings, HeadSpec, NetworkSpec};
use super::weights::{BaseWeights, HeadWeights, ModelWeights};

/// Which kind of device computed a result, as far as its bits are concerned: results are
/// bit-identical run to run within one class on one machine, and agree only within stated
/// tolerances across classes. Stages whose bytes depend on it put it in their cache keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    /// The CPU backend (dfdx and the project's kernels).
    Cpu,
    /// An NVIDIA GPU in strict fp32 (no TF32).
    CudaFp32,
    /// An NVIDIA GPU with TF32 tensor cores allowed.
    CudaTf32,
}

impl DeviceClass {
    pub const NAMES: [&'static str; 3] = ["cpu", "cuda-fp32", "cuda-tf32"];

    /// `cpu`, `cuda-fp32`, `cuda-tf32`: as written in keys and run records.
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Cpu => "cpu",
            DeviceClass::CudaFp32 => "cuda-fp32",
            DeviceClass::CudaTf32 => "cuda-tf32",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            DeviceClass::Cpu,
            DeviceClass::CudaFp32,
            DeviceClass::CudaTf32,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// A device that can run the model.
pub trait Backend: Send + Sync {
    /// A short name for messages and run records (`cpu`).
    fn name(&self) -> &'static str;

    /// The class of device whose rounding the results carry.
    fn device_class(&self) -> DeviceClass;

    /// The frozen base of `spec` with `weights`, followed by the head's pooling and flatten
    /// (they have no parameters).
    fn feature_extractor(
        &self,
        spec: NetworkSpec,
        weights: &BaseWeights,
    ) -> Result<Box<dyn FeatureExtractor>, ModelError>;

    /// A trainer of the head alone, on rows of pooled features (`[n, 512]`). `seed` seeds the
    /// dropout masks; `class_weights` (one per class, Keras' `class_weight`) weighs the loss.
    fn head_trainer(
        &self,
        head: HeadSpec,
        weights: &HeadWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError>;

    /// A trainer of the whole network (base and head), on rows of NHWC images of `spec`'s
    /// size. `seed` seeds the dropout masks; `class_weights` as for [`Backend::head_trainer`].
    fn network_trainer(
        &self,
        spec: NetworkSpec,
        head: HeadSpec,
        weights: &ModelWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError>;
}

/// The frozen base, ready to run.
pub trait FeatureExtractor {
    /// Images per call that keep every core busy and the activations modest.
    fn batch_size(&self) -> usize;

    /// The pooled features `[n, 512]` (row i for image i) of `n` NHWC images
    /// (`images.len() == n * size * size * 3`).
    fn pooled_features(&self, images: &[f32], n: usize) -> Result<Vec<f32>, ModelError>;
}

/// What one optimisation step saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The batch's loss before the update: the mean binary cross-entropy of the logit for two
    /// classes, the mean categorical cross-entropy of the logits' softmax for more (each
    /// weighted by class where class weights are given). When it is not finite, no update
    /// was made.
    pub loss: f32,
    /// The batch's logits in the same forward pass (dropout active): one per row for two
    /// classes, else `n x C` row-major.
    pub logits: Vec<f32>,
}

/// A network being trained with Adam on the cross-entropy of its logits.
pub trait Trainer {
    /// Values per input row: 512 for the head, `size * size * 3` for the whole network.
    fn row_len(&self) -> usize;

    /// Rows per forward pass when only predicting (bounds the activations).
    fn eval_batch(&self) -> usize;

    /// Logits per row: 1 for a two-class head (its sigmoid is the probability of class 1),
    /// else the number of classes.
    fn outputs(&self) -> usize;

    /// One step on `n = targets.len()` rows (`rows.len() == n * row_len()`); targets are 0 or
    /// 1 for two classes, else the class index (as `f32`).
    fn step(&mut self, rows: Vec<f32>, targets: Vec<f32>) -> Result<Step, ModelError>;

    /// Logits of `n` rows, without dropout (`n * outputs()` values, row-major).
    fn logits(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ModelError>;

    /// Writes the trained parameters into `weights`: the head, and the base too when the
    /// whole network trains.
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError>;
}
