//! The build-model stage's configuration, as written in the experiment file.

use super::size::{ImageSize, Pooling};
use super::spec::{class_names_problem, default_classes, ConvAlgorithm, SUPPORTED_UNITS};
use crate::validate::{self, ConfigError};
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
    /// The class names, class 0 first (label `i` is `classes[i]`): two give the seed's
    /// Dense(1) + sigmoid head, three or more a Dense(C) + softmax head. Default: the seed's
    /// pair ([`super::spec::DEFAULT_CLASSES`]).
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
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
    /// Checks every parameter, naming the one at fault: the experiment's check and the stage
    /// both call this. (Building the model checks its size, pooling and head again, as
    /// invariants of those types; this is where a user's config gets its message.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let size = ImageSize::from_pixels(self.image_size)
            .map_err(|e| ConfigError::new("image_size", e.to_string()))?;
        self.head
            .pooling
            .pooled_side(size)
            .map_err(|e| ConfigError::new("pooling", e.to_string()))?;
        if !SUPPORTED_UNITS.contains(&self.head.units) {
            return Err(ConfigError::new(
                "units",
                format!(
                    "{} is not supported; use one of {}",
                    self.head.units,
                    SUPPORTED_UNITS.map(|u| u.to_string()).join(", ")
                ),
            ));
        }
        validate::within("dropout", self.head.dropout.into(), 0.0..1.0, "[0, 1)")?;
        if let Some(problem) = class_names_problem(&self.classes) {
            return Err(ConfigError::new("classes", problem));
        }
        if let Weights::File(path) = &self.weights {
            // Under the data root, as every data path: an experiment file cannot point the
            // stage at (and hash into its record) any file of the machine.
            validate::data_path("weights", &path.to_string_lossy())?;
        }
        Ok(())
    }

    /// Resolves a relative weights path against `data_root` (absolute paths stay as they are).
    pub fn resolve_weights(&mut self, data_root: &Path) {
        if let Weights::File(p) = &mut self.weights {
            if p.is_relative() {
                *p = data_root.join(&*p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ModelConfig {
        ModelConfig {
            image_size: 224,
            weights: Weights::File("weights/vgg16.safetensors".into()),
            seed: 1,
            head: HeadConfig {
                units: 64,
                dropout: 0.2,
                pooling: Pooling::Avg4,
            },
            conv: ConvAlgorithm::default(),
            classes: default_classes(),
        }
    }

    #[test]
    fn every_bad_setting_is_refused_on_its_own_field() {
        assert_eq!(good().validate(), Ok(()));
        // (the field at fault, how the config is spoiled)
        type Case = (&'static str, fn(&mut ModelConfig));
        let cases: [Case; 12] = [
            ("image_size", |c| c.image_size = 100),
            ("image_size", |c| c.image_size = 0),
            ("pooling", |c| c.image_size = 32),
            ("units", |c| c.head.units = 48),
            ("classes", |c| c.classes = vec!["COVID".into()]),
            ("classes", |c| {
                c.classes = vec!["A".into(), "B".into(), "A".into()]
            }),
            ("classes", |c| {
                c.classes = vec!["A".into(), " ".into(), "C".into()]
            }),
            ("dropout", |c| c.head.dropout = 1.0),
            ("dropout", |c| c.head.dropout = f32::NAN),
            ("weights", |c| {
                c.weights = Weights::File("/etc/vgg16.safetensors".into())
            }),
            ("weights", |c| {
                c.weights = Weights::File("../vgg16.safetensors".into())
            }),
            ("weights", |c| {
                c.weights = Weights::File("w/../../x.safetensors".into())
            }),
        ];
        for (field, spoil) in cases {
            let mut cfg = good();
            spoil(&mut cfg);
            let e = cfg.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let mut cfg = good();
        cfg.head.dropout = f32::NAN;
        assert_eq!(
            cfg.validate().expect_err("NaN").to_string(),
            "`dropout` must be in [0, 1), not NaN"
        );
    }
}
