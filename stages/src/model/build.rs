//! The build-model stage: validate the config, make or load the weights on the host, write
//! the initial checkpoint and the summary. No backend is involved: building a model is
//! choosing its weights.

use super::checkpoint::{self, Model};
use super::config::{ModelConfig, Weights};
use super::error::ModelError;
use super::size::ImageSize;
use super::spec::{HeadSpec, NetworkSpec};
use super::summary::ModelSummary;
use super::weights::{BaseWeights, HeadWeights, ModelWeights};
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

impl Model {
    /// The model `cfg` describes: base from `cfg.weights` (relative paths must already be
    /// resolved, see [`ModelConfig::resolve_weights`]), head Glorot-initialised from
    /// `cfg.seed`, for `cfg.classes`.
    pub fn from_config(cfg: &ModelConfig) -> Result<Self, ModelError> {
        let size = ImageSize::from_pixels(cfg.image_size)?;
        let spec = NetworkSpec::new(size, cfg.head.pooling, cfg.conv)?;
        let head =
            HeadSpec::new(cfg.head.units, cfg.head.dropout)?.with_classes(cfg.classes.len())?;
        let base = match &cfg.weights {
            Weights::Random => BaseWeights::glorot(cfg.seed),
            Weights::RandomHe => BaseWeights::he(cfg.seed),
            Weights::File(path) => checkpoint::load_base_weights(path)?,
        };
        Ok(Model {
            spec,
            head,
            weights: ModelWeights {
                base,
                head: HeadWeights::glorot(&head, cfg.seed),
            },
            classes: cfg.classes.clone(),
        })
    }
}

/// Runs the stage: writes `model.safetensors` and `summary.txt` into `out_dir` (which must
/// exist). The base counts as frozen in the summary (the seed trains the head only).
pub fn build_model(cfg: &ModelConfig, out_dir: &Path) -> Result<ModelReport, ModelError> {
    let model = Model::from_config(cfg)?;
    let checkpoint = out_dir.join(CHECKPOINT_FILE);
    checkpoint::save(&model, &checkpoint)?;
    let summary = ModelSummary::of(&model.spec, &model.head, true);
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
