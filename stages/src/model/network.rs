//! The whole model at run time: VGG16 base + pooling + flatten + head, for any supported
//! [`ImageSize`] and [`Pooling`], dispatching to the compile-time-checked instantiations.

use super::error::ModelError;
use super::head::{sigmoid, AnyHead, HEAD_INPUTS};
use super::layers::{AvgPool, Flatten};
use super::ops::ConvAlgorithm;
use super::size::{ImageSize, Pooling};
use super::vgg16::{Vgg16Base, Vgg16Features};
use crate::progress::Progress;
use dfdx::prelude::*;

/// Images per batch in the frozen-feature pass at 224 and 237: enough independent tiles for
/// every core, small enough to keep activations (about 60 MB per 237x237 image) modest.
pub const FEATURE_BATCH: usize = 8;

/// Images per batch for an input side: small images get larger batches, since the last
/// blocks' maps (2x2 at side 32) give the gemm too few rows per image to keep cores busy.
pub fn feature_batch(side: usize) -> usize {
    (FEATURE_BATCH * 224 * 224 / (side * side)).clamp(FEATURE_BATCH, 128)
}

/// VGG16 base and head, with the input size and pooling they were built for.
#[derive(Debug, Clone)]
pub struct Vgg16Model {
    pub size: ImageSize,
    pub pooling: Pooling,
    /// How the base's forward pass computes its convolutions (recorded in checkpoints).
    pub conv: ConvAlgorithm,
    pub features: Vgg16Features<f32, Cpu>,
    pub head: AnyHead,
    pub dev: Cpu,
}

/// Base, then average-pool K x K to 1 x 1, then flatten to 512, for `b` NHWC images.
/// Every shape is checked at build time for the concrete sizes below.
fn pooled<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    features: &Vgg16Features<f32, Cpu>,
    conv: ConvAlgorithm,
    dev: &Cpu,
    images: Vec<f32>,
    b: usize,
) -> Result<Vec<f32>, ModelError> {
    // Cloning the features clones Arc handles, not weights.
    let base = Vgg16Base::<S1, S2, S3, S4, S5, f32, Cpu> {
        features: features.clone(),
        conv,
    };
    let x = dev.try_tensor_from_vec(images, (b, Const::<S0>, Const::<S0>, Const::<3>))?;
    let y = base.try_forward(x)?;
    let y = AvgPool::<K, 1, 1>.try_forward(y)?;
    let y = Flatten::<HEAD_INPUTS>.try_forward(y)?;
    let mut out = vec![0.0; b * HEAD_INPUTS];
    y.copy_into(&mut out);
    Ok(out)
}

impl Vgg16Model {
    /// Checks that `pooling` fits `size` and assembles the model.
    pub fn new(
        size: ImageSize,
        pooling: Pooling,
        conv: ConvAlgorithm,
        features: Vgg16Features<f32, Cpu>,
        head: AnyHead,
        dev: Cpu,
    ) -> Result<Self, ModelError> {
        pooling.pooled_side(size)?;
        Ok(Self {
            size,
            pooling,
            conv,
            features,
            head,
            dev,
        })
    }

    /// Values per input image (NHWC, `size x size x 3`).
    pub fn image_len(&self) -> usize {
        self.size.pixels() * self.size.pixels() * 3
    }

    fn pooled_batch(&self, images: Vec<f32>, b: usize) -> Result<Vec<f32>, ModelError> {
        let (f, c, dev) = (&self.features, self.conv, &self.dev);
        match (self.size, self.pooling) {
            (ImageSize::S237, Pooling::Avg4) => {
                pooled::<237, 118, 59, 29, 14, 7, 4>(f, c, dev, images, b)
            }
            (ImageSize::S237, Pooling::Global) => {
                pooled::<237, 118, 59, 29, 14, 7, 7>(f, c, dev, images, b)
            }
            (ImageSize::S224, Pooling::Avg4) => {
                pooled::<224, 112, 56, 28, 14, 7, 4>(f, c, dev, images, b)
            }
            (ImageSize::S224, Pooling::Global) => {
                pooled::<224, 112, 56, 28, 14, 7, 7>(f, c, dev, images, b)
            }
            (ImageSize::S32, Pooling::Global) => {
                pooled::<32, 16, 8, 4, 2, 1, 1>(f, c, dev, images, b)
            }
            (size @ ImageSize::S32, Pooling::Avg4) => Err(ModelError::PoolingTooLarge {
                size: size.pixels(),
                base_out: size.base_out(),
            }),
        }
    }

    /// The frozen part of the network for `n` images: VGG16 base, then the head's pooling and
    /// flatten (they have no parameters). `images` is NHWC `[n, size, size, 3]` (RGB, the
    /// seed scales pixels to [0, 1]); the result is `[n, 512]`, row i for image i.
    ///
    /// This is the expensive pass (about 33 GFLOP per 237x237 image); it runs in batches of
    /// [`FEATURE_BATCH`] on all cores and reports one unit of progress per image.
    pub fn base_features(
        &self,
        images: &[f32],
        n: usize,
        progress: &dyn Progress,
    ) -> Result<Vec<f32>, ModelError> {
        let len = self.image_len();
        if images.len() != n * len {
            return Err(ModelError::InputLength {
                what: "images",
                got: images.len(),
                expected: n * len,
                detail: format!("{n} NHWC images of {0}x{0}x3", self.size.pixels()),
            });
        }
        progress.start("VGG16 base features", n as u64);
        let mut out = Vec::with_capacity(n * HEAD_INPUTS);
        for chunk in images.chunks(feature_batch(self.size.pixels()) * len) {
            let b = chunk.len() / len;
            out.extend(self.pooled_batch(chunk.to_vec(), b)?);
            progress.advance(b as u64);
        }
        Ok(out)
    }

    /// Probabilities of class 1 for `n` NHWC images: sigmoid(head(base_features)).
    pub fn predict(
        &self,
        images: &[f32],
        n: usize,
        progress: &dyn Progress,
    ) -> Result<Vec<f32>, ModelError> {
        let features = self.base_features(images, n, progress)?;
        Ok(self
            .head
            .logits(&self.dev, &features, n)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }
}

/// The frozen base's features for many images; see [`Vgg16Model::base_features`].
pub fn base_features(
    model: &Vgg16Model,
    images: &[f32],
    n: usize,
    progress: &dyn Progress,
) -> Result<Vec<f32>, ModelError> {
    model.base_features(images, n, progress)
}
