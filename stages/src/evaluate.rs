//! The evaluate stage: the trained model's predictions on the test rows (or, for an external
//! evaluation set, on every row), every metric of [`crate::metrics`] written as CSV, and the
//! set's confusion matrix and ROC curve drawn, titled with the set they show. [`run`] gets
//! the model's probabilities; [`evaluate_probabilities`] does everything after them, for two
//! classes (the seed's files, byte for byte) or more.

use std::path::Path;

use crate::arrays::{self, ArrayError};
use crate::figures::{
    plot_class_confusion, plot_class_roc, plot_confusion_of, plot_roc_of, EvaluatedSet, FigureError,
};
use crate::metrics::class_io::{write_class_predictions_csv, write_class_results};
use crate::metrics::io::{write_all, write_predictions_csv, PREDICTIONS_CSV};
use crate::metrics::{ClassNames, ClassResults, Evaluation, MetricsError};
use crate::model::inference::class_probabilities;
use crate::model::spec::HEAD_INPUTS;
use crate::model::{checkpoint, Backend, ModelError};
use crate::validate::{self, ConfigError};

/// The evaluate and plot stages' parameter: the probability above which an image is called
/// positive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct ThresholdConfig {
    pub threshold: f64,
}

impl ThresholdConfig {
    /// A probability: in [0, 1], not NaN. The experiment's check and the stages call this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::within("threshold", self.threshold, 0.0..=1.0, "[0, 1]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{path}: {message}")]
    Index { path: String, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// The probabilities, labels and names given do not fit together.
    #[error("evaluate: {0}")]
    Inputs(String),
}

pub struct EvaluateInputs<'a> {
    /// The trained checkpoint.
    pub model: &'a Path,
    pub features: &'a Path,
    pub labels: &'a Path,
    /// The split's test rows; `None` evaluates every row (an external evaluation set, loaded
    /// apart from the training data).
    pub test_index: Option<&'a Path>,
    /// The load stage's `index.csv`, to name each test image.
    pub index: &'a Path,
}

/// Writes `metrics.csv`, `confusion.csv`, `classification_report.csv`, `roc.csv`,
/// `predictions.csv` and the figures [`FIGURES`] (PNG and SVG) into `out_dir`, and returns
/// the evaluation.
pub fn run(
    backend: &dyn Backend,
    inputs: &EvaluateInputs,
    threshold: f32,
    out_dir: &Path,
) -> Result<Outcome, EvaluateError> {
    ThresholdConfig {
        threshold: threshold.into(),
    }
    .validate()?;
    // Only the head: the features are given.
    let model = checkpoint::load_head(inputs.model)?;
    let (shape, features) = arrays::read_f32(inputs.features)?;
    let labels = arrays::read_labels(inputs.labels)?;
    let rows = match inputs.test_index {
        Some(path) => arrays::read_index(path)?,
        None => (0..labels.len()).collect(),
    };
    let index = read_index_csv(inputs.index)?;
    if shape.len() != 2 || shape[1] != HEAD_INPUTS || shape[0] != labels.len() {
        return Err(ArrayError::Shape {
            path: inputs.features.to_path_buf(),
            shape,
            expected: format!("{} x {HEAD_INPUTS}", labels.len()),
        }
        .into());
    }
    let mut x = Vec::with_capacity(rows.len() * HEAD_INPUTS);
    let mut y = Vec::with_capacity(rows.len());
    let mut images = Vec::with_capacity(rows.len());
    for &r in &rows {
        let (Some(&label), Some(name)) = (labels.get(r), index.paths.get(r)) else {
            return Err(EvaluateError::Index {
                path: inputs
                    .test_index
                    .unwrap_or(inputs.labels)
                    .display()
                    .to_string(),
                message: format!("row {r} is out of range for {} images", labels.len()),
            });
        };
        x.extend_from_slice(&features[r * HEAD_INPUTS..(r + 1) * HEAD_INPUTS]);
        y.push(u32::from(label));
        images.push(name.clone());
    }
    // Every class's probability: rows [1 - p, p] for the seed's sigmoid head (p exactly what
    // every two-class metric reads), a softmax row for three or more classes.
    let probabilities = class_probabilities(backend, model.head, &model.weights, &x, rows.len())?;
    let classes = index.names_for(model.classes());
    index.check_classes(&classes, inputs.index)?;
    let set = match inputs.test_index {
        Some(_) => SetKind::TestSplit,
        None => SetKind::External,
    };
    evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &y,
            probabilities: &probabilities.values,
            classes: &classes,
            images: &images,
            set,
        },
        threshold,
        out_dir,
    )
}

/// Which images an evaluation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// The split's test rows.
    TestSplit,
    /// Every row of a separately loaded set.
    External,
}

/// What the evaluate stage computes from once it has the model's probabilities.
#[derive(Debug, Clone, Copy)]
pub struct EvaluatedProbabilities<'a> {
    /// True class of each image, in `0..C`.
    pub labels: &'a [u32],
    /// N x C, row-major: each image's probability of each class (for two classes the rows
    /// `[1 - p, p]` of the sigmoid head, p being what the metrics read).
    pub probabilities: &'a [f32],
    /// The C class names, by label.
    pub classes: &'a [String],
    /// Each image's path under its data root, for `predictions.csv`.
    pub images: &'a [String],
    pub set: SetKind,
}

/// An evaluation of two classes (the seed's metrics and files, byte for byte) or of more.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Binary(Evaluation),
    Classes(ClassResults),
}

impl Outcome {
    /// The named scalars of `metrics.csv`, NaN where undefined.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        match self {
            Outcome::Binary(e) => e.scalars(),
            Outcome::Classes(r) => r
                .scalars()
                .into_iter()
                .map(|(name, value)| (name, value.unwrap_or(f64::NAN)))
                .collect(),
        }
    }

    /// The classes evaluated, by label.
    pub fn classes(&self) -> &ClassNames {
        match self {
            Outcome::Binary(e) => &e.classes,
            Outcome::Classes(r) => &r.classes,
        }
    }
}

/// Everything after the model: computes the metrics of `given`, writes the stage's five CSV
/// files and its figures into `out_dir` (which must exist) and returns the evaluation. Two
/// classes go through the seed's binary metrics at `threshold` (on column 1); three or more
/// predict the argmax and ignore `threshold`.
pub fn evaluate_probabilities(
    given: &EvaluatedProbabilities,
    threshold: f32,
    out_dir: &Path,
) -> Result<Outcome, EvaluateError> {
    let classes = ClassNames::new(given.classes.to_vec())?;
    let c = classes.len();
    let n = given.labels.len();
    if given.probabilities.len() != n * c || given.images.len() != n {
        return Err(EvaluateError::Inputs(format!(
            "{n} labels and {c} classes need {} probabilities and {n} image names, got {} and {}",
            n * c,
            given.probabilities.len(),
            given.images.len()
        )));
    }
    let counts = |labels: &[u32]| -> Vec<u64> {
        (0..c)
            .map(|k| labels.iter().filter(|&&l| l as usize == k).count() as u64)
            .collect()
    };
    // Drawn here rather than by the plot stage, so that every evaluation, however many
    // external sets an experiment has, gets its own figures from the numbers it computed.
    let set = match given.set {
        SetKind::TestSplit => EvaluatedSet::TestSplit,
        SetKind::External => EvaluatedSet::external(classes.names(), &counts(given.labels)),
    };
    if c == 2 {
        let mut labels = Vec::with_capacity(n);
        for (i, &l) in given.labels.iter().enumerate() {
            labels.push(u8::try_from(l).ok().filter(|&l| l <= 1).ok_or_else(|| {
                EvaluateError::Inputs(format!("label {l} of image {i} is neither 0 nor 1"))
            })?);
        }
        let positive: Vec<f32> = given.probabilities.chunks_exact(2).map(|r| r[1]).collect();
        let evaluation =
            Evaluation::compute(&labels, &positive, threshold)?.with_classes(classes)?;
        write_all(&evaluation, out_dir)?;
        write_predictions_csv(
            &labels,
            &positive,
            given.images,
            &evaluation.classes,
            threshold,
            &out_dir.join(PREDICTIONS_CSV),
        )?;
        plot_confusion_of(&evaluation.confusion, &evaluation.classes, &set, out_dir)?;
        plot_roc_of(&evaluation.roc, &set, out_dir)?;
        return Ok(Outcome::Binary(evaluation));
    }
    let results = ClassResults::compute(given.labels, given.probabilities, classes)?;
    write_class_results(&results, out_dir)?;
    write_class_predictions_csv(
        given.labels,
        given.probabilities,
        given.images,
        &results.classes,
        &out_dir.join(PREDICTIONS_CSV),
    )?;
    plot_class_confusion(&results, &set, out_dir)?;
    plot_class_roc(&results, &set, out_dir)?;
    Ok(Outcome::Classes(results))
}

/// The figures the stage draws, by file stem (each as PNG and SVG).
pub const FIGURES: [&str; 2] = ["confusion", "roc"];

/// What the evaluate stage reads from the load stage's `index.csv`.
struct IndexCsv {
    /// The `path` column, by row.
    paths: Vec<String>,
    /// The `class` name of each `label` seen (none when the file has no such columns).
    classes: std::collections::BTreeMap<usize, String>,
}

impl IndexCsv {
    /// The classes to report under: the model's, except that a two-class model with the
    /// default names (an experiment that never set `model.classes`, as before classes were
    /// recorded) takes the load stage's names, so that a PNEUMONIA/COVID experiment is
    /// reported as such. Three or more classes are always named by the model.
    fn names_for(&self, model: &[String]) -> Vec<String> {
        if model != crate::model::spec::DEFAULT_CLASSES {
            return model.to_vec();
        }
        (0..model.len())
            .map(|k| self.classes.get(&k).unwrap_or(&model[k]).clone())
            .collect()
    }

    /// Refuses a model whose class names are not the load stage's: `load.classes` and
    /// `model.classes` must name the same classes in the same order, or every result would
    /// carry the wrong name. Only the labels that `index.csv` names can be compared.
    fn check_classes(&self, model: &[String], path: &Path) -> Result<(), EvaluateError> {
        for (&label, name) in &self.classes {
            if model.get(label) != Some(name) {
                return Err(EvaluateError::Index {
                    path: path.display().to_string(),
                    message: format!(
                        "label {label} is class {name:?} here but {} in the trained model \
                         (whose classes are {model:?}): give the model stage the load stage's \
                         classes, in the same order",
                        model
                            .get(label)
                            .map_or("absent".to_owned(), |m| format!("{m:?}")),
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The `path` column of the load stage's `index.csv`, by row, and its class names.
fn read_index_csv(index: &Path) -> Result<IndexCsv, EvaluateError> {
    let err = |message: String| EvaluateError::Index {
        path: index.display().to_string(),
        message,
    };
    let mut reader = csv::Reader::from_path(index).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let column = find("path").ok_or_else(|| err("no `path` column".into()))?;
    let (label, class) = (find("label"), find("class"));
    let mut out = IndexCsv {
        paths: Vec::new(),
        classes: Default::default(),
    };
    for record in reader.records() {
        let record = record.map_err(|e| err(e.to_string()))?;
        out.paths
            .push(record.get(column).unwrap_or_default().to_string());
        let named = label
            .zip(class)
            .and_then(|(l, c)| Some((record.get(l)?.parse::<usize>().ok()?, record.get(c)?)));
        if let Some((l, c)) = named.filter(|(_, c)| !c.is_empty()) {
            out.classes.entry(l).or_insert_with(|| c.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
