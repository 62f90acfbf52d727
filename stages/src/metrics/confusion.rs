//! The 2 x 2 confusion matrix, as counts and as fractions of all test images.

use super::{predicted_label, validate, MetricsError, COVID, NORMAL};

/// Counts of (true, predicted) pairs; COVID is the positive class.
///
/// Laid out like sklearn's `confusion_matrix(y_true, y_pred, labels=[0, 1])`:
/// row = true label, column = predicted label, i.e. `[[tn, fp], [fn, tp]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfusionMatrix {
    /// NORMAL predicted NORMAL.
    pub true_negatives: u64,
    /// NORMAL predicted COVID.
    pub false_positives: u64,
    /// COVID predicted NORMAL.
    pub false_negatives: u64,
    /// COVID predicted COVID.
    pub true_positives: u64,
}

impl ConfusionMatrix {
    /// Tallies predictions made at `threshold` (see [`predicted_label`]).
    pub fn from_probabilities(
        labels: &[u8],
        probabilities: &[f32],
        threshold: f32,
    ) -> Result<Self, MetricsError> {
        validate(labels, probabilities)?;
        let mut matrix = Self::default();
        for (&truth, &p) in labels.iter().zip(probabilities) {
            matrix.add(truth, predicted_label(p, threshold));
        }
        Ok(matrix)
    }

    /// Builds the matrix from its rows `[[tn, fp], [fn, tp]]`.
    pub fn from_rows(rows: [[u64; 2]; 2]) -> Self {
        Self {
            true_negatives: rows[0][0],
            false_positives: rows[0][1],
            false_negatives: rows[1][0],
            true_positives: rows[1][1],
        }
    }

    fn add(&mut self, truth: u8, predicted: u8) {
        match (truth, predicted) {
            (NORMAL, NORMAL) => self.true_negatives += 1,
            (NORMAL, _) => self.false_positives += 1,
            (_, COVID) => self.true_positives += 1,
            _ => self.false_negatives += 1,
        }
    }

    /// The counts as rows `[[tn, fp], [fn, tp]]` (row = true, column = predicted).
    pub fn rows(&self) -> [[u64; 2]; 2] {
        [
            [self.true_negatives, self.false_positives],
            [self.false_negatives, self.true_positives],
        ]
    }

    /// The count of images whose true label is `truth` and predicted label `predicted`.
    ///
    /// Labels other than 0 and 1 are treated as 1, like every label check before this one.
    pub fn count(&self, truth: u8, predicted: u8) -> u64 {
        let rows = self.rows();
        rows[usize::from(truth.min(COVID))][usize::from(predicted.min(COVID))]
    }

    /// Number of images counted.
    pub fn total(&self) -> u64 {
        self.true_negatives + self.false_positives + self.false_negatives + self.true_positives
    }

    /// Each count divided by the total, the seed notebook's normalisation (its heatmap showed
    /// 58 % true positive, 40 % true negative, 1.8 % false negative). All zero when empty.
    pub fn fractions(&self) -> [[f64; 2]; 2] {
        let total = self.total();
        self.rows().map(|row| {
            row.map(|count| {
                if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                }
            })
        })
    }

    /// Fraction of images classified correctly; `None` when the matrix is empty.
    pub fn accuracy(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| (self.true_negatives + self.true_positives) as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's reported result: 55 test images, one false negative.
    fn seed() -> ConfusionMatrix {
        ConfusionMatrix::from_rows([[22, 0], [1, 32]])
    }

    #[test]
    fn tallies_at_the_threshold() {
        let labels = [0, 0, 1, 1, 1, 0];
        let probabilities = [0.1, 0.7, 0.9, 0.4, 0.5, 0.5];
        let m = ConfusionMatrix::from_probabilities(&labels, &probabilities, 0.5).unwrap();
        // 0.5 is not above 0.5, so the last two are predicted NORMAL.
        assert_eq!(m.rows(), [[2, 1], [2, 1]]);
        assert_eq!(m.count(1, 0), 2);
        assert_eq!(m.total(), 6);
        assert_eq!(m.accuracy(), Some(0.5));
    }

    #[test]
    fn seed_fractions_match_the_paper() {
        let m = seed();
        let f = m.fractions();
        assert_eq!(f[0][0], 22.0 / 55.0); // 40 %
        assert_eq!(f[1][1], 32.0 / 55.0); // 58.2 %
        assert_eq!(f[1][0], 1.0 / 55.0); // 1.8 %
        assert_eq!(f[0][1], 0.0);
        assert!((f.iter().flatten().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(m.accuracy(), Some(54.0 / 55.0));
    }

    #[test]
    fn empty_matrix_has_no_accuracy_and_zero_fractions() {
        let m = ConfusionMatrix::default();
        assert_eq!(m.accuracy(), None);
        assert_eq!(m.fractions(), [[0.0; 2]; 2]);
    }
}
