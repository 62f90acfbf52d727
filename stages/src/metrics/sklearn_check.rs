//! Cross-checks every metric against scikit-learn itself, where a Python with sklearn exists.
//!
//! The interpreter is `$SKLEARN_PYTHON`, or `python3`. Without sklearn the test records
//! itself as skipped (`crate::test_skip`) and returns: the hand-computed tests beside each
//! metric are the ones that always run.

use std::process::Command;

use super::Evaluation;

/// Computes sklearn's answers for labels and probabilities given as comma-separated argv.
/// Prints one `key=v1,v2,...` line per quantity, floats in Python's round-trip `repr`.
const SCRIPT: &str = r#"
import sys, warnings
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, roc_curve, roc_auc_score
warnings.simplefilter("ignore")
y = np.array([int(v) for v in sys.argv[1].split(",")])
p = np.array([float(v) for v in sys.argv[2].split(",")], dtype=np.float32)
pred = (p > 0.5).astype(int)
out = {}
out["confusion"] = confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist()
r = classification_report(y, pred, labels=[0, 1], output_dict=True)
for key in ["0", "1", "macro avg", "weighted avg"]:
    out[key] = [r[key]["precision"], r[key]["recall"], r[key]["f1-score"], r[key]["support"]]
out["accuracy"] = [r["accuracy"]]
q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
out["loss"] = [float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))]
if len(set(y.tolist())) == 2:
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    out["fpr"], out["tpr"], out["thresholds"] = fpr.tolist(), tpr.tolist(), thr.tolist()
    out["auc"] = [roc_auc_score(y, p)]
for key, values in out.items():
    print(key + "=" + ",".join(repr(float(v)) for v in values))
"#;

/// The interpreter: `$SKLEARN_PYTHON`, or `python3`.
pub(super) fn python() -> String {
    std::env::var("SKLEARN_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether [`python`] can `import modules` (e.g. `"sklearn, scipy"`).
pub(super) fn python_imports(modules: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs [`SCRIPT`] and returns its `key -> values` lines.
fn sklearn(labels: &[u8], probabilities: &[f32]) -> Vec<(String, Vec<f64>)> {
    run_script(SCRIPT, &[comma_joined(labels), comma_joined(probabilities)])
}

/// `values` as one comma-separated argument (Rust's `Display` of a float round-trips).
pub(super) fn comma_joined<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a Python `script` with `args` and parses the `key=v1,v2,...` lines it prints.
pub(super) fn run_script(script: &str, args: &[String]) -> Vec<(String, Vec<f64>)> {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python ran a moment ago");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (key, values) = line.split_once('=')?;
            let values = values.split(',').map(|v| v.parse().unwrap()).collect();
            Some((key.to_owned(), values))
        })
        .collect()
}

fn assert_close(what: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {ours:?} vs {theirs:?}");
    for (a, b) in ours.iter().zip(theirs) {
        let ok = a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
        assert!(ok, "{what}: ours {ours:?}, sklearn {theirs:?}");
    }
}

/// Test sets with ties, scores exactly at the threshold, zero divisions and one class only.
fn cases() -> Vec<(Vec<u8>, Vec<f32>)> {
    let mut state = 12_345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f64 / (1u64 << 24) as f64
    };
    // 200 noisy scores rounded to 0.05, so many ties, some at exactly 0.5.
    let (mut labels, mut probabilities) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let label = u8::from(next() < 0.6);
        let score = (0.3 * f64::from(label) + 0.7 * next()).min(1.0);
        labels.push(label);
        probabilities.push(((score * 20.0).round() / 20.0) as f32);
    }
    vec![
        (vec![0, 0, 1, 1], vec![0.1, 0.4, 0.35, 0.8]),
        (labels, probabilities),
        (vec![0, 1, 0, 1, 1], vec![0.9, 0.8, 0.7, 0.6, 0.55]),
        (vec![0, 0, 1], vec![0.2, 0.1, 0.4]),
        (vec![1, 1, 1, 0], vec![0.5, 0.5, 1.0, 0.0]),
        (vec![1, 1, 1], vec![0.9, 0.2, 0.6]),
    ]
}

#[test]
fn matches_scikit_learn() {
    if !python_imports("sklearn") {
        crate::test_skip::skip(&format!(
            "`{} -c 'import sklearn'` failed; set SKLEARN_PYTHON to a Python with \
             scikit-learn to cross-check the metrics",
            python()
        ));
        return;
    }
    for (labels, probabilities) in cases() {
        let e = Evaluation::compute(&labels, &probabilities, 0.5).unwrap();
        let theirs = sklearn(&labels, &probabilities);
        let get = |key: &str| -> &[f64] {
            theirs
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&[], |(_, v)| v.as_slice())
        };
        let case = format!("labels {labels:?}");
        let counts: Vec<f64> = e
            .confusion
            .rows()
            .iter()
            .flatten()
            .map(|&c| c as f64)
            .collect();
        assert_close(&format!("{case} confusion"), &counts, get("confusion"));
        for (key, m) in [
            ("0", &e.report.classes[0]),
            ("1", &e.report.classes[1]),
            ("macro avg", &e.report.macro_avg),
            ("weighted avg", &e.report.weighted_avg),
        ] {
            assert_close(
                &format!("{case} {key}"),
                &[m.precision, m.recall, m.f1, m.support as f64],
                get(key),
            );
        }
        assert_close(
            &format!("{case} accuracy"),
            &[e.accuracy()],
            get("accuracy"),
        );
        assert_close(&format!("{case} loss"), &[e.test_loss], get("loss"));
        let column =
            |f: fn(&super::RocPoint) -> f64| e.roc.points.iter().map(f).collect::<Vec<_>>();
        assert_close(&format!("{case} fpr"), &column(|p| p.fpr), get("fpr"));
        assert_close(&format!("{case} tpr"), &column(|p| p.tpr), get("tpr"));
        let thresholds = column(|p| f64::from(p.threshold));
        assert_close(
            &format!("{case} thresholds"),
            &thresholds,
            get("thresholds"),
        );
        let auc: Vec<f64> = e.roc_auc().into_iter().collect();
        assert_close(&format!("{case} auc"), &auc, get("auc"));
    }
}
