//! The ROC curve and the area under it, as scikit-learn's `roc_curve` and `roc_auc_score`.

use super::{validate, MetricsError};

/// One point of the ROC curve: predicting COVID for every score `>= threshold` gives these
/// false- and true-positive rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    /// Scores are `f32`, so thresholds are too (and print back exactly). The first point's
    /// threshold is `+inf`: nothing is predicted positive there.
    pub threshold: f32,
    pub fpr: f64,
    pub tpr: f64,
}

/// The ROC curve, points ordered by decreasing threshold (so by increasing fpr and tpr).
///
/// Empty when the labels hold only one class: one of the two rates then divides by zero and
/// the curve, like its area, is undefined (sklearn returns NaN rates with a warning).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RocCurve {
    pub points: Vec<RocPoint>,
}

/// sklearn's `roc_curve(labels, probabilities, drop_intermediate=False)`.
///
/// One point per distinct score, plus the `(0, 0)` point at threshold `+inf` that sklearn
/// (since 1.3) prepends. Tied scores form a single point, so a tie between a positive and a
/// negative becomes a diagonal segment and earns half credit in [`RocCurve::auc`]. sklearn's
/// default `drop_intermediate=True` would also remove collinear points; that changes neither
/// the drawn curve nor its area, and keeping them keeps one row per threshold.
pub fn roc_curve(labels: &[u8], probabilities: &[f32]) -> Result<RocCurve, MetricsError> {
    validate(labels, probabilities)?;
    let positives = labels.iter().filter(|&&l| l == 1).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Ok(RocCurve::default());
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    // Validation excluded NaN, so total_cmp is the ordinary order; descending scores.
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));

    let mut points = vec![RocPoint {
        threshold: f32::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        // Emit a point only after the last sample of a run of equal scores.
        let last_of_tie = order
            .get(rank + 1)
            .is_none_or(|&next| probabilities[next] != probabilities[i]);
        if last_of_tie {
            points.push(RocPoint {
                threshold: probabilities[i],
                fpr: fp as f64 / negatives as f64,
                tpr: tp as f64 / positives as f64,
            });
        }
    }
    Ok(RocCurve { points })
}

impl RocCurve {
    /// Area under the curve by the trapezoid rule, as sklearn's `roc_auc_score`; `None` when
    /// the curve is undefined (only one class among the labels).
    pub fn auc(&self) -> Option<f64> {
        if self.points.len() < 2 {
            return None;
        }
        let area = self
            .points
            .windows(2)
            .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
            .sum();
        Some(area)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(curve: &RocCurve) -> (Vec<f64>, Vec<f64>, Vec<f32>) {
        (
            curve.points.iter().map(|p| p.fpr).collect(),
            curve.points.iter().map(|p| p.tpr).collect(),
            curve.points.iter().map(|p| p.threshold).collect(),
        )
    }

    #[test]
    fn sklearn_docstring_example() {
        // sklearn.metrics.roc_curve docstring: y = [1, 1, 2, 2] with pos_label=2,
        // scores = [0.1, 0.4, 0.35, 0.8] -> fpr [0, 0, .5, .5, 1], tpr [0, .5, .5, 1, 1],
        // thresholds [inf, 0.8, 0.4, 0.35, 0.1]; roc_auc_score gives 0.75.
        let curve = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        let (fpr, tpr, thresholds) = rates(&curve);
        assert_eq!(fpr, [0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(tpr, [0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(thresholds, [f32::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        assert_eq!(curve.auc(), Some(0.75));
    }

    #[test]
    fn ties_form_one_point_and_earn_half_credit() {
        // One positive and one negative tied at 0.5: the pair counts 1/2 (Mann-Whitney).
        // Pairs (pos, neg): (0.9, 0.5) 1, (0.9, 0.2) 1, (0.5, 0.5) 1/2, (0.5, 0.2) 1
        // -> 3.5 / 4 = 0.875.
        let curve = roc_curve(&[1, 1, 0, 0], &[0.9, 0.5, 0.5, 0.2]).unwrap();
        let (fpr, tpr, thresholds) = rates(&curve);
        assert_eq!(thresholds, [f32::INFINITY, 0.9, 0.5, 0.2]);
        assert_eq!(fpr, [0.0, 0.0, 0.5, 1.0]);
        assert_eq!(tpr, [0.0, 0.5, 1.0, 1.0]);
        assert_eq!(curve.auc(), Some(0.875));
    }

    #[test]
    fn all_scores_equal_is_chance() {
        let curve = roc_curve(&[1, 0, 1, 0, 0], &[0.3; 5]).unwrap();
        assert_eq!(curve.points.len(), 2);
        assert_eq!(curve.auc(), Some(0.5));
    }

    #[test]
    fn perfect_and_inverted_separation() {
        assert_eq!(
            roc_curve(&[0, 0, 1, 1], &[0.1, 0.2, 0.8, 0.9])
                .unwrap()
                .auc(),
            Some(1.0)
        );
        assert_eq!(
            roc_curve(&[1, 1, 0, 0], &[0.1, 0.2, 0.8, 0.9])
                .unwrap()
                .auc(),
            Some(0.0)
        );
    }

    #[test]
    fn one_class_only_is_undefined() {
        let curve = roc_curve(&[1, 1, 1], &[0.2, 0.6, 0.9]).unwrap();
        assert!(curve.points.is_empty());
        assert_eq!(curve.auc(), None);
        assert_eq!(roc_curve(&[0], &[0.4]).unwrap().auc(), None);
    }
}
