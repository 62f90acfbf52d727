//! The evaluate stage's CSV files for three or more classes (two classes keep the layouts of
//! [`super::io`], byte for byte). Classes appear by name, in label order; an undefined value
//! (the sensitivity of a class absent from the set, a precision of a class never predicted,
//! an AUC without both kinds of image) is an empty cell, never 0 or NaN.
//!
//! - `metrics.csv`: `name,value`, one row per scalar of [`ClassResults::scalars`].
//! - `confusion.csv`: `true_label,<class 0>,<class 1>,...`: one row per true class, one
//!   count column per predicted class (sklearn's `confusion_matrix`, rows true).
//! - `classification_report.csv`: `class,precision,recall,f1_score,support,ill_defined` as for
//!   two classes: one row per class, then `accuracy`, `macro avg`, `weighted avg`. A class's
//!   undefined precision or recall is empty and listed in `ill_defined`; its F1 is then
//!   sklearn's 0 (also listed), and the averages count it as 0, as sklearn's do.
//! - `roc.csv`: `class,threshold,fpr,tpr`: each class's one-vs-rest curve by decreasing
//!   threshold, classes in label order; a class without a curve has no rows.
//! - `predictions.csv`: `index,image,true_label,predicted_label,probability_<class>...`: one
//!   probability column per class, named `probability_` and the class's name.

use std::path::{Path, PathBuf};

use super::io::{write_rows, CONFUSION_CSV, METRICS_CSV, REPORT_CSV, ROC_CSV};
use super::multiclass::predicted_class;
use super::{ClassNames, ClassResults, MetricsError};

/// The prefix of a probability column of a C-class `predictions.csv`.
pub const PROBABILITY_PREFIX: &str = "probability_";

/// A value, or an empty cell when undefined.
fn cell(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

/// Writes `metrics.csv`, `confusion.csv`, `classification_report.csv` and `roc.csv` of
/// `results` into `dir` (which must exist) and returns their paths.
pub fn write_class_results(
    results: &ClassResults,
    dir: &Path,
) -> Result<Vec<PathBuf>, MetricsError> {
    let paths = [METRICS_CSV, CONFUSION_CSV, REPORT_CSV, ROC_CSV].map(|name| dir.join(name));
    write_rows(
        &paths[0],
        &["name", "value"],
        results
            .scalars()
            .into_iter()
            .map(|(name, value)| vec![name, cell(value)]),
    )?;
    let names = results.classes.names();
    let header: Vec<&str> = std::iter::once("true_label")
        .chain(names.iter().map(String::as_str))
        .collect();
    write_rows(
        &paths[1],
        &header,
        results
            .evaluation
            .confusion
            .iter()
            .enumerate()
            .map(|(t, row)| {
                std::iter::once(names[t].clone())
                    .chain(row.iter().map(u64::to_string))
                    .collect()
            }),
    )?;
    write_report(results, &paths[2])?;
    write_rows(
        &paths[3],
        &["class", "threshold", "fpr", "tpr"],
        results.roc.iter().enumerate().flat_map(|(k, curve)| {
            curve.points.iter().map(move |p| {
                vec![
                    names[k].clone(),
                    p.threshold.to_string(),
                    p.fpr.to_string(),
                    p.tpr.to_string(),
                ]
            })
        }),
    )?;
    Ok(paths.into())
}

fn write_report(results: &ClassResults, path: &Path) -> Result<(), MetricsError> {
    let e = &results.evaluation;
    let total = results.total() as f64;
    let c = e.classes.len() as f64;
    let mut rows = Vec::new();
    let (mut precision_sum, mut recall_sum) = (0.0, 0.0);
    let (mut precision_weighted, mut recall_weighted, mut f1_weighted) = (0.0, 0.0, 0.0);
    let mut any = [false; 3];
    for (k, class) in e.classes.iter().enumerate() {
        let precision = class.precision.value();
        let recall = class.sensitivity.value();
        let flags = [precision.is_none(), recall.is_none(), class.f1_ill_defined];
        for (a, f) in any.iter_mut().zip(flags) {
            *a |= f;
        }
        let support = class.support as f64;
        precision_sum += precision.unwrap_or(0.0);
        recall_sum += recall.unwrap_or(0.0);
        precision_weighted += precision.unwrap_or(0.0) * support;
        recall_weighted += recall.unwrap_or(0.0) * support;
        f1_weighted += class.f1 * support;
        rows.push(vec![
            results.classes.name(k).to_owned(),
            cell(precision),
            cell(recall),
            class.f1.to_string(),
            class.support.to_string(),
            ill_defined(flags),
        ]);
    }
    rows.push(vec![
        "accuracy".into(),
        String::new(),
        String::new(),
        cell(e.accuracy.value()),
        results.total().to_string(),
        String::new(),
    ]);
    rows.push(vec![
        "macro avg".into(),
        (precision_sum / c).to_string(),
        (recall_sum / c).to_string(),
        e.macro_f1.to_string(),
        results.total().to_string(),
        ill_defined(any),
    ]);
    rows.push(vec![
        "weighted avg".into(),
        (precision_weighted / total).to_string(),
        (recall_weighted / total).to_string(),
        (f1_weighted / total).to_string(),
        results.total().to_string(),
        ill_defined(any),
    ]);
    write_rows(
        path,
        &[
            "class",
            "precision",
            "recall",
            "f1_score",
            "support",
            "ill_defined",
        ],
        rows.into_iter(),
    )
}

/// `precision;recall;f1` for the flags set, as the two-class report writes them.
fn ill_defined([precision, recall, f1]: [bool; 3]) -> String {
    [(precision, "precision"), (recall, "recall"), (f1, "f1")]
        .iter()
        .filter(|(flag, _)| *flag)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(";")
}

/// Writes a C-class `predictions.csv`: each image's true class, predicted class (the argmax,
/// as the metrics count it) and every class's probability.
pub fn write_class_predictions_csv(
    labels: &[u32],
    probabilities: &[f32],
    images: &[String],
    classes: &ClassNames,
    path: &Path,
) -> Result<(), MetricsError> {
    let c = classes.len();
    if probabilities.len() != labels.len() * c || images.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            labels: labels.len(),
            probabilities: probabilities.len(),
        });
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= c) {
        return Err(MetricsError::Content {
            path: path.to_owned(),
            message: format!("label {value} of image {index} names none of the {c} classes"),
        });
    }
    let header: Vec<String> = ["index", "image", "true_label", "predicted_label"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            classes
                .names()
                .iter()
                .map(|n| format!("{PROBABILITY_PREFIX}{n}")),
        )
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_rows(
        path,
        &header,
        labels
            .iter()
            .zip(probabilities.chunks_exact(c))
            .zip(images)
            .enumerate()
            .map(|(i, ((&label, row), image))| {
                [
                    i.to_string(),
                    image.clone(),
                    classes.name(label as usize).to_owned(),
                    classes.name(predicted_class(row)).to_owned(),
                ]
                .into_iter()
                .chain(row.iter().map(f32::to_string))
                .collect()
            }),
    )
}
