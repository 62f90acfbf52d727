//! Everything the evaluate stage reports about one test set, computed in one call.

use super::{
    binary_cross_entropy, roc_curve, validate, ClassNames, ClassificationReport, ConfusionMatrix,
    MetricsError, Proportion, RocCurve, Z_95,
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
    /// The two classes (negative first), which name the metrics and the CSV rows; model1's
    /// NORMAL and COVID unless [`with_classes`](Self::with_classes) says otherwise.
    pub classes: ClassNames,
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
            classes: ClassNames::default_binary(),
        })
    }

    /// The same evaluation naming its classes `classes` (label 0 first, label 1 the
    /// positive class); there must be exactly two.
    pub fn with_classes(mut self, classes: ClassNames) -> Result<Self, MetricsError> {
        if classes.len() != 2 {
            return Err(MetricsError::ClassNames {
                message: format!(
                    "a two-class evaluation was given {} class names ({:?})",
                    classes.len(),
                    classes.names()
                ),
            });
        }
        self.classes = classes;
        Ok(self)
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
    /// rate without both classes) are NaN; counts are exact in `f64`. The class counts,
    /// precision and F1 are named by the classes' slugs (`n_covid`, `precision_covid` for
    /// model1's COVID).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let m = &self.confusion;
        let nan = f64::NAN;
        let sensitivity_ci = self.sensitivity.wilson(Z_95);
        let specificity_ci = self.specificity.wilson(Z_95);
        let [normal, covid] = &self.report.classes;
        let (negative, positive) = (self.classes.slug(0), self.classes.slug(1));
        let n_positive = format!("n_{positive}");
        let n_negative = format!("n_{negative}");
        let precision = format!("precision_{positive}");
        let f1 = format!("f1_{positive}");
        vec![
            ("n_test", m.total() as f64),
            (n_positive.as_str(), covid.support as f64),
            (n_negative.as_str(), normal.support as f64),
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
            (precision.as_str(), covid.precision),
            (f1.as_str(), covid.f1),
            ("macro_f1", self.report.macro_avg.f1),
            ("weighted_f1", self.report.weighted_avg.f1),
            ("true_negatives", m.true_negatives as f64),
            ("false_positives", m.false_positives as f64),
            ("false_negatives", m.false_negatives as f64),
            ("true_positives", m.true_positives as f64),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
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
        let get = |name: &str| scalars.iter().find(|(n, _)| n == name).unwrap().1;
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
        let get = |name: &str| scalars.iter().find(|(n, _)| n == name).unwrap().1;
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
        let mut names: Vec<_> = scalars.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), scalars.len());
    }

    #[test]
    fn model1_s_names_stay_and_other_classes_name_their_own_metrics() {
        let (labels, probabilities) = seed_like();
        let e = Evaluation::compute(&labels, &probabilities, 0.5).unwrap();
        let names: Vec<String> = e.scalars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "n_test",
                "n_covid",
                "n_normal",
                "threshold",
                "test_loss",
                "test_accuracy",
                "roc_auc",
                "sensitivity",
                "sensitivity_ci_low",
                "sensitivity_ci_high",
                "specificity",
                "specificity_ci_low",
                "specificity_ci_high",
                "precision_covid",
                "f1_covid",
                "macro_f1",
                "weighted_f1",
                "true_negatives",
                "false_positives",
                "false_negatives",
                "true_positives",
            ]
        );
        let classes = ClassNames::new(vec!["PNEUMONIA".into(), "COVID-19".into()]).unwrap();
        let e = e.with_classes(classes).unwrap();
        let scalars = e.scalars();
        let get = |name: &str| scalars.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(get("n_covid_19"), Some(33.0));
        assert_eq!(get("n_pneumonia"), Some(22.0));
        assert_eq!(get("precision_covid_19"), Some(1.0));
        assert_eq!(get("f1_covid_19"), Some(64.0 / 65.0));
        assert_eq!(get("n_normal"), None);
        assert_eq!(get("precision_covid"), None);
        let three = ClassNames::new(vec!["A".into(), "B".into(), "C".into()]).expect("three names");
        assert!(e.with_classes(three).is_err());
    }
}
