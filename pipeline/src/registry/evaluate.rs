//! Adapters for the result stages: `evaluate` (metrics) and `plot` (figures).

use stages::evaluate::{self, EvaluateInputs, ThresholdConfig, FIGURES as EVALUATION_FIGURES};
use stages::model::CpuBackend;
use stages::plot::{self, PlotInputs, FIGURES as PLOT_FIGURES};
use stages::validate::ConfigError;

use super::{float, problem};
use pipeline_engine::experiment::kind::{
    InputSlots, OutputSpec, ParamDefault, ParamProblem, ParamSpec, ParamType, Params, StageContext,
    StageError, StageKind, StageReport,
};

const THRESHOLD: ParamSpec = ParamSpec {
    name: "threshold",
    ty: ParamType::Float,
    default: ParamDefault::Float(0.5),
    help: "two classes: probability of the positive class (the second of `load.classes`) above \
           which an image is called that class; three or more classes predict the most probable",
};

/// Each figure `stem` as two outputs, `stem_png` and `stem_svg`, both published.
fn figure_outputs(stems: &'static [&'static str]) -> impl Iterator<Item = OutputSpec> {
    stems.iter().flat_map(|stem| {
        ["png", "svg"]
            .map(|ext| OutputSpec::new(&format!("{stem}_{ext}"), &format!("{stem}.{ext}"), true))
    })
}

/// Both stages' `threshold`, validated by the domain's own rule.
fn threshold(params: &Params) -> Result<f32, ConfigError> {
    let cfg = ThresholdConfig {
        threshold: float(params, "threshold")?,
    };
    cfg.validate()?;
    Ok(cfg.threshold as f32)
}

pub struct Evaluate;

impl StageKind for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        // 2: draws its set's confusion matrix and ROC curve (the plot stage drew the test
        // split's only), so that every external set's figures reach report.html.
        // 3: PNGs encoded with the best compression and adaptive filters (same pixels).
        3
    }
    fn summary(&self) -> &'static str {
        "test loss, accuracy, confusion matrix, classification report, ROC AUC, Wilson intervals, \
         confusion and ROC figures (on the `test` rows, or every row when `test` is left out: \
         an external set); with three or more classes, per class one-vs-rest with intervals, \
         macro and weighted F1, macro and pairwise AUC, named by the classes"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &[THRESHOLD]
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["model", "features", "labels", "test", "index"])
    }
    /// Without `test`, every row is evaluated: an external evaluation set.
    fn optional_inputs(&self) -> &'static [&'static str] {
        &["test"]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        threshold(params).map(|_| ()).map_err(problem)
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        [
            ("metrics", "metrics.csv"),
            ("confusion", "confusion.csv"),
            ("report", "classification_report.csv"),
            ("roc", "roc.csv"),
            ("predictions", "predictions.csv"),
        ]
        .iter()
        .map(|(name, file)| OutputSpec::new(name, file, true).floats())
        .chain(figure_outputs(&EVALUATION_FIGURES))
        .collect()
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let inputs = EvaluateInputs {
            model: ctx.input("model")?,
            features: ctx.input("features")?,
            labels: ctx.input("labels")?,
            test_index: ctx.optional_input("test"),
            index: ctx.input("index")?,
        };
        let threshold = threshold(ctx.params).map_err(StageError::domain)?;
        let evaluation = evaluate::run(&CpuBackend, &inputs, threshold, ctx.out_dir)
            .map_err(StageError::domain)?;
        Ok(stage_report(&evaluation))
    }
}

/// The run record's view of an evaluation: its finite scalars as metrics (NaN, an
/// undefined AUC say, stays out of the headline numbers; metrics.csv has it) and, unless the
/// classes are model1's NORMAL and COVID (whose records stay as they were), the class names
/// in label order as the note `classes`, so that reports and the headline name classes as
/// the experiment does, not by the slugs of the metric names.
pub(crate) fn stage_report(evaluation: &evaluate::Outcome) -> StageReport {
    let mut report = StageReport::default();
    for (name, value) in evaluation.scalars() {
        if value.is_finite() {
            report.metrics.insert(name, value);
        }
    }
    let classes = evaluation.classes();
    if !classes.is_default_binary() {
        report.notes.insert(
            CLASSES_NOTE.into(),
            toml::Value::Array(
                classes
                    .names()
                    .iter()
                    .map(|n| toml::Value::String(n.clone()))
                    .collect(),
            ),
        );
    }
    report
}

/// The evaluate stage's note naming its classes (see [`stage_report`]).
pub const CLASSES_NOTE: &str = "classes";

pub struct Plot;

impl StageKind for Plot {
    fn name(&self) -> &'static str {
        "plot"
    }
    fn version(&self) -> u32 {
        // 2: no longer draws the confusion matrix and ROC curve; the evaluate stage does.
        // 3: PNGs encoded with the best compression and adaptive filters (same pixels, about
        // half the bytes).
        3
    }
    fn summary(&self) -> &'static str {
        "accuracy, loss and prediction-grid figures (PNG and SVG)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &[THRESHOLD]
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["history", "predictions", "roc", "images", "test"])
    }
    /// `roc` is no longer read (the evaluate stage draws the ROC curve now); it stays
    /// accepted so that experiments written before, which connect it, still run.
    fn optional_inputs(&self) -> &'static [&'static str] {
        &["roc"]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        threshold(params).map(|_| ()).map_err(problem)
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        figure_outputs(&PLOT_FIGURES).collect()
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let inputs = PlotInputs {
            history: ctx.input("history")?,
            predictions: ctx.input("predictions")?,
            images: ctx.input("images")?,
            test_index: ctx.input("test")?,
        };
        let threshold = threshold(ctx.params).map_err(StageError::domain)?;
        plot::run(&inputs, threshold, ctx.out_dir).map_err(StageError::domain)?;
        Ok(StageReport::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(classes: &[&str], labels: &[u32], probabilities: &[f32]) -> evaluate::Outcome {
        let dir = tempfile::tempdir().expect("tempdir");
        let images: Vec<String> = (0..labels.len()).map(|i| format!("{i}.png")).collect();
        let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        evaluate::evaluate_probabilities(
            &evaluate::EvaluatedProbabilities {
                labels,
                probabilities,
                classes: &classes,
                images: &images,
                set: evaluate::SetKind::TestSplit,
            },
            0.5,
            dir.path(),
        )
        .expect("evaluation")
    }

    #[test]
    fn model1_s_record_has_no_class_note_and_three_classes_name_theirs() {
        let binary = stage_report(&outcome(
            &["NORMAL", "COVID"],
            &[0, 1],
            &[0.8, 0.2, 0.1, 0.9],
        ));
        assert!(binary.notes.is_empty());
        assert_eq!(binary.metrics.get("n_covid"), Some(&1.0));
        let three = stage_report(&outcome(
            &["NORMAL", "PNEUMONIA", "COVID-19"],
            &[0, 2],
            &[0.8, 0.1, 0.1, 0.1, 0.2, 0.7],
        ));
        assert_eq!(
            three.notes.get("classes"),
            Some(&toml::Value::Array(vec![
                "NORMAL".into(),
                "PNEUMONIA".into(),
                "COVID-19".into()
            ]))
        );
        assert_eq!(three.metrics.get("sensitivity_covid_19"), Some(&1.0));
        // PNEUMONIA is absent: no sensitivity recorded at all, rather than a 0 or a NaN.
        assert!(!three.metrics.contains_key("sensitivity_pneumonia"));
        assert_eq!(three.metrics.get("n_pneumonia"), Some(&0.0));
    }
}
