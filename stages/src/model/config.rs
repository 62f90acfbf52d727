//! The build-model stage's configuration, as written in the experiment file.

use super::size::Pooling;
use super::spec::ConvAlgorithm;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the base's initial weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// Keras defaults from the config's seed: Glorot-uniform kernels, zero biases.
    Random,
    /// He-uniform kernels, zero biases: random features that keep their scale (`"random-he"`).
    RandomHe,
    /// A `.safetensors` file in torchvision VGG16 naming (see [`super::checkpoint`]).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "random" => Weights::Random,
            "random-he" => Weights::RandomHe,
            _ => Weights::File(PathBuf::from(s)),
        })
    }
}

/// `[stages.build_model]` (or wherever the engine puts it).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Input side length; one of [`super::size::ImageSize::SUPPORTED`].
    pub image_size: u32,
    /// `"random"` or a path to a torchvision-named `.safetensors` file.
    pub weights: Weights,
    /// Seed of the random initialisation (the head is always initialised from it).
    pub seed: u64,
    pub head: HeadConfig,
    /// How the base's forward pass computes its convolutions: `"direct"` (the default) or
    /// `"winograd"` (faster, slightly different rounding; see [`ConvAlgorithm`]).
    #[serde(default, deserialize_with = "conv_algorithm")]
    pub conv: ConvAlgorithm,
}

fn conv_algorithm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConvAlgorithm, D::Error> {
    let s = String::deserialize(d)?;
    ConvAlgorithm::from_name(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown conv `{s}`, expected one of {}",
            ConvAlgorithm::NAMES.join(", ")
        ))
    })
}

/// The classification head.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Hidden width of the first dense layer (the seed: 64).
    pub units: usize,
    /// Dropout rate after it (the seed: 0.2).
    pub dropout: f32,
    /// `"avg4"` (the seed) or `"global"`.
    pub pooling: Pooling,
}

impl ModelConfig {
    /// Resolves a relative weights path against `data_root` (absolute paths stay as they are).
    pub fn resolve_weights(&mut self, data_root: &Path) {
        if let Weights::File(p) = &mut self.weights {
            if p.is_relative() {
                *p = data_root.join(&*p);
            }
        }
    }
}
