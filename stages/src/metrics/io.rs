//! The evaluate stage's CSV files for two classes: how they are laid out, written and read
//! back (three or more classes: [`super::class_io`]). Class names are the evaluation's own
//! ([`Evaluation::classes`]; model1's NORMAL and COVID below).
//!
//! All files have a header row. Floats are written in Rust's shortest round-trip form;
//! an undefined value is written `NaN` and the ROC curve's first threshold `inf` (both
//! parse back with `str::parse::<f64>` and with pandas).
//!
//! - `metrics.csv`: `name,value`, one row per scalar of [`Evaluation::scalars`]
//!   (`n_test`, `test_loss`, `test_accuracy`, `roc_auc`, `sensitivity`,
//!   `sensitivity_ci_low`, ...), in that fixed order.
//! - `confusion.csv`: `true_label,predicted_label,count,fraction`, four rows in the order
//!   NORMAL/NORMAL, NORMAL/COVID, COVID/NORMAL, COVID/COVID; `fraction` = count / total.
//! - `classification_report.csv`: `class,precision,recall,f1_score,support,ill_defined`,
//!   rows `NORMAL`, `COVID`, `accuracy`, `macro avg`, `weighted avg` like sklearn's text
//!   report (the `accuracy` row has only `f1_score` = accuracy and `support` = total);
//!   `ill_defined` lists the values that were 0/0 and set to 0 (e.g. `precision;f1`).
//! - `roc.csv`: `threshold,fpr,tpr`, one row per point of [`RocCurve`], by decreasing
//!   threshold; only the header when the curve is undefined (one class in the test set).
//! - `predictions.csv`: `index,image,true_label,probability,predicted_label`, one row per
//!   test image in test order; labels as class names, `probability` the `f32` probability of
//!   the positive class (label 1, COVID). Written by the evaluate stage so the plot stage can
//!   caption the image grid.

use std::path::{Path, PathBuf};

use super::{
    ClassNames, ConfusionMatrix, Evaluation, MetricsError, RocCurve, RocPoint, COVID, NORMAL,
};

/// File name of the scalar metrics.
pub const METRICS_CSV: &str = "metrics.csv";
/// File name of the confusion matrix.
pub const CONFUSION_CSV: &str = "confusion.csv";
/// File name of the classification report.
pub const REPORT_CSV: &str = "classification_report.csv";
/// File name of the ROC curve.
pub const ROC_CSV: &str = "roc.csv";
/// File name of the per-image predictions.
pub const PREDICTIONS_CSV: &str = "predictions.csv";

/// `predictions.csv` read back, in either layout: one row per evaluated image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions {
    /// Each image's true class, by name.
    pub true_classes: Vec<String>,
    /// Each image's predicted class, by name, as the evaluate stage decided it.
    pub predicted: Vec<String>,
    /// Two classes: the file's `probability` (of the positive class, label 1). Three or more:
    /// the probability of the predicted class.
    pub probabilities: Vec<f32>,
    /// A C-class file's classes, from its probability columns in label order; `None` for the
    /// two-class layout.
    pub classes: Option<Vec<String>>,
}

/// Writes the four CSV files of `evaluation` into `dir` (which must exist) and returns
/// their paths.
pub fn write_all(evaluation: &Evaluation, dir: &Path) -> Result<Vec<PathBuf>, MetricsError> {
    let paths = [METRICS_CSV, CONFUSION_CSV, REPORT_CSV, ROC_CSV].map(|name| dir.join(name));
    write_metrics_csv(evaluation, &paths[0])?;
    write_confusion_csv(&evaluation.confusion, &evaluation.classes, &paths[1])?;
    write_report_csv(evaluation, &paths[2])?;
    write_roc_csv(&evaluation.roc, &paths[3])?;
    Ok(paths.into())
}

/// Writes `metrics.csv`.
pub fn write_metrics_csv(evaluation: &Evaluation, path: &Path) -> Result<(), MetricsError> {
    write_rows(
        path,
        &["name", "value"],
        evaluation
            .scalars()
            .into_iter()
            .map(|(name, value)| vec![name.to_owned(), value.to_string()]),
    )
}

/// Writes `confusion.csv`, naming the classes `classes` (two: label 0 first).
pub fn write_confusion_csv(
    matrix: &ConfusionMatrix,
    classes: &ClassNames,
    path: &Path,
) -> Result<(), MetricsError> {
    let fractions = matrix.fractions();
    let rows = matrix.rows();
    let cells = [
        (NORMAL, NORMAL),
        (NORMAL, COVID),
        (COVID, NORMAL),
        (COVID, COVID),
    ];
    write_rows(
        path,
        &["true_label", "predicted_label", "count", "fraction"],
        cells.into_iter().map(|(t, p)| {
            let (t, p) = (usize::from(t), usize::from(p));
            vec![
                classes.name(t).to_owned(),
                classes.name(p).to_owned(),
                rows[t][p].to_string(),
                fractions[t][p].to_string(),
            ]
        }),
    )
}

/// Writes `classification_report.csv`.
pub fn write_report_csv(evaluation: &Evaluation, path: &Path) -> Result<(), MetricsError> {
    let report = &evaluation.report;
    let row = |name: &str, m: &super::ClassMetrics| {
        vec![
            name.to_owned(),
            m.precision.to_string(),
            m.recall.to_string(),
            m.f1.to_string(),
            m.support.to_string(),
            m.ill_defined_names(),
        ]
    };
    let named = report.named_rows(&evaluation.classes);
    let mut rows: Vec<Vec<String>> = named[..2].iter().map(|(n, m)| row(n, m)).collect();
    rows.push(vec![
        "accuracy".to_owned(),
        String::new(),
        String::new(),
        report.accuracy.unwrap_or(f64::NAN).to_string(),
        evaluation.confusion.total().to_string(),
        String::new(),
    ]);
    rows.extend(named[2..].iter().map(|(n, m)| row(n, m)));
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

/// Writes `roc.csv`.
pub fn write_roc_csv(curve: &RocCurve, path: &Path) -> Result<(), MetricsError> {
    write_rows(
        path,
        &["threshold", "fpr", "tpr"],
        curve.points.iter().map(|p| {
            vec![
                p.threshold.to_string(),
                p.fpr.to_string(),
                p.tpr.to_string(),
            ]
        }),
    )
}

/// Reads `metrics.csv` back as (name, value) pairs in file order; an undefined value (`NaN`
/// in a two-class file, an empty cell in a C-class one) reads as NaN.
pub fn read_metrics_csv(path: &Path) -> Result<Vec<(String, f64)>, MetricsError> {
    read_rows(path, &["name", "value"])?
        .into_iter()
        .map(|(line, row)| {
            let value = if row[1].is_empty() {
                f64::NAN
            } else {
                parse_f64(path, line, &row[1])?
            };
            Ok((row[0].clone(), value))
        })
        .collect()
}

/// Reads a two-class `confusion.csv` of the classes `classes` back; every (true, predicted)
/// pair must appear exactly once.
pub fn read_confusion_csv(
    path: &Path,
    classes: &ClassNames,
) -> Result<ConfusionMatrix, MetricsError> {
    let mut counts = [[None::<u64>; 2]; 2];
    let header = ["true_label", "predicted_label", "count", "fraction"];
    for (line, row) in read_rows(path, &header)? {
        let t = class_index(path, line, &row[0], classes)?;
        let p = class_index(path, line, &row[1], classes)?;
        let count = row[2].parse::<u64>().map_err(|_| {
            content(
                path,
                format!("line {line}: count {:?} is not a count", row[2]),
            )
        })?;
        if counts[t][p].replace(count).is_some() {
            return Err(content(
                path,
                format!("line {line}: {}/{} appears twice", row[0], row[1]),
            ));
        }
    }
    let mut rows = [[0u64; 2]; 2];
    for (t, row) in counts.iter().enumerate() {
        for (p, count) in row.iter().enumerate() {
            rows[t][p] = count.ok_or_else(|| {
                content(
                    path,
                    format!("no row for {}/{}", classes.name(t), classes.name(p)),
                )
            })?;
        }
    }
    Ok(ConfusionMatrix::from_rows(rows))
}

/// Reads `roc.csv` back (an empty curve when the file has only its header).
pub fn read_roc_csv(path: &Path) -> Result<RocCurve, MetricsError> {
    let points = read_rows(path, &["threshold", "fpr", "tpr"])?
        .into_iter()
        .map(|(line, row)| {
            let threshold = row[0]
                .parse::<f32>()
                .map_err(|_| content(path, format!("line {line}: {:?} is not a number", row[0])))?;
            Ok(RocPoint {
                threshold,
                fpr: parse_f64(path, line, &row[1])?,
                tpr: parse_f64(path, line, &row[2])?,
            })
        })
        .collect::<Result<_, MetricsError>>()?;
    Ok(RocCurve { points })
}

/// Writes `predictions.csv`, predicting at `threshold` (see [`super::predicted_label`]).
/// `images` names each row's source image (its path under the data root); `classes` names
/// the labels (two, label 0 first).
pub fn write_predictions_csv(
    labels: &[u8],
    probabilities: &[f32],
    images: &[String],
    classes: &ClassNames,
    threshold: f32,
    path: &Path,
) -> Result<(), MetricsError> {
    super::validate(labels, probabilities)?;
    if images.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            labels: images.len(),
            probabilities: labels.len(),
        });
    }
    write_rows(
        path,
        &PREDICTIONS_HEADER,
        labels
            .iter()
            .zip(probabilities)
            .zip(images)
            .enumerate()
            .map(|(i, ((&label, &p), image))| {
                vec![
                    i.to_string(),
                    image.clone(),
                    classes.name(usize::from(label)).to_owned(),
                    p.to_string(),
                    classes
                        .name(usize::from(super::predicted_label(p, threshold)))
                        .to_owned(),
                ]
            }),
    )
}

const PREDICTIONS_HEADER: [&str; 5] = [
    "index",
    "image",
    "true_label",
    "probability",
    "predicted_label",
];

/// Reads `predictions.csv` back, of two classes ([`write_predictions_csv`]) or more
/// ([`super::class_io::write_class_predictions_csv`]); rows must be numbered 0, 1, 2, ... and
/// hold class names and probabilities in [0, 1].
pub fn read_predictions_csv(path: &Path) -> Result<Predictions, MetricsError> {
    let csv_error = |source| MetricsError::Csv {
        path: path.to_owned(),
        source,
    };
    let header: Vec<String> = csv::Reader::from_path(path)
        .map_err(csv_error)?
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_owned)
        .collect();
    let prefix = super::class_io::PROBABILITY_PREFIX;
    let classes: Option<Vec<String>> = (header.len() > 4
        && header[..4] == ["index", "image", "true_label", "predicted_label"])
    .then(|| {
        header[4..]
            .iter()
            .map(|h| h.strip_prefix(prefix).map(str::to_owned))
            .collect()
    })
    .flatten();
    let expected: Vec<&str> = match &classes {
        Some(_) => header.iter().map(String::as_str).collect(),
        None => PREDICTIONS_HEADER.to_vec(),
    };
    let probability = |line: u64, text: &str| {
        text.parse::<f32>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| {
                content(
                    path,
                    format!("line {line}: probability {text:?} is not in [0, 1]"),
                )
            })
    };
    let mut predictions = Predictions {
        classes: classes.clone(),
        ..Predictions::default()
    };
    for (line, row) in read_rows(path, &expected)? {
        let expected = predictions.true_classes.len();
        if row[0] != expected.to_string() {
            return Err(content(
                path,
                format!(
                    "line {line}: index {:?} where {expected} was expected",
                    row[0]
                ),
            ));
        }
        let (truth, predicted, p) = match &classes {
            None => (&row[2], &row[4], probability(line, &row[3])?),
            Some(classes) => {
                let Some(k) = classes.iter().position(|c| *c == row[3]) else {
                    return Err(content(
                        path,
                        format!("line {line}: predicted class {:?} has no column", row[3]),
                    ));
                };
                if !classes.contains(&row[2]) {
                    return Err(content(
                        path,
                        format!("line {line}: true class {:?} has no column", row[2]),
                    ));
                }
                (&row[2], &row[3], probability(line, &row[4 + k])?)
            }
        };
        if truth.is_empty() || predicted.is_empty() {
            return Err(content(path, format!("line {line}: a class name is empty")));
        }
        predictions.true_classes.push(truth.clone());
        predictions.predicted.push(predicted.clone());
        predictions.probabilities.push(p);
    }
    Ok(predictions)
}

fn content(path: &Path, message: String) -> MetricsError {
    MetricsError::Content {
        path: path.to_owned(),
        message,
    }
}

fn parse_f64(path: &Path, line: u64, text: &str) -> Result<f64, MetricsError> {
    text.parse()
        .map_err(|_| content(path, format!("line {line}: {text:?} is not a number")))
}

fn class_index(
    path: &Path,
    line: u64,
    name: &str,
    classes: &ClassNames,
) -> Result<usize, MetricsError> {
    classes.index_of(name).ok_or_else(|| {
        content(
            path,
            format!(
                "line {line}: unknown class {name:?} (expected {})",
                classes.names().join(" or ")
            ),
        )
    })
}

pub(super) fn write_rows(
    path: &Path,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<(), MetricsError> {
    let csv_error = |source| MetricsError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    writer.write_record(header).map_err(csv_error)?;
    for row in rows {
        writer.write_record(&row).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| MetricsError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Reads all records after checking the header; each comes with its 1-based line number.
fn read_rows(path: &Path, header: &[&str]) -> Result<Vec<(u64, Vec<String>)>, MetricsError> {
    let csv_error = |source| MetricsError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    let found = reader.headers().map_err(csv_error)?;
    if found.iter().ne(header.iter().copied()) {
        return Err(content(
            path,
            format!(
                "header is {:?}, expected {:?}",
                found.iter().collect::<Vec<_>>().join(","),
                header.join(",")
            ),
        ));
    }
    reader
        .records()
        .map(|record| {
            let record = record.map_err(csv_error)?;
            let line = record.position().map_or(0, |p| p.line());
            Ok((line, record.iter().map(str::to_owned).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_like() -> Evaluation {
        // 3 NORMAL, 4 COVID, one COVID missed at 0.45 and tied with a NORMAL image.
        let labels = [0, 0, 0, 1, 1, 1, 1];
        let probabilities = [0.1, 0.45, 0.2, 0.45, 0.9, 0.8, 0.7];
        Evaluation::compute(&labels, &probabilities, 0.5).unwrap()
    }

    #[test]
    fn writes_documented_layouts_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let e = seed_like();
        let paths = write_all(&e, dir.path()).unwrap();
        assert_eq!(paths.len(), 4);

        let confusion = std::fs::read_to_string(dir.path().join(CONFUSION_CSV)).unwrap();
        assert_eq!(
            confusion,
            "true_label,predicted_label,count,fraction\n\
             NORMAL,NORMAL,3,0.42857142857142855\n\
             NORMAL,COVID,0,0\n\
             COVID,NORMAL,1,0.14285714285714285\n\
             COVID,COVID,3,0.42857142857142855\n"
        );
        assert_eq!(
            read_confusion_csv(
                &dir.path().join(CONFUSION_CSV),
                &ClassNames::default_binary()
            )
            .unwrap(),
            e.confusion
        );

        let roc = std::fs::read_to_string(dir.path().join(ROC_CSV)).unwrap();
        assert_eq!(
            roc,
            "threshold,fpr,tpr\ninf,0,0\n0.9,0,0.25\n0.8,0,0.5\n0.7,0,0.75\n\
             0.45,0.3333333333333333,1\n0.2,0.6666666666666666,1\n0.1,1,1\n"
        );
        let read = read_roc_csv(&dir.path().join(ROC_CSV)).unwrap();
        assert_eq!(read, e.roc);
        // Pairs: 12, of which the 0.45 tie counts half: AUC = 11.5 / 12.
        assert_eq!(read.auc(), Some(11.5 / 12.0));

        let metrics = read_metrics_csv(&dir.path().join(METRICS_CSV)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_CSV)).unwrap();
        assert!(text.starts_with("name,value\nn_test,7\nn_covid,4\nn_normal,3\nthreshold,0.5\n"));
        let get = |name: &str| metrics.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(get("test_accuracy"), 6.0 / 7.0);
        assert_eq!(get("roc_auc"), 11.5 / 12.0);
        assert_eq!(get("sensitivity"), 0.75);
        assert_eq!(metrics.len(), e.scalars().len());

        let report = std::fs::read_to_string(dir.path().join(REPORT_CSV)).unwrap();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "class,precision,recall,f1_score,support,ill_defined"
        );
        assert_eq!(lines[1], "NORMAL,0.75,1,0.8571428571428571,3,");
        assert_eq!(lines[2], "COVID,1,0.75,0.8571428571428571,4,");
        assert_eq!(lines[3], "accuracy,,,0.8571428571428571,7,");
        assert!(lines[4].starts_with("macro avg,0.875,0.875,0.857142857142857"));
        assert!(lines[5].starts_with("weighted avg,"));
    }

    #[test]
    fn undefined_values_are_written_as_nan_and_an_empty_curve() {
        let dir = tempfile::tempdir().unwrap();
        let e = Evaluation::compute(&[0, 0], &[0.2, 0.7], 0.5).unwrap();
        write_all(&e, dir.path()).unwrap();
        let roc = std::fs::read_to_string(dir.path().join(ROC_CSV)).unwrap();
        assert_eq!(roc, "threshold,fpr,tpr\n");
        assert!(read_roc_csv(&dir.path().join(ROC_CSV))
            .unwrap()
            .points
            .is_empty());
        let text = std::fs::read_to_string(dir.path().join(METRICS_CSV)).unwrap();
        assert!(text.contains("\nroc_auc,NaN\n"), "{text}");
        assert!(text.contains("\nsensitivity,NaN\n"), "{text}");
        let metrics = read_metrics_csv(&dir.path().join(METRICS_CSV)).unwrap();
        assert!(metrics.iter().any(|(n, v)| n == "roc_auc" && v.is_nan()));
        let report = std::fs::read_to_string(dir.path().join(REPORT_CSV)).unwrap();
        assert!(report.contains("\nCOVID,0,0,0,0,recall\n"), "{report}");
    }

    #[test]
    fn predictions_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PREDICTIONS_CSV);
        let labels = [1, 0, 1];
        let probabilities = [0.987_654_3, 0.5, 0.1];
        let images: Vec<String> = (0..labels.len()).map(|i| format!("img{i}.png")).collect();
        let classes = ClassNames::default_binary();
        write_predictions_csv(&labels, &probabilities, &images, &classes, 0.5, &path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "index,image,true_label,probability,predicted_label\n\
             0,img0.png,COVID,0.9876543,COVID\n\
             1,img1.png,NORMAL,0.5,NORMAL\n\
             2,img2.png,COVID,0.1,NORMAL\n"
        );
        let read = read_predictions_csv(&path).unwrap();
        assert_eq!(read.true_classes, ["COVID", "NORMAL", "COVID"]);
        assert_eq!(read.predicted, ["COVID", "NORMAL", "NORMAL"]);
        assert_eq!(read.probabilities, probabilities);
        assert_eq!(read.classes, None);

        std::fs::write(
            &path,
            "index,image,true_label,probability,predicted_label\n0,a.png,COVID,1.5,COVID\n",
        )
        .unwrap();
        let error = read_predictions_csv(&path).unwrap_err().to_string();
        assert!(
            error.contains("predictions.csv") && error.contains("line 2"),
            "{error}"
        );
        assert!(write_predictions_csv(&[2], &[0.5], &["x".into()], &classes, 0.5, &path).is_err());
    }

    #[test]
    fn readers_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFUSION_CSV);
        std::fs::write(
            &path,
            "true_label,predicted_label,count,fraction\nNORMAL,NORMAL,3,0.5\nCOVID,SICK,1,0.5\n",
        )
        .unwrap();
        let error = read_confusion_csv(&path, &ClassNames::default_binary())
            .unwrap_err()
            .to_string();
        assert!(error.contains("confusion.csv"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("SICK"), "{error}");

        std::fs::write(&path, "true_label,predicted_label,count,fraction\n").unwrap();
        let error = read_confusion_csv(&path, &ClassNames::default_binary())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no row for NORMAL/NORMAL"), "{error}");

        let roc = dir.path().join(ROC_CSV);
        std::fs::write(&roc, "fpr,tpr\n0,0\n").unwrap();
        let error = read_roc_csv(&roc).unwrap_err().to_string();
        assert!(
            error.contains("roc.csv") && error.contains("header"),
            "{error}"
        );
    }
}
