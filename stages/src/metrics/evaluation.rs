//! Everything the evaluate stage reports about one test set, computed in one call.

use super::{
    binary_cross_entropy, roc_curve, validate, ClassificationReport, ConfusionMatrix, MetricsError,
    Proportion, RocCurve, Z_95,
};

/// All metrics of a test set at one decision threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Probabilities strictly above it are predicted COVID.
    pub threshold: f32,
    /// Mean binary cross-entropy (Keras' clamping), see [`binary_cross_entropy`].
    pub test_loss: f64,
    pub confusion: ConfusionMatrix,
    pub report: ClassificationReport,
    pub roc: RocCurve,
    /// True positives out of all COVID images (recall of COVID).
    pub sensitivity: Proportion,
    /// True negatives out of all NORMAL images (recall of NORMAL).
    pub specificity: Proportion,
}

impl Evaluation {
    /// Computes every metric from true labels (0 = NORMAL, 1 = COVID) and predicted
    /// probabilities of COVID.
    pub fn compute(
        labels: &[u8],
        probabilities: &[f32],
        threshold: f32,
    ) -> Result<Self, MetricsError> {
        validate(labels, probabilities)?;
        let confusion = ConfusionMatrix::from_probabilities(labels, probabilities, threshold)?;
        Ok(Self {
            threshold,
            test_loss: binary_cross_entropy(labels, probabilities)?,
            report: ClassificationReport::from_confusion(&confusion),
            roc: roc_curve(labels, probabilities)?,
            sensitivity: Proportion {
                successes: confusion.true_positives,
                trials: confusion.true_positives + confusion.false_negatives,
            },
            specificity: Proportion {
                successes: confusion.true_negatives,
                trials: confusion.true_negatives + confusion.false_positives,
            },
            confusion,
        })
    }

    /// Fraction of test images classified correctly (validation guarantees one image).
    pub fn accuracy(&self) -> f64 {
        self.confusion.accuracy().unwrap_or(f64::NAN)
    }

    /// Area under the ROC curve; `None` when the test set holds only one class.
    pub fn roc_auc(&self) -> Option<f64> {
        self.roc.auc()
    }

    /// The named scalars of `metrics.csv`, in a fixed order. Undefined values (an AUC or a
    /// rate without both classes) are NaN; counts are exact in `f64`.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        let m = &self.confusion;
        let nan = f64::NAN;
        let sensitivity_ci = self.sensitivity.wilson(Z_95);
        let specificity_ci = self.specificity.wilson(Z_95);
        let [normal, covid] = &self.report.classes;
        vec![
            ("n_test", m.total() as f64),
            ("n_covid", covid.support as f64),
            ("n_normal", normal.support as f64),
            ("threshold", f64::from(self.threshold)),
            ("test_loss", self.test_loss),
            ("test_accuracy", self.accuracy()),
            ("roc_auc", self.roc_auc().unwrap_or(nan)),
            ("sensitivity", self.sensitivity.value().unwrap_or(nan)),
            ("sensitivity_ci_low", sensitivity_ci.map_or(nan, |c| c.low)),
            (
                "sensitivity_ci_high",
                sensitivity_ci.map_or(nan, |c| c.high),
            ),
            ("specificity", self.specificity.value().unwrap_or(nan)),
            ("specificity_ci_low", specificity_ci.map_or(nan, |c| c.low)),
            (
                "specificity_ci_high",
                specificity_ci.map_or(nan, |c| c.high),
            ),
            ("precision_covid", covid.precision),
            ("f1_covid", covid.f1),
            ("macro_f1", self.report.macro_avg.f1),
            ("weighted_f1", self.report.weighted_avg.f1),
            ("true_negatives", m.true_negatives as f64),
            ("false_positives", m.false_positives as f64),
            ("false_negatives", m.false_negatives as f64),
            ("true_positives", m.true_positives as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test set shaped like the seed's: 22 NORMAL, 33 COVID, one COVID missed.
    fn seed_like() -> (Vec<u8>, Vec<f32>) {
        let mut labels = vec![0u8; 22];
        labels.extend([1u8; 33]);
        let mut probabilities: Vec<f32> = (0..22).map(|i| 0.01 * i as f32).collect();
        probabilities.extend((0..32).map(|i| 0.99 - 0.01 * i as f32));
        probabilities.push(0.3); // the false negative, ranked among the NORMAL scores
        (labels, probabilities)
    }

    #[test]
    fn seed_like_evaluation() {
        let (labels, probabilities) = seed_like();
        let e = Evaluation::compute(&labels, &probabilities, 0.5).unwrap();
        assert_eq!(e.confusion.rows(), [[22, 0], [1, 32]]);
        assert_eq!(e.accuracy(), 54.0 / 55.0);
        assert_eq!(e.sensitivity.value(), Some(32.0 / 33.0));
        assert_eq!(e.specificity.value(), Some(1.0));
        // The missed COVID image (0.3) outranks the NORMAL images scored 0.00..0.21 (all 22),
        // so every positive-negative pair is ordered correctly: AUC 1.
        assert_eq!(e.roc_auc(), Some(1.0));
        let scalars = e.scalars();
        let get = |name: &str| scalars.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("n_test"), 55.0);
        assert_eq!(get("false_negatives"), 1.0);
        assert_eq!(get("test_accuracy"), 54.0 / 55.0);
        assert!((get("sensitivity_ci_low") - 0.846_812_746_178_811).abs() < 1e-12);
        assert!((get("specificity_ci_low") - 0.851_345_125_391_379_1).abs() < 1e-12);
        assert_eq!(get("specificity_ci_high"), 1.0);
        assert_eq!(get("threshold"), 0.5);
    }

    #[test]
    fn one_class_only_reports_nan_not_a_panic() {
        let e = Evaluation::compute(&[1, 1, 1], &[0.9, 0.2, 0.8], 0.5).unwrap();
        assert_eq!(e.roc_auc(), None);
        assert_eq!(e.specificity.value(), None);
        let scalars = e.scalars();
        let get = |name: &str| scalars.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(get("roc_auc").is_nan());
        assert!(get("specificity").is_nan());
        assert!(get("specificity_ci_high").is_nan());
        assert_eq!(get("sensitivity"), 2.0 / 3.0);
        assert_eq!(get("test_accuracy"), 2.0 / 3.0);
    }

    #[test]
    fn scalar_names_are_unique() {
        let (labels, probabilities) = seed_like();
        let scalars = Evaluation::compute(&labels, &probabilities, 0.5)
            .unwrap()
            .scalars();
        let mut names: Vec<_> = scalars.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), scalars.len());
    }
}
