//! The VGG16 transfer-learning model on dfdx 0.13 (CPU), with compile-time shapes.
//!
//! # Layout
//! Images and activations are **NHWC** (`[batch, height, width, channels]`, f32), as the
//! seed's arrays (`N x 237 x 237 x 3`) and Keras use: im2col rows are then contiguous runs of
//! `3 * C` values and the gemm writes NHWC output directly. Convolution weights are **OIHW**
//! (`[out, in, 3, 3]`), as torchvision stores them, so checkpoints load in PyTorch unchanged.
//!
//! # Pieces
//! - [`ops`]: 3x3 conv (+ fused ReLU), max/avg pooling and flatten as dfdx operations
//!   (forward + backward) behind device-kernel traits; CPU kernels use tiled im2col + `gemm`
//!   on rayon, bit-identical whatever the thread count.
//! - [`layers`]: the same as dfdx `Module`s; [`vgg16`]: the layer table
//!   ([`vgg16::VGG16_FEATURES`]) and the size-generic base; [`head`]: the dense head;
//!   [`size`]: supported input sizes ([`size::ImageSize`]: 32, 224, 237) and pooling.
//! - [`stage::build_model`]: the build-model stage (writes `model.safetensors` and
//!   `summary.txt`); [`checkpoint`]: the checkpoint layout and torchvision weights.
//!
//! # For the train / evaluate stages
//! ```ignore
//! use stages::model::{checkpoint, network::Vgg16Model, head::HeadNet, with_head};
//! use dfdx::prelude::*;
//!
//! // 1. Load the checkpoint written by build-model and compute the frozen features once
//! //    (VGG16 base + the head's pooling and flatten; [n, 512], the expensive pass).
//! let dev = Cpu::seed_from_u64(seed);             // seeds dropout masks too
//! let mut model = checkpoint::load(&path, &dev)?;  // ModelError names file and tensor
//! let feats: Vec<f32> = model.base_features(&images_nhwc, n, &progress)?;
//!
//! // 2. Train the head with dfdx's Adam on those features. `HeadNet<U>` is a dfdx module
//! //    (Linear 512->U, ReLU, Dropout, Linear U->1) returning logits; write the loop once,
//! //    generic over U, and run it on whichever width the config chose:
//! fn train<const U: usize>(h: &mut HeadNet<U>, dev: &Cpu, x: &[f32], y: &[f32], n: usize) {
//!     let xs = dev.tensor_from_vec(x.to_vec(), (n, Const::<512>));
//!     let ys = dev.tensor_from_vec(y.to_vec(), (n, Const::<1>));
//!     let mut opt = Adam::new(h, AdamConfig { lr: 1e-3, ..Default::default() });
//!     let mut grads = h.alloc_grads();
//!     let logits = h.forward_mut(xs.trace(grads));      // dropout active with a tape
//!     let loss = binary_cross_entropy_with_logits_loss(logits, ys);
//!     grads = loss.backward();
//!     opt.update(h, &grads).unwrap();
//!     h.zero_grads(&mut grads);
//! }
//! with_head!(&mut model.head, h => train(h, &dev, &feats, &labels, n));
//!
//! // 3. Predict: probabilities of class 1, from features or from images.
//! let p_from_feats: Vec<f32> = model.head.logits(&dev, &feats, n)?.into_iter().map(head::sigmoid).collect();
//! let p: Vec<f32> = model.predict(&images_nhwc, n, &progress)?;
//! checkpoint::save(&model, &out_path)?;           // trained head + frozen base
//! ```
//! Determinism: the features and predictions are bit-identical run to run and for any
//! thread count on one machine; the SIMD level (AVX-512 or AVX2, chosen at run time by
//! `gemm`) may change the last bits between machines.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod head;
pub mod init;
pub mod layers;
pub mod network;
pub mod ops;
pub mod size;
pub mod stage;
pub mod summary;
pub mod vgg16;

pub use config::{HeadConfig, ModelConfig, Weights};
pub use error::ModelError;
pub use network::{base_features, Vgg16Model};
pub use stage::{build_model, ModelReport};

#[cfg(test)]
mod tests;
