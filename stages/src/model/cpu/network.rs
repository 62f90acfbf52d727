//! The frozen base on the CPU: VGG16, then the head's average pooling and flatten, for one
//! compile-time instantiation (see `model::geometry`).

use super::layers::{AvgPool, Flatten};
use super::vgg16::{Vgg16Base, Vgg16Features};
use crate::model::backend::FeatureExtractor;
use crate::model::spec::{check_image_len, ConvAlgorithm, HEAD_INPUTS};
use crate::model::weights::BaseWeights;
use crate::model::ModelError;
use dfdx::prelude::*;

/// Images per batch in the frozen-feature pass at 224 and 237: enough independent tiles for
/// every core, small enough to keep activations (about 60 MB per 237x237 image) modest.
pub const FEATURE_BATCH: usize = 8;

/// Images per batch for an input side: small images get larger batches, since the last
/// blocks' maps (2x2 at side 32) give the gemm too few rows per image to keep cores busy.
pub fn feature_batch(side: usize) -> usize {
    (FEATURE_BATCH * 224 * 224 / (side * side)).clamp(FEATURE_BATCH, 128)
}

impl Vgg16Features<f32, Cpu> {
    /// The base holding `weights`.
    pub fn from_weights(dev: &Cpu, weights: &BaseWeights) -> Result<Self, ModelError> {
        let mut f: Self = BuildModule::try_build(dev)?;
        for (conv, w) in f.convs_mut().into_iter().zip(weights.convs()) {
            conv.set(&w.weight, &w.bias);
        }
        Ok(f)
    }

    /// The base's parameters on the host.
    pub fn to_weights(&self) -> Result<BaseWeights, ModelError> {
        let mut flat = self
            .convs()
            .into_iter()
            .flat_map(|c| [c.weight_vec(), c.bias_vec()]);
        BaseWeights::try_from_fn(|_, _| Ok(flat.next().unwrap_or_default()))
    }
}

/// The base for input side `S0` with pooled sizes `S1..S5` and pooling window `K`.
pub(super) struct CpuFeatures<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
> {
    base: Vgg16Base<S1, S2, S3, S4, S5, f32, Cpu>,
    dev: Cpu,
}

impl<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    > CpuFeatures<S0, S1, S2, S3, S4, S5, K>
{
    pub(super) fn boxed(
        weights: &BaseWeights,
        conv: ConvAlgorithm,
    ) -> Result<Box<dyn FeatureExtractor>, ModelError> {
        let dev = Cpu::default();
        let features = Vgg16Features::from_weights(&dev, weights)?;
        Ok(Box::new(Self {
            base: Vgg16Base { features, conv },
            dev,
        }))
    }
}

impl<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    > FeatureExtractor for CpuFeatures<S0, S1, S2, S3, S4, S5, K>
{
    fn batch_size(&self) -> usize {
        feature_batch(S0)
    }

    fn pooled_features(&self, images: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        check_image_len(images.len(), n, S0)?;
        let x = self
            .dev
            .try_tensor_from_vec(images.to_vec(), (n, Const::<S0>, Const::<S0>, Const::<3>))?;
        let y = self.base.try_forward(x)?;
        let y = AvgPool::<K, 1, 1>.try_forward(y)?;
        let y = Flatten::<HEAD_INPUTS>.try_forward(y)?;
        let mut out = vec![0.0; n * HEAD_INPUTS];
        y.copy_into(&mut out);
        Ok(out)
    }
}
