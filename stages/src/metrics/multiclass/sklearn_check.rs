//! Cross-checks every multi-class metric against scikit-learn (and the Wilson intervals
//! against SciPy), where a Python with them exists.
//!
//! The interpreter is `$SKLEARN_PYTHON`, or `python3`; without sklearn the test records itself
//! as skipped (`crate::test_skip`). Undefined figures are NaN on sklearn's side (asked for with
//! `zero_division=np.nan`, or its own NaN AUC) and `None` on ours.

use super::super::sklearn_check::{comma_joined, python, python_imports, run_script};
use super::super::{Proportion, Z_95};
use super::{pairwise_auc, predicted_class, MulticlassEvaluation};

/// sklearn's answers for `C`, labels and row-major probabilities given as argv; one
/// `key=v1,v2,...` line per quantity, floats in Python's round-trip `repr`.
const SCRIPT: &str = r#"
import sys, warnings
from itertools import combinations
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (confusion_matrix, f1_score, multilabel_confusion_matrix,
                             precision_recall_fscore_support, recall_score, roc_auc_score)
warnings.simplefilter("ignore")
C = int(sys.argv[1])
y = np.array([int(v) for v in sys.argv[2].split(",")])
p = np.array([float(v) for v in sys.argv[3].split(",")], dtype=np.float32).reshape(-1, C)
labels = list(range(C))
pred = p.argmax(axis=1)
out = {"confusion": confusion_matrix(y, pred, labels=labels).ravel().tolist()}
out["accuracy"] = [np.mean(y == pred)]
def wilson(k, n):
    if n == 0:
        return [np.nan, np.nan]
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return [ci.low, ci.high]
prec, rec, _, support = precision_recall_fscore_support(
    y, pred, labels=labels, average=None, zero_division=np.nan)
f1 = f1_score(y, pred, labels=labels, average=None)
auc = roc_auc_score(y, p, multi_class="ovr", average=None, labels=labels)
for k, (tn, fp), (fn, tp) in ((k, *m) for k, m in enumerate(multilabel_confusion_matrix(y, pred, labels=labels))):
    spec = recall_score(y != k, pred != k, zero_division=np.nan)
    out[f"class{k}"] = [rec[k], spec, prec[k], f1[k], support[k], auc[k]]
    out[f"wilson{k}"] = wilson(tp, tp + fn) + wilson(tn, tn + fp) + wilson(tp, tp + fp)
out["accuracy_wilson"] = wilson(np.sum(y == pred), len(y))
out["f1"] = [f1_score(y, pred, labels=labels, average="macro"),
             f1_score(y, pred, labels=labels, average="weighted")]
present = set(y.tolist())
out["macro_auc"] = [roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels)
                    if len(present) == C else np.nanmean(auc)]
pairs = []
for a, b in combinations(labels, 2):
    m = (y == a) | (y == b)
    both = a in present and b in present
    pairs.append(roc_auc_score(y[m], p[m], multi_class="ovo", labels=labels) if both else np.nan)
out["pairs"] = pairs
if len(present) == C and C > 2:
    out["ovo_macro"] = [roc_auc_score(y, p, multi_class="ovo", average="macro")]
for key, values in out.items():
    print(key + "=" + ",".join(repr(float(v)) for v in values))
"#;

/// Runs [`SCRIPT`] and returns its `key -> values` lines.
fn sklearn(n_classes: usize, labels: &[u32], probabilities: &[f32]) -> Vec<(String, Vec<f64>)> {
    let args = [
        n_classes.to_string(),
        comma_joined(labels),
        comma_joined(probabilities),
    ];
    run_script(SCRIPT, &args)
}

/// Our `None` is sklearn's NaN; defined values agree within 1e-12 (relative above 1).
fn assert_close(what: &str, ours: &[Option<f64>], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {ours:?} vs {theirs:?}");
    for (a, &b) in ours.iter().zip(theirs) {
        let ok = match a {
            None => b.is_nan(),
            Some(a) => *a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0),
        };
        assert!(ok, "{what}: ours {ours:?}, sklearn {theirs:?}");
    }
}

fn wilson(p: &Proportion) -> [Option<f64>; 2] {
    let ci = p.wilson(Z_95);
    [ci.map(|c| c.low), ci.map(|c| c.high)]
}

/// Seeded sets of 60 images: small integer logits, so many rows tie for the argmax and many
/// scores tie in the ROC curves. `absent` is a class no image has.
fn case(seed: u64, n_classes: usize, absent: Option<u32>) -> (Vec<u32>, Vec<f32>) {
    let mut state = seed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let (mut labels, mut probabilities) = (Vec::new(), Vec::new());
    while labels.len() < 60 {
        let label = next(n_classes as u64) as u32;
        if Some(label) == absent {
            continue;
        }
        // The true class gets a head start half the time, so the metrics are not chance.
        let logits: Vec<f64> = (0..n_classes as u32)
            .map(|k| next(3) as f64 + if k == label { next(2) as f64 } else { 0.0 })
            .collect();
        let sum: f64 = logits.iter().map(|l| l.exp()).sum();
        labels.push(label);
        probabilities.extend(logits.iter().map(|l| (l.exp() / sum) as f32));
    }
    (labels, probabilities)
}

#[test]
fn multiclass_matches_scikit_learn() {
    if !python_imports("sklearn, scipy") {
        crate::test_skip::skip(&format!(
            "`{} -c 'import sklearn, scipy'` failed; set SKLEARN_PYTHON to a Python with \
             scikit-learn to cross-check the multi-class metrics",
            python()
        ));
        return;
    }
    let cases = [
        (3, 1, None),
        (3, 2, None),
        (4, 3, None),
        (4, 4, None),
        (4, 5, Some(2)),
        (3, 6, Some(0)),
    ];
    for (n_classes, seed, absent) in cases {
        let (labels, probabilities) = case(seed, n_classes, absent);
        let e = MulticlassEvaluation::compute(&labels, &probabilities, n_classes).unwrap();
        let theirs = sklearn(n_classes, &labels, &probabilities);
        let get = |key: &str| -> &[f64] {
            theirs
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&[], |(_, v)| v.as_slice())
        };
        let name = format!("{n_classes} classes, seed {seed}");
        let counts: Vec<_> = e
            .confusion
            .iter()
            .flatten()
            .map(|&c| Some(c as f64))
            .collect();
        assert_close(&format!("{name} confusion"), &counts, get("confusion"));
        assert_close(
            &format!("{name} accuracy"),
            &[e.accuracy.value()],
            get("accuracy"),
        );
        assert_close(
            &format!("{name} accuracy interval"),
            &wilson(&e.accuracy),
            get("accuracy_wilson"),
        );
        for (k, c) in e.classes.iter().enumerate() {
            let figures = [
                c.sensitivity.value(),
                c.specificity.value(),
                c.precision.value(),
                Some(c.f1),
                Some(c.support as f64),
                c.auc,
            ];
            assert_close(
                &format!("{name} class {k}"),
                &figures,
                get(&format!("class{k}")),
            );
            let intervals: Vec<_> = [c.sensitivity, c.specificity, c.precision]
                .iter()
                .flat_map(wilson)
                .collect();
            assert_close(
                &format!("{name} class {k} intervals"),
                &intervals,
                get(&format!("wilson{k}")),
            );
        }
        assert_close(
            &format!("{name} macro, weighted F1"),
            &[Some(e.macro_f1), Some(e.weighted_f1)],
            get("f1"),
        );
        assert_close(
            &format!("{name} macro AUC"),
            &[e.macro_auc],
            get("macro_auc"),
        );
        let mut pairs = Vec::new();
        for a in 0..n_classes {
            for b in a + 1..n_classes {
                pairs.push(pairwise_auc(&labels, &probabilities, n_classes, a, b).unwrap());
            }
        }
        assert_close(&format!("{name} pairwise AUC"), &pairs, get("pairs"));
        if absent.is_none() {
            // sklearn's ovo macro AUC is the plain mean of the pairs.
            let mean = pairs.iter().flatten().sum::<f64>() / pairs.len() as f64;
            assert_close(
                &format!("{name} ovo macro"),
                &[Some(mean)],
                get("ovo_macro"),
            );
        }
        // Guard against a generator that stops producing what the cases are for.
        let ties = probabilities
            .chunks_exact(n_classes)
            .filter(|row| {
                let best = row[predicted_class(row)];
                row.iter().filter(|&&p| p == best).count() > 1
            })
            .count();
        assert!(ties > 0, "{name}: no argmax ties");
        assert_eq!(
            e.classes.iter().filter(|c| c.support == 0).count(),
            usize::from(absent.is_some()),
            "{name}"
        );
    }
}
