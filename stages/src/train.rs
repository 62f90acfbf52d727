//! The train stage: the head on frozen VGG16 features, or (with `freeze_base = false`) the
//! whole network on the images, with Keras' `fit` semantics ([`crate::fit`]).
//!
//! When the base is frozen and no augmentation is applied, the base's output for an image never
//! changes during training, so computing it once and training the head on it gives exactly
//! the model that running the whole network every epoch would give; only faster.

use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::fit::{fit, validation_split, FitError, FitSettings, Rows};
use crate::model::inference::pooled_features;
use crate::model::spec::HEAD_INPUTS;
use crate::model::{checkpoint, AdamSettings, Backend, ModelError};
use crate::progress::Progress;

/// `[stages.train]` parameters.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Keras' default is 1e-7 (PyTorch's 1e-8).
    pub epsilon: f64,
    pub validation_fraction: f64,
    pub seed: u64,
    /// `true`: train the head on precomputed features; `false`: fine-tune the whole network
    /// on the images ([`crate::finetune`]).
    pub freeze_base: bool,
}

impl TrainConfig {
    fn adam(&self) -> AdamSettings {
        AdamSettings {
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
        }
    }

    fn fit_settings(&self) -> FitSettings {
        FitSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            validation_fraction: self.validation_fraction,
            seed: self.seed,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

fn check_settings(cfg: &TrainConfig) -> Result<(), TrainError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "epochs and batch_size must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&cfg.validation_fraction) {
        return Err(TrainError::Config(format!(
            "validation_fraction must be in [0, 1), not {}",
            cfg.validation_fraction
        )));
    }
    Ok(())
}

/// The train stage's inputs, as files written by earlier stages.
pub struct TrainInputs<'a> {
    /// The initial checkpoint (`model.safetensors` of the model stage).
    pub model: &'a Path,
    /// `[n, 512]` features of every row (the features stage).
    pub features: &'a Path,
    pub labels: &'a Path,
    /// Rows to train on, in split order (`train_index.npy`).
    pub train_index: &'a Path,
    /// The normalized images, read only when fine-tuning (`freeze_base = false`).
    pub images: &'a Path,
}

/// What training did, for the run record; the last epoch's values are the stage's metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainReport {
    pub epochs: usize,
    pub fit_rows: usize,
    pub validation_rows: usize,
    pub final_loss: f64,
    pub final_accuracy: f64,
    pub final_val_loss: Option<f64>,
    pub final_val_accuracy: Option<f64>,
}

/// The features of every row as the trained model sees them, written beside the checkpoint.
pub const FEATURES_FILE: &str = "features.npy";

/// Runs the train stage on `backend`: trains the head (or, with `freeze_base = false`, the
/// whole network) and writes `model.safetensors` (the whole trained model), `history.csv` and
/// `features.npy` (every row's features under the trained base) into `out_dir`.
pub fn run(
    backend: &dyn Backend,
    inputs: &TrainInputs,
    cfg: &TrainConfig,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<TrainReport, TrainError> {
    let mut model = checkpoint::load(inputs.model)?;
    let (shape, features) = arrays::read_f32(inputs.features)?;
    let labels = arrays::read_labels(inputs.labels)?;
    let rows = arrays::read_index(inputs.train_index)?;
    if shape.len() != 2 || shape[1] != HEAD_INPUTS || shape[0] != labels.len() {
        return Err(ArrayError::Shape {
            path: inputs.features.to_path_buf(),
            shape,
            expected: format!("{} x {HEAD_INPUTS} (one row per label)", labels.len()),
        }
        .into());
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= labels.len()) {
        return Err(TrainError::Config(format!(
            "{}: row {bad} is out of range for {} labels",
            inputs.train_index.display(),
            labels.len()
        )));
    }
    check_settings(cfg)?;
    let history = if cfg.freeze_base {
        let mut trainer =
            backend.head_trainer(model.head, &model.weights.head, cfg.adam(), cfg.seed)?;
        let data = Rows {
            values: &features,
            width: HEAD_INPUTS,
            labels: &labels,
        };
        let history = fit(
            trainer.as_mut(),
            &data,
            &rows,
            &cfg.fit_settings(),
            "epochs",
            progress,
        )?;
        trainer.export(&mut model.weights)?;
        // The base is unchanged, so are the features: pass them on for evaluation.
        std::fs::copy(inputs.features, out_dir.join(FEATURES_FILE)).map_err(|e| {
            TrainError::Write {
                path: out_dir.join(FEATURES_FILE).display().to_string(),
                message: e.to_string(),
            }
        })?;
        history
    } else {
        let (shape, images) = arrays::read_f32(inputs.images)?;
        let side = model.spec.size().pixels();
        if shape != [labels.len(), side, side, 3] {
            return Err(ArrayError::Shape {
                path: inputs.images.to_path_buf(),
                shape,
                expected: format!("{} x {side} x {side} x 3", labels.len()),
            }
            .into());
        }
        let mut trainer = backend.network_trainer(
            model.spec,
            model.head,
            &model.weights,
            cfg.adam(),
            cfg.seed,
        )?;
        let data = Rows {
            values: &images,
            width: side * side * 3,
            labels: &labels,
        };
        let history = fit(
            trainer.as_mut(),
            &data,
            &rows,
            &cfg.fit_settings(),
            "fine-tuning epochs (whole network)",
            progress,
        )?;
        trainer.export(&mut model.weights)?;
        drop(trainer);
        // The base changed: what the trained model sees of each image changed with it.
        let extractor = backend.feature_extractor(model.spec, &model.weights.base)?;
        let trained = pooled_features(
            extractor.as_ref(),
            &model.spec,
            &images,
            labels.len(),
            progress,
        )?;
        arrays::write_f32(
            &out_dir.join(FEATURES_FILE),
            &[labels.len(), HEAD_INPUTS],
            trained,
        )?;
        history
    };
    checkpoint::save(&model, &out_dir.join("model.safetensors"))?;
    let history_path = out_dir.join("history.csv");
    history
        .write_csv(&history_path)
        .map_err(|e| TrainError::Write {
            path: history_path.display().to_string(),
            message: e.to_string(),
        })?;
    let (fit_rows, val_rows) = validation_split(&rows, cfg.validation_fraction);
    let last = history.epochs.last();
    Ok(TrainReport {
        epochs: history.epochs.len(),
        fit_rows: fit_rows.len(),
        validation_rows: val_rows.len(),
        final_loss: last.map_or(f64::NAN, |e| e.loss),
        final_accuracy: last.map_or(f64::NAN, |e| e.accuracy),
        final_val_loss: last.and_then(|e| e.val_loss),
        final_val_accuracy: last.and_then(|e| e.val_accuracy),
    })
}
