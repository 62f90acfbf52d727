//! The train stage: the head on frozen VGG16 features, or (with `freeze_base = false`) the
//! whole network on the images, with Keras' `fit` semantics ([`crate::fit`]).
//!
//! When the base is frozen and no augmentation is applied, the base's output for an image never
//! changes during training, so computing it once and training the head on it gives exactly
//! the model that running the whole network every epoch would give; only faster.

use std::collections::BTreeMap;
use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::fit::{fit, validation_split, FitError, FitSettings, Rows};
use crate::metrics::categorical::balanced_class_weights;
use crate::model::inference::pooled_features;
use crate::model::spec::HEAD_INPUTS;
use crate::model::{checkpoint, AdamSettings, Backend, ModelError};
use crate::progress::Progress;
use crate::validate::{self, ConfigError};

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
    /// on the images, through the backend's whole-network trainer.
    pub freeze_base: bool,
    /// Keras' `class_weight`: `None` weighs every row 1 (the seed).
    #[serde(default)]
    pub class_weight: Option<ClassWeight>,
}

/// How the rows of each class weigh in the training loss (Keras' `fit(class_weight=...)`):
/// row `i` weighs `w_{y_i}` and a batch's loss is `sum(w_i l_i) / N`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum ClassWeight {
    /// `"balanced"`: scikit-learn's `n / (C n_c)` over the training rows (the validation
    /// share included, as `compute_class_weight` on the `y` handed to `fit`).
    Named(String),
    /// `{ NAME = weight, ... }`: one finite weight >= 0 per class, keyed by class name.
    Table(BTreeMap<String, f64>),
}

impl ClassWeight {
    /// The one name [`ClassWeight::Named`] takes.
    pub const BALANCED: &'static str = "balanced";

    /// Checks what can be checked without the model's classes: the name, and each weight.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ClassWeight::Named(name) if name == Self::BALANCED => Ok(()),
            ClassWeight::Named(name) => Err(ConfigError::new(
                "class_weight",
                format!("`{name}` is not a class weighting: use \"balanced\" or a table {{ CLASS = weight, ... }}"),
            )),
            ClassWeight::Table(table) => {
                if table.is_empty() {
                    return Err(ConfigError::new(
                        "class_weight",
                        "is an empty table: give every class a weight, or leave class_weight out",
                    ));
                }
                for (name, w) in table {
                    if !(w.is_finite() && *w >= 0.0) {
                        return Err(ConfigError::new(
                            "class_weight",
                            format!("the weight of `{name}` must be a finite number >= 0, not {w}"),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// One weight per class of `classes` (class 0 first), from the `labels` of the training
    /// rows for `"balanced"`.
    pub fn resolve(&self, classes: &[String], labels: &[u32]) -> Result<Vec<f64>, ConfigError> {
        self.validate()?;
        match self {
            ClassWeight::Named(_) => balanced_class_weights(labels, classes.len()).map_err(|e| {
                ConfigError::new(
                    "class_weight",
                    format!("\"balanced\" cannot weigh these rows: {e}"),
                )
            }),
            ClassWeight::Table(table) => {
                if let Some(unknown) = table.keys().find(|k| !classes.contains(k)) {
                    return Err(ConfigError::new(
                        "class_weight",
                        format!(
                            "`{unknown}` is not a class of the model; its classes are {}",
                            classes.join(", ")
                        ),
                    ));
                }
                let missing: Vec<&str> = classes
                    .iter()
                    .filter(|c| !table.contains_key(*c))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    return Err(ConfigError::new(
                        "class_weight",
                        format!(
                            "gives no weight to {} (every class needs one, as in Keras)",
                            missing.join(", ")
                        ),
                    ));
                }
                Ok(classes.iter().map(|c| table[c]).collect())
            }
        }
    }
}

impl TrainConfig {
    /// Checks every parameter, naming the one at fault: the experiment's check and the stage
    /// both call this. NaN and infinities fail every check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::at_least_one("epochs", self.epochs)?;
        validate::at_least_one("batch_size", self.batch_size)?;
        validate::positive("learning_rate", self.learning_rate)?;
        validate::within("beta1", self.beta1, 0.0..1.0, "[0, 1)")?;
        validate::within("beta2", self.beta2, 0.0..1.0, "[0, 1)")?;
        validate::positive("epsilon", self.epsilon)?;
        validate::within(
            "validation_fraction",
            self.validation_fraction,
            0.0..1.0,
            "[0, 1)",
        )?;
        if let Some(w) = &self.class_weight {
            w.validate()?;
        }
        Ok(())
    }

    fn adam(&self) -> AdamSettings {
        AdamSettings {
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
        }
    }

    fn fit_settings(&self, class_weights: Option<Vec<f64>>) -> FitSettings {
        FitSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            validation_fraction: self.validation_fraction,
            seed: self.seed,
            class_weights,
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
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
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
    /// The weight of each class in the loss, by class name, where `class_weight` was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<BTreeMap<String, f64>>,
}

/// The features of every row as the trained model sees them, written beside the checkpoint.
pub const FEATURES_FILE: &str = "features.npy";
/// The whole trained model: the same file name as the model stage's initial checkpoint.
pub use crate::model::build::CHECKPOINT_FILE;
/// The trained head alone, written beside the whole model when the base was frozen: with the
/// initial checkpoint it was trained from, it gives the whole model back
/// ([`checkpoint::with_head`]).
pub const HEAD_FILE: &str = "head.safetensors";

/// Runs the train stage on `backend`: trains the head (or, with `freeze_base = false`, the
/// whole network) and writes `model.safetensors` (the whole trained model), `history.csv` and
/// `features.npy` (every row's features under the trained base) into `out_dir`; with a frozen
/// base also `head.safetensors`, the trained head alone.
pub fn run(
    backend: &dyn Backend,
    inputs: &TrainInputs,
    cfg: &TrainConfig,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<TrainReport, TrainError> {
    cfg.validate()?;
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
    let classes = model.classes().to_vec();
    if let Some(&row) = rows
        .iter()
        .find(|&&r| usize::from(labels[r]) >= classes.len())
    {
        let label = labels[row];
        let top = rows.iter().map(|&r| labels[r]).max().unwrap_or(label);
        return Err(TrainError::Config(format!(
            "{}: row {row} has label {label}, but the model has {} classes ({}, labels 0 to {}): set model.classes to one name per label (labels 0 to {top} need {} names)",
            inputs.labels.display(),
            classes.len(),
            classes.join(", "),
            classes.len() - 1,
            usize::from(top) + 1
        )));
    }
    let class_weights = match &cfg.class_weight {
        None => None,
        Some(w) => {
            let train_labels: Vec<u32> = rows.iter().map(|&r| u32::from(labels[r])).collect();
            Some(w.resolve(&classes, &train_labels)?)
        }
    };
    let fit_settings = cfg.fit_settings(class_weights.clone());
    let history = if cfg.freeze_base {
        let mut trainer = backend.head_trainer(
            model.head,
            &model.weights.head,
            cfg.adam(),
            class_weights.as_deref(),
            cfg.seed,
        )?;
        let data = Rows {
            values: &features,
            width: HEAD_INPUTS,
            labels: &labels,
        };
        let history = fit(
            trainer.as_mut(),
            &data,
            &rows,
            &fit_settings,
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
            class_weights.as_deref(),
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
            &fit_settings,
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
    checkpoint::save(&model, &out_dir.join(CHECKPOINT_FILE))?;
    if cfg.freeze_base {
        checkpoint::save_head(&model, &out_dir.join(HEAD_FILE))?;
    }
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
        class_weights: class_weights.map(|w| classes.iter().cloned().zip(w).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CpuBackend;
    use crate::progress::NoProgress;

    #[test]
    fn class_weights_are_balanced_as_sklearn_or_keyed_by_class_name() {
        let classes: Vec<String> = ["NORMAL", "PNEUMONIA", "COVID-19"]
            .map(String::from)
            .to_vec();
        // 6 rows: 3, 2 and 1 of each class: n / (C n_c) = 6/9, 6/6, 6/3.
        let labels = [0, 1, 0, 2, 1, 0];
        let balanced = ClassWeight::Named("balanced".into())
            .resolve(&classes, &labels)
            .unwrap();
        assert_eq!(balanced, vec![6.0 / 9.0, 1.0, 2.0]);
        // A table is keyed by name, whatever its order; the weights come back in class order.
        let table: ClassWeight = toml::from_str::<toml::Table>(
            "w = { \"COVID-19\" = 3.0, NORMAL = 0.5, PNEUMONIA = 1.0 }",
        )
        .unwrap()["w"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(
            table.resolve(&classes, &labels).unwrap(),
            vec![0.5, 1.0, 3.0]
        );
        // A name that is no class, a class without a weight, a class without rows.
        let bad = |w: ClassWeight, labels: &[u32]| w.resolve(&classes, labels).unwrap_err();
        let unknown = ClassWeight::Table(BTreeMap::from([("COVID".to_string(), 1.0)]));
        let e = bad(unknown, &labels);
        assert_eq!(e.field, "class_weight");
        assert!(e.message.contains("`COVID` is not a class"), "{e}");
        let partial = ClassWeight::Table(BTreeMap::from([("NORMAL".to_string(), 1.0)]));
        let e = bad(partial, &labels);
        assert!(e.message.contains("PNEUMONIA, COVID-19"), "{e}");
        let e = bad(ClassWeight::Named("balanced".into()), &[0, 1, 1]);
        assert!(e.message.contains("class 2 has no samples"), "{e}");
    }

    #[test]
    fn every_bad_setting_is_refused_on_its_own_field() {
        let good = TrainConfig {
            epochs: 3,
            batch_size: 8,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            validation_fraction: 0.1,
            seed: 1,
            freeze_base: true,
            class_weight: None,
        };
        assert_eq!(good.validate(), Ok(()));
        // (the field at fault, how the config is spoiled)
        type Case = (&'static str, fn(&mut TrainConfig));
        let cases: [Case; 15] = [
            ("epochs", |c| c.epochs = 0),
            ("batch_size", |c| c.batch_size = 0),
            ("learning_rate", |c| c.learning_rate = f64::NAN),
            ("learning_rate", |c| c.learning_rate = 0.0),
            ("learning_rate", |c| c.learning_rate = f64::INFINITY),
            ("beta1", |c| c.beta1 = 1.0),
            ("beta1", |c| c.beta1 = f64::NAN),
            ("beta2", |c| c.beta2 = -0.1),
            ("epsilon", |c| c.epsilon = f64::NAN),
            ("epsilon", |c| c.epsilon = 0.0),
            ("validation_fraction", |c| c.validation_fraction = 1.0),
            ("validation_fraction", |c| c.validation_fraction = f64::NAN),
            ("class_weight", |c| {
                c.class_weight = Some(ClassWeight::Named("balance".into()))
            }),
            ("class_weight", |c| {
                c.class_weight = Some(ClassWeight::Table(BTreeMap::new()))
            }),
            ("class_weight", |c| {
                c.class_weight = Some(ClassWeight::Table(BTreeMap::from([(
                    "COVID".to_string(),
                    -1.0,
                )])))
            }),
        ];
        for (field, spoil) in cases {
            let mut cfg = good.clone();
            spoil(&mut cfg);
            let e = cfg.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        // The run refuses the same way, before reading anything (none of these files exist).
        let bad = TrainConfig {
            learning_rate: f64::NAN,
            ..good
        };
        let nowhere = Path::new("/nonexistent/pipeline-test");
        let inputs = TrainInputs {
            model: nowhere,
            features: nowhere,
            labels: nowhere,
            train_index: nowhere,
            images: nowhere,
        };
        let e =
            run(&CpuBackend, &inputs, &bad, nowhere, &NoProgress).expect_err("NaN learning rate");
        assert_eq!(
            e.to_string(),
            "`learning_rate` must be a finite number above 0, not NaN"
        );
    }
}
