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
    help: "probability above which an image is called COVID",
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
         an external set)"
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
        let mut report = StageReport::default();
        for (name, value) in evaluation.scalars() {
            // NaN (an undefined AUC, say) stays out of the headline numbers; metrics.csv has it.
            if value.is_finite() {
                report.metrics.insert(name.to_string(), value);
            }
        }
        Ok(report)
    }
}

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
