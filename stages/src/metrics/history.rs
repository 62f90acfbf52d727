//! The per-epoch training history and its `history.csv`, written by the trainer and read
//! by the plots.
//!
//! `history.csv` has the header `epoch,loss,accuracy,val_loss,val_accuracy,seconds,val_images`,
//! one row per epoch, epochs numbered from 1 like Keras' progress log. `val_loss`,
//! `val_accuracy` and `val_images` (the validation split's size) are empty when training ran
//! without a validation split; files from before `val_images` existed read as such. Floats are written in Rust's
//! shortest round-trip form, so reading the file back gives the same bits.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::MetricsError;

/// What one epoch of training measured, like one entry of Keras' `History.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Training accuracy over the epoch.
    pub accuracy: f64,
    /// Loss on the validation split after the epoch, if there is one.
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split after the epoch, if there is one.
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds the epoch took.
    pub seconds: f64,
    /// How many images the validation split has (the same every epoch), so that a figure can
    /// say what its validation curve rests on; empty without a validation split, and in
    /// histories written before the column existed.
    #[serde(default)]
    pub val_images: Option<u32>,
}

/// The epochs of one training run, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// Appends one epoch's record.
    pub fn push(&mut self, record: EpochRecord) {
        self.epochs.push(record);
    }

    /// Whether any epoch has validation numbers (so the plots draw a validation curve).
    pub fn has_validation(&self) -> bool {
        self.epochs
            .iter()
            .any(|e| e.val_loss.is_some() || e.val_accuracy.is_some())
    }

    /// Writes `history.csv` (see the module docs for the format).
    pub fn write_csv(&self, path: &Path) -> Result<(), MetricsError> {
        let csv_error = |source| MetricsError::Csv {
            path: path.to_owned(),
            source,
        };
        let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
        for record in &self.epochs {
            writer.serialize(record).map_err(csv_error)?;
        }
        // An empty history still gets its header, so readers see a well-formed file.
        if self.epochs.is_empty() {
            writer
                .write_record([
                    "epoch",
                    "loss",
                    "accuracy",
                    "val_loss",
                    "val_accuracy",
                    "seconds",
                    "val_images",
                ])
                .map_err(csv_error)?;
        }
        writer.flush().map_err(|source| MetricsError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
    }

    /// Reads `history.csv`, checking that epochs count up from 1 without gaps.
    pub fn read_csv(path: &Path) -> Result<Self, MetricsError> {
        let csv_error = |source| MetricsError::Csv {
            path: path.to_owned(),
            source,
        };
        let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
        let mut history = History::default();
        for row in reader.deserialize() {
            let record: EpochRecord = row.map_err(csv_error)?;
            let expected = history.epochs.len() + 1;
            if record.epoch as usize != expected {
                return Err(MetricsError::Content {
                    path: path.to_owned(),
                    message: format!("epoch {} where epoch {expected} was expected", record.epoch),
                });
            }
            history.push(record);
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u32, val: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: std::f64::consts::LN_2 / f64::from(epoch),
            accuracy: 0.1 * f64::from(epoch),
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v),
            seconds: 10.25,
            val_images: val.map(|_| 12),
        }
    }

    #[test]
    fn round_trips_exactly_with_the_documented_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let history = History {
            epochs: vec![record(1, Some(0.3)), record(2, None), record(3, Some(1e-9))],
        };
        history.write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("epoch,loss,accuracy,val_loss,val_accuracy,seconds,val_images")
        );
        assert_eq!(
            lines.next(),
            Some("1,0.6931471805599453,0.1,0.3,0.7,10.25,12")
        );
        assert_eq!(lines.next(), Some("2,0.34657359027997264,0.2,,,10.25,"));
        assert_eq!(History::read_csv(&path).unwrap(), history);
        assert!(history.has_validation());
    }

    #[test]
    fn empty_history_keeps_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        History::default().write_csv(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "epoch,loss,accuracy,val_loss,val_accuracy,seconds,val_images\n"
        );
        assert_eq!(History::read_csv(&path).unwrap(), History::default());
    }

    #[test]
    fn bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        std::fs::write(
            &path,
            "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,0.5,0.8,,,1\n3,0.4,0.9,,,1\n",
        )
        .unwrap();
        let error = History::read_csv(&path).unwrap_err().to_string();
        assert!(error.contains("history.csv"), "{error}");
        assert!(error.contains("epoch 3 where epoch 2"), "{error}");

        std::fs::write(&path, "epoch,loss\n1,abc\n").unwrap();
        let error = History::read_csv(&path).unwrap_err().to_string();
        assert!(error.contains("history.csv"), "{error}");

        let missing = dir.path().join("missing.csv");
        let error = History::read_csv(&missing).unwrap_err().to_string();
        assert!(error.contains("missing.csv"), "{error}");
    }
}
