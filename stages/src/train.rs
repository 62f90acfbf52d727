//! Training the classification head on frozen VGG16 features, with Keras' `fit` semantics.
//!
//! When the base is frozen and no augmentation is applied, the base's output for an image never
//! changes during training, so computing it once and training the head on it gives exactly
//! the model that running the whole network every epoch would give; only faster.
//!
//! Keras semantics kept: `validation_fraction` takes the LAST fraction of the training rows,
//! before any shuffling; the remaining rows are reshuffled every epoch (from the run's seed);
//! dropout is active in training only; the reported training loss and accuracy are the means
//! over the epoch's batches as they were trained, weighted by batch size.

use std::time::Instant;

use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::data::split::shuffle;
use crate::metrics::{EpochRecord, History};
use crate::model::head::{with_head, HEAD_INPUTS};
use crate::model::{checkpoint, ModelError, Vgg16Model};
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
    /// on the images ([`crate::finetune`]).
    pub freeze_base: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the loss became {value} at epoch {epoch}, batch {batch}: lower the learning rate or check the inputs")]
    NonFinite {
        epoch: usize,
        batch: usize,
        value: f32,
    },
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
    #[error("tensor error: {0}")]
    Tensor(String),
}

impl From<dfdx::tensor::CpuError> for TrainError {
    fn from(e: dfdx::tensor::CpuError) -> Self {
        TrainError::Tensor(format!("{e:?}"))
    }
}

/// Rows used for fitting and for validation, Keras' way.
pub fn validation_split(rows: &[usize], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let split_at = ((rows.len() as f64) * (1.0 - fraction)).floor() as usize;
    let split_at = split_at.clamp(0, rows.len());
    (rows[..split_at].to_vec(), rows[split_at..].to_vec())
}

/// Mean binary cross-entropy and accuracy of logits against 0/1 targets, computed stably
/// from the logit: `max(x, 0) - x y + ln(1 + e^-|x|)`.
pub fn loss_and_accuracy(logits: &[f32], targets: &[f32]) -> (f64, f64) {
    let mut loss = 0.0f64;
    let mut right = 0usize;
    for (&x, &y) in logits.iter().zip(targets) {
        let (x, y) = (f64::from(x), f64::from(y));
        loss += x.max(0.0) - x * y + (-x.abs()).exp().ln_1p();
        if (x > 0.0) == (y > 0.5) {
            right += 1;
        }
    }
    let n = logits.len().max(1) as f64;
    (loss / n, right as f64 / n)
}

/// Trains `model.head` on the features of `train_rows` (`features` is `[n, 512]` for all
/// rows, `labels` their 0/1 labels). Returns the per-epoch history.
pub fn train_head(
    model: &mut Vgg16Model,
    features: &[f32],
    labels: &[u8],
    train_rows: &[usize],
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<History, TrainError> {
    cfg.validate()?;
    let dev = Cpu::seed_from_u64(cfg.seed);
    let data = Rows {
        values: features,
        width: HEAD_INPUTS,
        labels,
        dev: &dev,
        shape: |n| (n, Const::<HEAD_INPUTS>),
        // The head is small: the validation rows go through in one pass.
        eval_batch: usize::MAX,
    };
    with_head!(&mut model.head, h => fit(h, &data, train_rows, cfg, "epochs", progress))
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
        Ok(())
    }
}

/// The rows a network trains on: `width` values per row (a feature vector or an image) and
/// each row's 0/1 label, turned into batches of tensors of shape `S`.
pub(crate) struct Rows<'a, S> {
    pub values: &'a [f32],
    pub width: usize,
    pub labels: &'a [u8],
    pub dev: &'a Cpu,
    /// The tensor shape of a batch of `n` rows.
    pub shape: fn(usize) -> S,
    /// Rows per forward pass when predicting the validation rows (bounds the activations).
    pub eval_batch: usize,
}

impl<S: Shape> Rows<'_, S> {
    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut x = Vec::with_capacity(rows.len() * self.width);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(&self.values[r * self.width..(r + 1) * self.width]);
            y.push(f32::from(self.labels[r]));
        }
        (x, y)
    }

    /// The batch of `rows` as a tensor, and their labels.
    fn batch(&self, rows: &[usize]) -> Result<(Batch<S>, Vec<f32>), TrainError> {
        let (x, y) = self.gather(rows);
        Ok((
            self.dev.try_tensor_from_vec(x, (self.shape)(rows.len()))?,
            y,
        ))
    }
}

type Batch<S> = Tensor<S, f32, Cpu>;
type Logits<T = NoneTape> = Tensor<(usize, Const<1>), f32, Cpu, T>;

/// Keras' `fit` for any network from rows of shape `S` to one logit: the last
/// `validation_fraction` of `train_rows` held out, the rest reshuffled every epoch from the
/// seed, Adam on the mean binary cross-entropy of each batch, a non-finite loss stopping with
/// its epoch and batch. `phase` names the progress bar (one unit per training row).
pub(crate) fn fit<S: Shape, M>(
    net: &mut M,
    data: &Rows<S>,
    train_rows: &[usize],
    cfg: &TrainConfig,
    phase: &str,
    progress: &dyn Progress,
) -> Result<History, TrainError>
where
    M: TensorCollection<f32, Cpu>
        + ModuleMut<
            Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Logits<OwnedTape<f32, Cpu>>,
            Error = CpuError,
        > + Module<Tensor<S, f32, Cpu>, Output = Logits, Error = CpuError>,
{
    let (fit_rows, val_rows) = validation_split(train_rows, cfg.validation_fraction);
    if fit_rows.is_empty() {
        return Err(TrainError::Config(
            "no training rows left after the validation split".into(),
        ));
    }
    let mut opt = Adam::new(
        net,
        AdamConfig {
            lr: cfg.learning_rate,
            betas: [cfg.beta1, cfg.beta2],
            eps: cfg.epsilon,
            weight_decay: None,
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut grads = net.alloc_grads();
    let mut history = History::default();
    progress.start(phase, (cfg.epochs * fit_rows.len()) as u64);
    for epoch in 1..=cfg.epochs {
        let clock = Instant::now();
        let mut order = fit_rows.clone();
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0.0f64, 0usize);
        for (b, rows) in order.chunks(cfg.batch_size).enumerate() {
            let n = rows.len();
            let (xs, y) = data.batch(rows)?;
            let ys = data.dev.try_tensor_from_vec(y.clone(), (n, Const::<1>))?;
            let logits = net.try_forward_mut(xs.traced(grads))?;
            let mut batch_logits = vec![0.0; n];
            logits.copy_into(&mut batch_logits);
            let loss = binary_cross_entropy_with_logits_loss(logits, ys);
            let value = loss.array();
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    batch: b + 1,
                    value,
                });
            }
            grads = loss.backward();
            opt.update(net, &grads)
                .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
            net.zero_grads(&mut grads);
            let (_, acc) = loss_and_accuracy(&batch_logits, &y);
            loss_sum += f64::from(value) * n as f64;
            right += acc * n as f64;
            seen += n;
            progress.advance(n as u64);
        }
        let (val_loss, val_accuracy) = if val_rows.is_empty() {
            (None, None)
        } else {
            let mut logits = Vec::with_capacity(val_rows.len());
            let mut targets = Vec::with_capacity(val_rows.len());
            for rows in val_rows.chunks(data.eval_batch) {
                let (xs, y) = data.batch(rows)?;
                let out = net.try_forward(xs)?;
                let mut part = vec![0.0; rows.len()];
                out.copy_into(&mut part);
                logits.extend(part);
                targets.extend(y);
            }
            let (l, a) = loss_and_accuracy(&logits, &targets);
            (Some(l), Some(a))
        };
        let record = EpochRecord {
            epoch: epoch as u32,
            loss: loss_sum / seen as f64,
            accuracy: right / seen as f64,
            val_loss,
            val_accuracy,
            seconds: clock.elapsed().as_secs_f64(),
        };
        progress.message(&format!(
            "epoch {epoch}/{}: loss {:.4}, accuracy {:.3}{}",
            cfg.epochs,
            record.loss,
            record.accuracy,
            val_loss.map_or(String::new(), |v| format!(", val_loss {v:.4}"))
        ));
        history.push(record);
    }
    Ok(history)
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

/// Runs the train stage: trains the head (or, with `freeze_base = false`, the whole network)
/// and writes `model.safetensors` (the whole trained model), `history.csv` and
/// `features.npy` (every row's features under the trained base) into `out_dir`.
pub fn run(
    inputs: &TrainInputs,
    cfg: &TrainConfig,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<TrainReport, TrainError> {
    let dev = Cpu::seed_from_u64(cfg.seed);
    let mut model = checkpoint::load(inputs.model, &dev)?;
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
    let history = if cfg.freeze_base {
        train_head(&mut model, &features, &labels, &rows, cfg, progress)?
    } else {
        let (shape, images) = arrays::read_f32(inputs.images)?;
        let side = model.size.pixels();
        if shape != [labels.len(), side, side, 3] {
            return Err(ArrayError::Shape {
                path: inputs.images.to_path_buf(),
                shape,
                expected: format!("{} x {side} x {side} x 3", labels.len()),
            }
            .into());
        }
        cfg.validate()?;
        let history =
            crate::finetune::fine_tune(&mut model, &images, &labels, &rows, cfg, progress)?;
        // The base changed: what the trained model sees of each image changed with it.
        let trained = model.base_features(&images, labels.len(), progress)?;
        arrays::write_f32(
            &out_dir.join(FEATURES_FILE),
            &[labels.len(), HEAD_INPUTS],
            trained,
        )?;
        history
    };
    if cfg.freeze_base {
        // The base is unchanged, so are the features: pass them on for evaluation.
        std::fs::copy(inputs.features, out_dir.join(FEATURES_FILE)).map_err(|e| {
            TrainError::Write {
                path: out_dir.join(FEATURES_FILE).display().to_string(),
                message: e.to_string(),
            }
        })?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_takes_the_last_rows_before_shuffling() {
        let rows: Vec<usize> = (0..220).map(|i| (i * 7) % 220).collect();
        let (fit, val) = validation_split(&rows, 0.1);
        assert_eq!(fit.len(), 198);
        assert_eq!(val, rows[198..].to_vec());
        let (fit, val) = validation_split(&rows, 0.0);
        assert_eq!((fit.len(), val.len()), (220, 0));
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
        };
        assert_eq!(good.validate(), Ok(()));
        let nan = f64::NAN;
        // (the field at fault, how the config is spoiled)
        type Case = (&'static str, fn(&mut TrainConfig));
        let cases: [Case; 12] = [
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
        ];
        for (field, spoil) in cases {
            let mut cfg = good.clone();
            spoil(&mut cfg);
            let e = cfg.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        // The run refuses the same way, before reading anything.
        let bad = TrainConfig {
            learning_rate: nan,
            ..good
        };
        let e = train_head(
            &mut crate::model::Vgg16Model::from_config(&small_model()).expect("model"),
            &[],
            &[],
            &[],
            &bad,
            &crate::progress::NoProgress,
        )
        .expect_err("NaN learning rate");
        assert_eq!(
            e.to_string(),
            "`learning_rate` must be a finite number above 0, not NaN"
        );
    }

    fn small_model() -> crate::model::config::ModelConfig {
        use crate::model::config::{HeadConfig, ModelConfig, Weights};
        ModelConfig {
            image_size: 32,
            weights: Weights::Random,
            seed: 1,
            head: HeadConfig {
                units: 16,
                dropout: 0.0,
                pooling: crate::model::size::Pooling::Global,
            },
            conv: Default::default(),
        }
    }

    #[test]
    fn loss_matches_the_definition() {
        // BCE of sigmoid(x) against y, by hand: -ln(sigmoid(2)) and -ln(1 - sigmoid(-1)).
        let (loss, acc) = loss_and_accuracy(&[2.0, -1.0, 0.5], &[1.0, 0.0, 0.0]);
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = (-(s(2.0)).ln() - (1.0 - s(-1.0)).ln() - (1.0 - s(0.5)).ln()) / 3.0;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        assert!((acc - 2.0 / 3.0).abs() < 1e-12);
        // Stays finite where the naive form overflows.
        let (big, _) = loss_and_accuracy(&[100.0], &[0.0]);
        assert!((big - 100.0).abs() < 1e-9);
    }
}
