//! Keras' `fit`, written once above the backend seam: any [`Trainer`] (the head on features,
//! or the whole network on images) trains with the same semantics.
//!
//! Semantics kept from Keras: `validation_fraction` takes the LAST fraction of the training
//! rows, before any shuffling; the remaining rows are reshuffled every epoch (from the seed);
//! dropout is active in training only; the reported training loss and accuracy are the means
//! over the epoch's batches as they were trained, weighted by batch size.
//!
//! Two classes: the logit's binary cross-entropy, accuracy at logit 0. More: the mean
//! categorical cross-entropy of the logits' softmax (log-softmax, as Keras computes
//! `softmax` + `sparse_categorical_crossentropy` inside `fit`), accuracy by argmax. With
//! class weights (Keras' `class_weight`), each row weighs `w_{y}`: the loss is
//! `sum(w_i l_i) / N` per batch, and the training accuracy is `sum(w_i right_i) / sum(w_i)`
//! over the epoch, as Keras 2's compiled metrics receive the same sample weights; the
//! validation rows are not weighted (Keras weighs only the training data).

use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::data::split::shuffle;
use crate::metrics::categorical::log_softmax_cross_entropy;
use crate::metrics::multiclass::predicted_class;
use crate::metrics::{EpochRecord, History};
use crate::model::{ModelError, Trainer};
use crate::progress::Progress;

/// How long and on what to train.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// Last share of the training rows held out for validation.
    pub validation_fraction: f64,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Keras' `class_weight`, one per class (the trainer weighs its loss with the same
    /// ones); weighs the reported training accuracy. `None`: every row weighs 1.
    pub class_weights: Option<Vec<f64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("the loss became {value} at epoch {epoch}, batch {batch}: lower the learning rate or check the inputs")]
    NonFinite {
        epoch: usize,
        batch: usize,
        value: f32,
    },
    #[error("no training rows left after the validation split")]
    NoTrainingRows,
    #[error("the validation loss: {0}")]
    Loss(String),
    #[error(transparent)]
    Model(#[from] ModelError),
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

/// Mean categorical cross-entropy of `n x classes` logits against class indices (in `f64`,
/// stably: log-softmax) and the accuracy of their argmax.
pub fn categorical_loss_and_accuracy(
    logits: &[f32],
    targets: &[f32],
    classes: usize,
) -> Result<(f64, f64), FitError> {
    let labels: Vec<u32> = targets.iter().map(|&y| y as u32).collect();
    let loss = log_softmax_cross_entropy(&labels, logits, classes, None)
        .map_err(|e| FitError::Loss(e.to_string()))?;
    let right = (0..labels.len())
        .filter(|&i| predicted_class(&logits[i * classes..(i + 1) * classes]) == labels[i] as usize)
        .count();
    Ok((loss.loss, right as f64 / labels.len().max(1) as f64))
}

/// Whether each row's logits (`outputs` per row: 1 for two classes) pick its target.
fn right_per_row(logits: &[f32], targets: &[f32], outputs: usize) -> Vec<bool> {
    if outputs == 1 {
        logits
            .iter()
            .zip(targets)
            .map(|(&x, &y)| (x > 0.0) == (y > 0.5))
            .collect()
    } else {
        logits
            .chunks_exact(outputs)
            .zip(targets)
            .map(|(row, &y)| predicted_class(row) == y as usize)
            .collect()
    }
}

/// The rows a network trains on: `width` values per row (a feature vector or an image) and
/// each row's label (0 or 1 for two classes, else the class index).
pub struct Rows<'a> {
    pub values: &'a [f32],
    pub width: usize,
    pub labels: &'a [u8],
}

impl Rows<'_> {
    /// The values and labels of `rows`, in order.
    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut x = Vec::with_capacity(rows.len() * self.width);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(&self.values[r * self.width..(r + 1) * self.width]);
            y.push(f32::from(self.labels[r]));
        }
        (x, y)
    }
}

/// Trains on `train_rows` of `data`: the last `validation_fraction` held out, the rest
/// reshuffled every epoch from the seed, one [`Trainer::step`] per batch, a non-finite loss
/// stopping with its epoch and batch. `phase` names the progress bar (one unit per training
/// row). Returns the per-epoch history.
pub fn fit(
    trainer: &mut dyn Trainer,
    data: &Rows,
    train_rows: &[usize],
    settings: &FitSettings,
    phase: &str,
    progress: &dyn Progress,
) -> Result<History, FitError> {
    if data.width != trainer.row_len() {
        return Err(ModelError::InputLength {
            what: "training rows",
            got: data.width,
            expected: trainer.row_len(),
            detail: "values per row".into(),
        }
        .into());
    }
    let (fit_rows, val_rows) = validation_split(train_rows, settings.validation_fraction);
    if fit_rows.is_empty() {
        return Err(FitError::NoTrainingRows);
    }
    let outputs = trainer.outputs();
    let weight_of = |y: f32| {
        settings
            .class_weights
            .as_ref()
            .map_or(1.0, |w| w[y as usize])
    };
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut history = History::default();
    progress.start(phase, (settings.epochs * fit_rows.len()) as u64);
    for epoch in 1..=settings.epochs {
        let clock = Instant::now();
        let mut order = fit_rows.clone();
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0.0f64, 0usize);
        let (mut weighted_right, mut weight_sum) = (0.0f64, 0.0f64);
        for (b, rows) in order.chunks(settings.batch_size).enumerate() {
            let n = rows.len();
            let (x, y) = data.gather(rows);
            let step = trainer.step(x, y.clone())?;
            if !step.loss.is_finite() {
                return Err(FitError::NonFinite {
                    epoch,
                    batch: b + 1,
                    value: step.loss,
                });
            }
            if outputs == 1 && settings.class_weights.is_none() {
                // The seed's arithmetic, kept to the bit.
                let (_, acc) = loss_and_accuracy(&step.logits, &y);
                right += acc * n as f64;
            } else {
                for (ok, &target) in right_per_row(&step.logits, &y, outputs).iter().zip(&y) {
                    let w = weight_of(target);
                    weighted_right += if *ok { w } else { 0.0 };
                    weight_sum += w;
                }
            }
            loss_sum += f64::from(step.loss) * n as f64;
            seen += n;
            progress.advance(n as u64);
        }
        let (val_loss, val_accuracy) = if val_rows.is_empty() {
            (None, None)
        } else {
            let mut logits = Vec::with_capacity(val_rows.len());
            let mut targets = Vec::with_capacity(val_rows.len());
            for rows in val_rows.chunks(trainer.eval_batch()) {
                let (x, y) = data.gather(rows);
                logits.extend(trainer.logits(x, rows.len())?);
                targets.extend(y);
            }
            let (l, a) = if outputs == 1 {
                loss_and_accuracy(&logits, &targets)
            } else {
                categorical_loss_and_accuracy(&logits, &targets, outputs)?
            };
            (Some(l), Some(a))
        };
        let accuracy = if outputs == 1 && settings.class_weights.is_none() {
            right / seen as f64
        } else {
            weighted_right / weight_sum
        };
        let record = EpochRecord {
            epoch: epoch as u32,
            loss: loss_sum / seen as f64,
            accuracy,
            val_loss,
            val_accuracy,
            seconds: clock.elapsed().as_secs_f64(),
            val_images: (!val_rows.is_empty()).then_some(val_rows.len() as u32),
        };
        progress.message(&format!(
            "epoch {epoch}/{}: loss {:.4}, accuracy {:.3}{}",
            settings.epochs,
            record.loss,
            record.accuracy,
            val_loss.map_or(String::new(), |v| format!(", val_loss {v:.4}"))
        ));
        history.push(record);
    }
    Ok(history)
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
    fn the_categorical_loss_and_accuracy_match_the_definition() {
        let logits = [1.0f32, 2.0, 3.0, 3.0, 0.0, 0.0, 0.0, 5.0, 5.0];
        let targets = [2.0f32, 1.0, 2.0];
        let (loss, acc) = categorical_loss_and_accuracy(&logits, &targets, 3).unwrap();
        let lse = |z: &[f64]| z.iter().map(|v| v.exp()).sum::<f64>().ln();
        let want = ((lse(&[1.0, 2.0, 3.0]) - 3.0)
            + (lse(&[3.0, 0.0, 0.0]) - 0.0)
            + (lse(&[0.0, 5.0, 5.0]) - 5.0))
            / 3.0;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        // Row 3 ties classes 1 and 2: the lower index wins, so it is wrong.
        assert!((acc - 1.0 / 3.0).abs() < 1e-12, "{acc}");
        let err = categorical_loss_and_accuracy(&logits, &[3.0, 0.0, 0.0], 3).unwrap_err();
        assert!(err.to_string().contains("label 3"), "{err}");
    }

    /// `n` rows of 512 features in 3 classes, each class raising its own third of them.
    fn three_classes(n: usize) -> (Vec<f32>, Vec<u8>) {
        let labels: Vec<u8> = (0..n).map(|i| ((i * 7) % 3) as u8).collect();
        let values = (0..n * 512)
            .map(|j| {
                let (row, f) = (j / 512, j % 512);
                let noise = ((j * 37) % 101) as f32 / 101.0;
                if f / 171 == usize::from(labels[row]) {
                    noise + 0.6
                } else {
                    noise
                }
            })
            .collect();
        (values, labels)
    }

    #[test]
    fn a_three_class_head_fits_separable_features_bit_for_bit_on_any_thread_count() {
        use crate::model::{AdamSettings, Backend, CpuBackend, HeadSpec, HeadWeights};
        use crate::progress::NoProgress;
        let head = HeadSpec::new(16, 0.2).unwrap().with_classes(3).unwrap();
        let (values, labels) = three_classes(60);
        let data = Rows {
            values: &values,
            width: 512,
            labels: &labels,
        };
        let rows: Vec<usize> = (0..60).collect();
        let fit_with = |threads: usize, class_weights: Option<Vec<f64>>| {
            let settings = FitSettings {
                epochs: 12,
                batch_size: 8,
                validation_fraction: 0.2,
                seed: 3,
                class_weights: class_weights.clone(),
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut trainer = CpuBackend
                    .head_trainer(
                        head,
                        &HeadWeights::glorot(&head, 1),
                        AdamSettings::default(),
                        class_weights.as_deref(),
                        5,
                    )
                    .unwrap();
                assert_eq!(trainer.outputs(), 3);
                let history =
                    fit(trainer.as_mut(), &data, &rows, &settings, "t", &NoProgress).unwrap();
                history
                    .epochs
                    .iter()
                    .map(|e| {
                        (
                            e.loss.to_bits(),
                            e.accuracy.to_bits(),
                            e.val_loss.map(f64::to_bits),
                            e.val_accuracy.map(f64::to_bits),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        let one = fit_with(1, None);
        assert_eq!(one, fit_with(2, None), "thread count changed bits");
        assert_eq!(one, fit_with(2, None), "a rerun changed bits");
        let (first, last) = (one[0], one[one.len() - 1]);
        let f = f64::from_bits;
        assert!(
            f(last.0) < 0.5 * f(first.0),
            "loss {} -> {}",
            f(first.0),
            f(last.0)
        );
        assert!(f(last.1) > 0.9, "training accuracy {}", f(last.1));
        assert!(
            f(last.3.unwrap()) > 0.9,
            "validation accuracy {}",
            f(last.3.unwrap())
        );
        // Class weights change the loss reported (and the steps), deterministically too.
        let weighted = fit_with(1, Some(vec![2.0, 0.5, 1.0]));
        assert_ne!(weighted[0].0, one[0].0);
        assert_eq!(weighted, fit_with(2, Some(vec![2.0, 0.5, 1.0])));
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
