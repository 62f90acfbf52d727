//! Per-class precision, recall, F1 and support, as scikit-learn's `classification_report`.

use super::{ClassNames, ConfusionMatrix};

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of images whose TRUE label is this class (for an average: all images).
    pub support: u64,
    /// Precision had no predicted samples to divide by and was set to 0.
    pub precision_ill_defined: bool,
    /// Recall had no true samples to divide by and was set to 0.
    pub recall_ill_defined: bool,
    /// F1 had neither true nor predicted samples and was set to 0.
    pub f1_ill_defined: bool,
}

impl ClassMetrics {
    /// Whether any value of this row was a 0/0 replaced by 0.
    pub fn ill_defined(&self) -> bool {
        self.precision_ill_defined || self.recall_ill_defined || self.f1_ill_defined
    }

    /// Names of the ill-defined values joined by `;` (empty when all are well defined).
    pub fn ill_defined_names(&self) -> String {
        [
            (self.precision_ill_defined, "precision"),
            (self.recall_ill_defined, "recall"),
            (self.f1_ill_defined, "f1"),
        ]
        .iter()
        .filter(|(flag, _)| *flag)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(";")
    }
}

/// What `sklearn.metrics.classification_report(y_true, y_pred, labels=[0, 1],
/// target_names=["NORMAL", "COVID"], output_dict=True)` returns.
///
/// Both classes are always reported, even when one is absent from the test set. A 0/0 is
/// replaced by 0 and flagged, like sklearn's default `zero_division="warn"`; the flags travel
/// with the numbers instead of a warning printed and lost.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// Indexed by label: `[NORMAL, COVID]`.
    pub classes: [ClassMetrics; 2],
    /// Unweighted mean over the two classes.
    pub macro_avg: ClassMetrics,
    /// Mean over the two classes weighted by support.
    pub weighted_avg: ClassMetrics,
    /// Fraction classified correctly (`None` on an empty matrix).
    pub accuracy: Option<f64>,
}

/// `numerator / denominator`, or `(0, true)` when the denominator is zero.
fn ratio(numerator: u64, denominator: u64) -> (f64, bool) {
    if denominator == 0 {
        (0.0, true)
    } else {
        (numerator as f64 / denominator as f64, false)
    }
}

/// One class's row from its own true/false positives and false negatives.
fn class_metrics(tp: u64, fp: u64, fn_: u64) -> ClassMetrics {
    let (precision, precision_ill_defined) = ratio(tp, tp + fp);
    let (recall, recall_ill_defined) = ratio(tp, tp + fn_);
    // sklearn (since 1.3) computes F1 as 2tp / (2tp + fp + fn), which equals the harmonic
    // mean of precision and recall wherever that is defined, and is 0/0 only when the class
    // is neither present nor predicted.
    let (f1, f1_ill_defined) = ratio(2 * tp, 2 * tp + fp + fn_);
    ClassMetrics {
        precision,
        recall,
        f1,
        support: tp + fn_,
        precision_ill_defined,
        recall_ill_defined,
        f1_ill_defined,
    }
}

impl ClassificationReport {
    /// The report for a confusion matrix (COVID positive).
    pub fn from_confusion(m: &ConfusionMatrix) -> Self {
        // For NORMAL, the roles flip: a true negative is its true positive, etc.
        let normal = class_metrics(m.true_negatives, m.false_negatives, m.false_positives);
        let covid = class_metrics(m.true_positives, m.false_positives, m.false_negatives);
        let total = m.total();
        let either = |f: fn(&ClassMetrics) -> bool| f(&normal) || f(&covid);
        let macro_avg = ClassMetrics {
            precision: (normal.precision + covid.precision) / 2.0,
            recall: (normal.recall + covid.recall) / 2.0,
            f1: (normal.f1 + covid.f1) / 2.0,
            support: total,
            precision_ill_defined: either(|c| c.precision_ill_defined),
            recall_ill_defined: either(|c| c.recall_ill_defined),
            f1_ill_defined: either(|c| c.f1_ill_defined),
        };
        let weighted = |f: fn(&ClassMetrics) -> f64| {
            if total == 0 {
                0.0
            } else {
                (f(&normal) * normal.support as f64 + f(&covid) * covid.support as f64)
                    / total as f64
            }
        };
        let weighted_avg = ClassMetrics {
            precision: weighted(|c| c.precision),
            recall: weighted(|c| c.recall),
            f1: weighted(|c| c.f1),
            ..macro_avg.clone()
        };
        Self {
            classes: [normal, covid],
            macro_avg,
            weighted_avg,
            accuracy: m.accuracy(),
        }
    }

    /// Whether any value was a 0/0 replaced by 0 (sklearn would have warned).
    pub fn ill_defined(&self) -> bool {
        self.classes.iter().any(ClassMetrics::ill_defined)
    }

    /// The rows with their names, in sklearn's order: the classes (named by `classes`,
    /// label 0 first), then the averages.
    pub fn named_rows<'a>(&'a self, classes: &'a ClassNames) -> [(&'a str, &'a ClassMetrics); 4] {
        [
            (classes.name(0), &self.classes[0]),
            (classes.name(1), &self.classes[1]),
            ("macro avg", &self.macro_avg),
            ("weighted avg", &self.weighted_avg),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn seed_result_by_hand() {
        // tn 22, fp 0, fn 1, tp 32.
        let r =
            ClassificationReport::from_confusion(&ConfusionMatrix::from_rows([[22, 0], [1, 32]]));
        let [normal, covid] = &r.classes;
        // NORMAL: 22 right of 23 predicted NORMAL, all 22 NORMAL found.
        assert!(close(normal.precision, 22.0 / 23.0));
        assert!(close(normal.recall, 1.0));
        assert!(close(normal.f1, 44.0 / 45.0));
        assert_eq!(normal.support, 22);
        // COVID: every COVID prediction right, 32 of 33 found.
        assert!(close(covid.precision, 1.0));
        assert!(close(covid.recall, 32.0 / 33.0));
        assert!(close(covid.f1, 64.0 / 65.0));
        assert_eq!(covid.support, 33);
        assert!(close(r.macro_avg.f1, (44.0 / 45.0 + 64.0 / 65.0) / 2.0));
        assert!(close(
            r.weighted_avg.precision,
            (22.0 * 22.0 / 23.0 + 33.0) / 55.0
        ));
        assert!(close(r.weighted_avg.recall, 54.0 / 55.0));
        assert_eq!(r.weighted_avg.support, 55);
        assert_eq!(r.accuracy, Some(54.0 / 55.0));
        assert!(!r.ill_defined());
    }

    #[test]
    fn small_case_as_sklearn_reports_it() {
        // y_true = [0, 1, 1, 1, 0], y_pred = [0, 0, 1, 1, 1] -> tn 1, fp 1, fn 1, tp 2.
        // sklearn 1.9.1's classification_report(output_dict=True) gives:
        // '0': precision 0.5, recall 0.5, f1 0.5, support 2
        // '1': precision 0.6666666666666666 for all three, support 3
        // macro avg 0.5833333333333333, weighted avg 0.6 (= (2·0.5 + 3·2/3) / 5)
        let r = ClassificationReport::from_confusion(&ConfusionMatrix::from_rows([[1, 1], [1, 2]]));
        assert!(close(r.classes[0].f1, 0.5));
        assert!(close(r.classes[1].precision, 2.0 / 3.0));
        assert!(close(r.macro_avg.recall, 0.583_333_333_333_333_3));
        assert!(close(r.weighted_avg.precision, 0.6));
        assert!(close(r.weighted_avg.f1, 0.6));
    }

    #[test]
    fn zero_division_is_zero_and_flagged() {
        // Everything predicted COVID on a set with 3 NORMAL, 2 COVID: NORMAL never predicted.
        let r = ClassificationReport::from_confusion(&ConfusionMatrix::from_rows([[0, 3], [0, 2]]));
        let normal = &r.classes[0];
        assert_eq!(normal.precision, 0.0);
        assert!(normal.precision_ill_defined);
        // Recall is 0/3, a real zero; F1 is 0/(0+0+3), also well defined.
        assert_eq!(normal.recall, 0.0);
        assert!(!normal.recall_ill_defined && !normal.f1_ill_defined);
        assert_eq!(normal.ill_defined_names(), "precision");
        assert!(close(r.classes[1].precision, 0.4));
        assert!(close(r.classes[1].f1, 4.0 / 7.0));
        assert!(r.ill_defined());
        assert!(r.macro_avg.precision_ill_defined);
        assert!(close(r.macro_avg.precision, 0.2));
    }

    #[test]
    fn absent_class_is_reported_with_zeros() {
        // Only COVID images, all found: NORMAL has no support and no predictions.
        let r = ClassificationReport::from_confusion(&ConfusionMatrix::from_rows([[0, 0], [0, 4]]));
        let normal = &r.classes[0];
        assert_eq!(
            (normal.precision, normal.recall, normal.f1),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(normal.ill_defined_names(), "precision;recall;f1");
        assert_eq!(normal.support, 0);
        // Macro averages over both labels, as sklearn does when labels=[0, 1] is given.
        assert!(close(r.macro_avg.f1, 0.5));
        assert!(close(r.weighted_avg.f1, 1.0));
    }

    #[test]
    fn empty_matrix_does_not_divide_by_zero() {
        let r = ClassificationReport::from_confusion(&ConfusionMatrix::default());
        assert_eq!(r.accuracy, None);
        assert_eq!(r.weighted_avg.f1, 0.0);
        assert!(r.ill_defined());
    }
}
