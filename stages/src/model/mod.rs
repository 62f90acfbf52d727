//! The VGG16 transfer-learning model: what it is, on the host, and the seam to the devices
//! that compute it. Read [`backend`] first.
//!
//! # Layout
//! Images and activations are **NHWC** (`[batch, height, width, channels]`, f32), as the
//! seed's arrays (`N x 237 x 237 x 3`) and Keras use. Convolution weights are **OIHW**
//! (`[out, in, 3, 3]`) and dense weights `[out, in]`, as torchvision stores them, so
//! checkpoints load in PyTorch unchanged.
//!
//! # Above the seam (backend-independent, host values)
//! - [`spec`]: [`NetworkSpec`] (input size, pooling, conv algorithm) and [`HeadSpec`] (width,
//!   dropout), made only in combinations that fit; [`size`]: supported input sizes (32, 224,
//!   237) and poolings; [`vgg16`]: the layer table every backend reads; [`geometry`]: the
//!   table from runtime sizes to the compile-time shapes every backend instantiates.
//! - [`weights`]: the parameters in torchvision's names ([`BaseWeights`], [`HeadWeights`]);
//!   [`init`]: seeded Glorot/He initialisation; [`checkpoint`]: safetensors files of a
//!   [`Model`] (spec + weights); [`build`]: the build-model stage; [`summary`].
//! - [`head`]: the dense head and its trainer, and [`host_step`]: the one Adam step (loss,
//!   finite check, update, logits), both in dfdx on the host for every backend; a head of
//!   `C >= 3` classes ends in an `output_layer` (dense `C`, runtime width) on the host.
//! - [`inference`]: features in batches with progress, every class's probabilities
//!   ([`inference::ClassProbabilities`]).
//! - Above the model: the Keras `fit` loop (the crate's `fit` module) and the features,
//!   train, evaluate and predict stages.
//!
//! # The seam
//! [`Backend`]: build a [`FeatureExtractor`] (pooled base features for a batch) or a
//! [`Trainer`] (an Adam step on a batch, logits, weights back) from host weights.
//!
//! # Below it
//! - [`cpu`]: dfdx with the project's own conv and pool kernels and compile-time shapes.
//! - [`cuda`]: cuDNN, cuBLAS and NVRTC through cudarc on an NVIDIA GPU, the same
//!   compile-time shape chain; the head is the shared one, on the host.
//!
//! ```
//! use stages::model::{inference, Backend, CpuBackend, HeadSpec, Model, NetworkSpec};
//! use stages::model::{BaseWeights, HeadWeights, ModelWeights};
//! use stages::model::size::{ImageSize, Pooling};
//! use stages::model::ConvAlgorithm;
//! use stages::progress::NoProgress;
//!
//! let spec = NetworkSpec::new(ImageSize::S32, Pooling::Global, ConvAlgorithm::Direct)?;
//! let head = HeadSpec::new(64, 0.2)?;
//! let model = Model {
//!     spec,
//!     head,
//!     weights: ModelWeights { base: BaseWeights::he(42), head: HeadWeights::glorot(&head, 42) },
//!     classes: stages::model::spec::default_classes(),
//! };
//! let images = vec![0.5f32; 2 * spec.image_len()];
//! let p = inference::predict(&CpuBackend, &model, &images, 2, &NoProgress)?;
//! assert_eq!(p.len(), 2);
//! assert_eq!(p.row(0).len(), 2); // P(class 0), P(class 1)
//! # Ok::<(), stages::model::ModelError>(())
//! ```

pub mod backend;
pub mod build;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod geometry;
pub mod head;
pub mod host_step;
pub mod inference;
pub mod init;
pub(crate) mod output_layer;
pub mod size;
pub mod spec;
pub mod summary;
pub mod vgg16;
pub mod weights;

pub use backend::{Backend, DeviceClass, FeatureExtractor, Step, Trainer};
pub use build::{build_model, ModelReport};
pub use checkpoint::Model;
pub use config::{HeadConfig, ModelConfig, Weights};
pub use cpu::CpuBackend;
pub use cuda::{CudaBackend, GpuMath};
pub use error::ModelError;
pub use spec::{AdamSettings, ConvAlgorithm, HeadSpec, NetworkSpec};
pub use weights::{BaseWeights, HeadWeights, ModelWeights};

#[cfg(test)]
mod tests;
