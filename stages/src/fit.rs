//! Keras' `fit`, written once above the backend seam: any [`Trainer`] (the head on features,
//! or the whole network on images) trains with the same semantics.
//!
//! Semantics kept from Keras: `validation_fraction` takes the LAST fraction of the training
//! rows, before any shuffling; the remaining rows are reshuffled every epoch (from the seed);
//! dropout is active in training only; the reported training loss and accuracy are the means
//! over the epoch's batches as they were trained, weighted by batch size.

use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::data::split::shuffle;
use crate::metrics::{EpochRecord, History};
use crate::model::{ModelError, Trainer};
use crate::progress::Progress;

/// How long and on what to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// Last share of the training rows held out for validation.
    pub validation_fraction: f64,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
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

/// The rows a network trains on: `width` values per row (a feature vector or an image) and
/// each row's 0/1 label.
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
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut history = History::default();
    progress.start(phase, (settings.epochs * fit_rows.len()) as u64);
    for epoch in 1..=settings.epochs {
        let clock = Instant::now();
        let mut order = fit_rows.clone();
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0.0f64, 0usize);
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
            let (_, acc) = loss_and_accuracy(&step.logits, &y);
            loss_sum += f64::from(step.loss) * n as f64;
            right += acc * n as f64;
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
