//! The build-model stage: validate the config, build or load the weights, write the initial
//! checkpoint and the summary.

use super::checkpoint;
use super::config::{ModelConfig, Weights};
use super::error::ModelError;
use super::head::AnyHead;
use super::network::Vgg16Model;
use super::size::ImageSize;
use super::summary::ModelSummary;
use super::vgg16::Vgg16Features;
use dfdx::prelude::*;
use std::path::{Path, PathBuf};

/// Name of the initial checkpoint in the stage's output folder.
pub const CHECKPOINT_FILE: &str = "model.safetensors";
/// Name of the summary in the stage's output folder.
pub const SUMMARY_FILE: &str = "summary.txt";

/// What the stage produced.
#[derive(Clone, Debug)]
pub struct ModelReport {
    pub checkpoint: PathBuf,
    pub summary_file: PathBuf,
    pub summary: ModelSummary,
    /// Human-readable weights origin, for the run record (random weights are a different
    /// experiment from ImageNet weights and must say so).
    pub weights: String,
}

impl Vgg16Model {
    /// Builds the model `cfg` describes: base from `cfg.weights` (relative paths must already
    /// be resolved, see [`ModelConfig::resolve_weights`]), head Glorot-initialised from
    /// `cfg.seed`.
    pub fn from_config(cfg: &ModelConfig) -> Result<Self, ModelError> {
        let size = ImageSize::from_pixels(cfg.image_size)?;
        cfg.head.pooling.pooled_side(size)?;
        let dev = Cpu::seed_from_u64(cfg.seed);
        let head = AnyHead::glorot(&dev, cfg.head.units, cfg.head.dropout, cfg.seed)?;
        let features = match &cfg.weights {
            Weights::Random => Vgg16Features::glorot(&dev, cfg.seed),
            Weights::RandomHe => Vgg16Features::he(&dev, cfg.seed),
            Weights::File(path) => {
                let mut f: Vgg16Features<f32, Cpu> = BuildModule::build(&dev);
                checkpoint::load_base_weights(&mut f, path)?;
                f
            }
        };
        Vgg16Model::new(size, cfg.head.pooling, cfg.conv, features, head, dev)
    }
}

/// Runs the stage: writes `model.safetensors` and `summary.txt` into `out_dir` (which must
/// exist). The base counts as frozen in the summary (the seed trains the head only).
pub fn build_model(cfg: &ModelConfig, out_dir: &Path) -> Result<ModelReport, ModelError> {
    let model = Vgg16Model::from_config(cfg)?;
    let checkpoint = out_dir.join(CHECKPOINT_FILE);
    checkpoint::save(&model, &checkpoint)?;
    let summary = ModelSummary::of(&model, true);
    let weights = match &cfg.weights {
        Weights::Random => format!(
            "random (Glorot-uniform kernels, zero biases, seed {})",
            cfg.seed
        ),
        Weights::RandomHe => format!(
            "random (He-uniform kernels, zero biases, seed {})",
            cfg.seed
        ),
        Weights::File(p) => format!("base from {}", p.display()),
    };
    let summary_file = out_dir.join(SUMMARY_FILE);
    let text = format!("{summary}\nBase weights: {weights}\n");
    std::fs::write(&summary_file, text).map_err(|source| ModelError::Io {
        path: summary_file.clone(),
        source,
    })?;
    Ok(ModelReport {
        checkpoint,
        summary_file,
        summary,
        weights,
    })
}
