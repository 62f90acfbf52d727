//! The CPU backend: dfdx 0.13 with the project's own conv and pool operations ([`ops`]),
//! every shape along the network checked at compile time. It is the engine on a CPU and the
//! numerical reference for every other backend.
//!
//! # Pieces
//! - [`ops`]: 3x3 conv (+ fused ReLU), max/average pooling and flatten as dfdx operations
//!   (forward + backward); kernels use tiled im2col + `gemm` (or Winograd) on rayon,
//!   bit-identical whatever the thread count.
//! - [`layers`]: the same as dfdx `Module`s; [`vgg16`]: the base as dfdx modules
//!   ([`vgg16::Vgg16Base`] for one input size, named by its pooled sizes).
//! - [`network`] (pooled features) and [`trainer`] (the whole network's Adam steps): the
//!   [`Backend`] traits.
//!
//! Shared with every backend, above the seam: the geometry table
//! (`model::geometry`), the head and its trainer (`model::head`) and the training step
//! (`model::host_step`).
//!
//! Determinism: features, predictions and training are bit-identical run to run and for any
//! thread count on one machine; the SIMD level (AVX-512 or AVX2, chosen at run time by
//! `gemm`) and the cache sizes (which set gemm's blocking) may change the last bits between
//! machines.

pub mod layers;
pub mod network;
pub mod ops;
pub mod trainer;
pub mod vgg16;

#[cfg(test)]
mod tests;

use self::network::CpuFeatures;
use self::trainer::network_trainer;
use super::backend::{Backend, FeatureExtractor, Trainer};
use super::geometry::{with_geometry, with_units};
use super::head::head_trainer;
use super::spec::{AdamSettings, ConvAlgorithm, HeadSpec, NetworkSpec};
use super::weights::{BaseWeights, HeadWeights, ModelWeights};
use super::ModelError;

/// The model on the CPU, through dfdx.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

fn features<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    weights: &BaseWeights,
    conv: ConvAlgorithm,
) -> Result<Box<dyn FeatureExtractor>, ModelError> {
    CpuFeatures::<S0, S1, S2, S3, S4, S5, K>::boxed(weights, conv)
}

fn whole_network_trainer<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    conv: ConvAlgorithm,
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    class_weights: Option<&[f64]>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    with_units!(
        head.units(),
        network_trainer::<S0, S1, S2, S3, S4, S5, K>(
            conv,
            head,
            weights,
            adam,
            class_weights,
            seed
        )
    )
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_class(&self) -> super::backend::DeviceClass {
        super::backend::DeviceClass::Cpu
    }

    fn feature_extractor(
        &self,
        spec: NetworkSpec,
        weights: &BaseWeights,
    ) -> Result<Box<dyn FeatureExtractor>, ModelError> {
        with_geometry!(spec, features(weights, spec.conv()))
    }

    fn head_trainer(
        &self,
        head: HeadSpec,
        weights: &HeadWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError> {
        head_trainer(head, weights, adam, class_weights, seed)
    }

    fn network_trainer(
        &self,
        spec: NetworkSpec,
        head: HeadSpec,
        weights: &ModelWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError> {
        with_geometry!(
            spec,
            whole_network_trainer(spec.conv(), &head, weights, adam, class_weights, seed)
        )
    }
}
