//! Everything the evaluate stage reports about one set when the model has three or more
//! classes: [`MulticlassEvaluation`]'s figures, the test loss, one-vs-rest ROC curves and
//! every pairwise AUC, named by the experiment's classes.

use super::categorical::categorical_cross_entropy;
use super::multiclass::{pairwise_auc, MulticlassError, MulticlassEvaluation};
use super::{roc_curve, ClassNames, MetricsError, Proportion, RocCurve, Z_95};

/// All metrics of a C-class evaluation set (predicted class: the argmax of each row).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassResults {
    pub classes: ClassNames,
    pub evaluation: MulticlassEvaluation,
    /// Keras' `sparse_categorical_crossentropy` of the probabilities, averaged.
    pub test_loss: f64,
    /// One-vs-rest ROC curve of each class (empty where the class is absent or alone).
    pub roc: Vec<RocCurve>,
    /// `(a, b, AUC)` for every pair `a < b`; `None` when either class is absent.
    pub pairwise: Vec<(usize, usize, Option<f64>)>,
}

fn multiclass(e: MulticlassError) -> MetricsError {
    MetricsError::Multiclass(Box::new(e))
}

impl ClassResults {
    /// Computes everything from `labels` in `0..C` and row-major `probabilities` (N x C),
    /// C being the number of `classes`.
    pub fn compute(
        labels: &[u32],
        probabilities: &[f32],
        classes: ClassNames,
    ) -> Result<Self, MetricsError> {
        let c = classes.len();
        let evaluation =
            MulticlassEvaluation::compute(labels, probabilities, c).map_err(multiclass)?;
        let test_loss = categorical_cross_entropy(labels, probabilities, c, None)?;
        let roc = (0..c)
            .map(|k| {
                let positive: Vec<u8> = labels.iter().map(|&l| u8::from(l as usize == k)).collect();
                let scores: Vec<f32> = probabilities.chunks_exact(c).map(|row| row[k]).collect();
                roc_curve(&positive, &scores)
            })
            .collect::<Result<_, _>>()?;
        let mut pairwise = Vec::new();
        for a in 0..c {
            for b in a + 1..c {
                let auc = pairwise_auc(labels, probabilities, c, a, b).map_err(multiclass)?;
                pairwise.push((a, b, auc));
            }
        }
        Ok(Self {
            classes,
            evaluation,
            test_loss,
            roc,
            pairwise,
        })
    }

    /// Number of images evaluated.
    pub fn total(&self) -> u64 {
        self.evaluation.accuracy.trials
    }

    /// Images of each true class, by label.
    pub fn counts(&self) -> Vec<u64> {
        self.evaluation.classes.iter().map(|c| c.support).collect()
    }

    /// The named scalars of `metrics.csv`, in a fixed order; `None` where a value is
    /// undefined (the sensitivity of a class absent from the set, say). Per-class names end
    /// in the class's slug (see [`super::slug`]):
    ///
    /// `n_test`, `n_<class>` for each class, `test_loss`, `test_accuracy` with
    /// `test_accuracy_ci_low`/`_ci_high`, `macro_f1`, `weighted_f1`, `macro_roc_auc`; then
    /// for each class `sensitivity_<class>`, `specificity_<class>` and `precision_<class>`,
    /// each with `_ci_low`/`_ci_high` (Wilson 95 %), `f1_<class>` and `roc_auc_<class>`
    /// (one-vs-rest); then `pairwise_roc_auc_<a>_vs_<b>` for every pair of classes in label
    /// order.
    pub fn scalars(&self) -> Vec<(String, Option<f64>)> {
        let e = &self.evaluation;
        let mut out: Vec<(String, Option<f64>)> =
            vec![("n_test".into(), Some(self.total() as f64))];
        for (k, class) in e.classes.iter().enumerate() {
            out.push((
                format!("n_{}", self.classes.slug(k)),
                Some(class.support as f64),
            ));
        }
        out.push(("test_loss".into(), Some(self.test_loss)));
        push_rate(&mut out, "test_accuracy".into(), &e.accuracy);
        out.push(("macro_f1".into(), Some(e.macro_f1)));
        out.push(("weighted_f1".into(), Some(e.weighted_f1)));
        out.push(("macro_roc_auc".into(), e.macro_auc));
        for (k, class) in e.classes.iter().enumerate() {
            let s = self.classes.slug(k);
            push_rate(&mut out, format!("sensitivity_{s}"), &class.sensitivity);
            push_rate(&mut out, format!("specificity_{s}"), &class.specificity);
            push_rate(&mut out, format!("precision_{s}"), &class.precision);
            out.push((format!("f1_{s}"), Some(class.f1)));
            out.push((format!("roc_auc_{s}"), class.auc));
        }
        for &(a, b, auc) in &self.pairwise {
            out.push((
                format!(
                    "pairwise_roc_auc_{}_vs_{}",
                    self.classes.slug(a),
                    self.classes.slug(b)
                ),
                auc,
            ));
        }
        out
    }
}

/// `name`, `name_ci_low`, `name_ci_high` of a proportion (all `None` without trials).
fn push_rate(out: &mut Vec<(String, Option<f64>)>, name: String, p: &Proportion) {
    let ci = p.wilson(Z_95);
    out.push((format!("{name}_ci_low"), ci.map(|c| c.low)));
    out.push((format!("{name}_ci_high"), ci.map(|c| c.high)));
    out.insert(out.len() - 2, (name, p.value()));
}

#[cfg(test)]
pub(crate) mod tests;
