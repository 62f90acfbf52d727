//! Adapters for the model stages: `model` (build), `features` (frozen base), `train` (head).

use std::path::{Path, PathBuf};

use stages::model::config::{HeadConfig, ModelConfig, Weights};
use stages::model::size::{ImageSize, Pooling};
use stages::model::{build_model, ConvAlgorithm, CpuBackend};
use stages::train::{self, TrainConfig, TrainInputs};

use super::{notes_of, Progress};
use crate::kind::{
    InputSlots, OutputSpec, ParamDefault, ParamProblem, ParamSpec, ParamType, Params, StageContext,
    StageError, StageKind, StageReport,
};

pub struct Model;

const MODEL_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "image_size",
        ty: ParamType::Int,
        default: ParamDefault::Required,
        help: "input side: 237 (the seed), 224 or 32",
    },
    ParamSpec {
        name: "weights",
        ty: ParamType::Str,
        default: ParamDefault::Str("random"),
        help: "\"random\" (seeded Glorot-uniform as Keras, zero biases), \"random-he\" (He-uniform: features keep their scale) or a torchvision-named VGG16 .safetensors under the data root",
    },
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        default: ParamDefault::ExperimentSeed,
        help: "seed of the random initialisation",
    },
    ParamSpec {
        name: "units",
        ty: ParamType::Int,
        default: ParamDefault::Int(64),
        help: "width of the head's hidden dense layer (16, 32, 64, 128, 256 or 512)",
    },
    ParamSpec {
        name: "dropout",
        ty: ParamType::Float,
        default: ParamDefault::Float(0.2),
        help: "dropout rate after the hidden layer",
    },
    ParamSpec {
        name: "pooling",
        ty: ParamType::Choice(&["avg4", "global"]),
        default: ParamDefault::Str("avg4"),
        help: "avg4: the seed's 4x4 average pooling; global: average over the whole map",
    },
    ParamSpec {
        name: "conv",
        ty: ParamType::Choice(&ConvAlgorithm::NAMES),
        default: ParamDefault::Str("direct"),
        help: "how the base's convolutions are computed: direct (im2col + gemm, as PyTorch and Keras) or winograd (F(4x4,3x3): about 2x faster on CPU, rounding a few 1e-6 of the output scale instead of about 1e-7)",
    },
];

fn model_config(params: &Params, data_root: Option<&Path>) -> Result<ModelConfig, String> {
    let int = |n: &str| params.int(n).map_err(|e| e.to_string());
    let pooling_name = params.str("pooling").map_err(|e| e.to_string())?;
    let pooling = Pooling::from_name(pooling_name)
        .ok_or_else(|| format!("unknown pooling `{pooling_name}`"))?;
    let conv_name = params.str("conv").map_err(|e| e.to_string())?;
    let conv =
        ConvAlgorithm::from_name(conv_name).ok_or_else(|| format!("unknown conv `{conv_name}`"))?;
    let weights = match params.str("weights").map_err(|e| e.to_string())? {
        "random" => Weights::Random,
        "random-he" => Weights::RandomHe,
        path => Weights::File(PathBuf::from(path)),
    };
    let mut cfg = ModelConfig {
        image_size: u32::try_from(int("image_size")?)
            .map_err(|_| "image_size must be positive".to_string())?,
        weights,
        seed: u64::try_from(int("seed")?).map_err(|_| "seed must not be negative".to_string())?,
        head: HeadConfig {
            units: usize::try_from(int("units")?)
                .map_err(|_| "units must be positive".to_string())?,
            dropout: params.float("dropout").map_err(|e| e.to_string())? as f32,
            pooling,
        },
        conv,
    };
    if let Some(root) = data_root {
        cfg.resolve_weights(root);
    }
    Ok(cfg)
}

impl StageKind for Model {
    fn name(&self) -> &'static str {
        "model"
    }
    fn version(&self) -> u32 {
        // 2: checkpoint metadata in one key, byte-stable.
        2
    }
    fn summary(&self) -> &'static str {
        "builds VGG16 + head; writes the initial checkpoint, the base alone, and a summary"
    }
    fn params(&self) -> &'static [ParamSpec] {
        MODEL_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&[])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("model", "model.safetensors", false).floats(),
            OutputSpec::new("base", "base.safetensors", false).floats(),
            OutputSpec::new("summary", "summary.txt", true),
        ]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        let problem = |param: &str, message: String| ParamProblem {
            param: param.into(),
            message,
        };
        let cfg = model_config(params, None).map_err(|m| problem("image_size", m))?;
        let size = ImageSize::from_pixels(cfg.image_size)
            .map_err(|e| problem("image_size", e.to_string()))?;
        cfg.head
            .pooling
            .pooled_side(size)
            .map_err(|e| problem("pooling", e.to_string()))?;
        if !stages::model::spec::SUPPORTED_UNITS.contains(&cfg.head.units) {
            return Err(problem(
                "units",
                format!(
                    "{} is not supported; use one of {:?}",
                    cfg.head.units,
                    stages::model::spec::SUPPORTED_UNITS
                ),
            ));
        }
        if !(0.0..1.0).contains(&cfg.head.dropout) {
            return Err(problem(
                "dropout",
                format!("must be in [0, 1), not {}", cfg.head.dropout),
            ));
        }
        Ok(())
    }
    fn external_files(
        &self,
        params: &Params,
        data_root: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        let cfg = model_config(params, Some(data_root)).map_err(StageError::Message)?;
        match cfg.weights {
            Weights::Random | Weights::RandomHe => Ok(Vec::new()),
            Weights::File(path) if path.is_file() => Ok(vec![path]),
            Weights::File(path) => Err(StageError::msg(format!(
                "weights file {} not found (weights = \"random\" needs no file)",
                path.display()
            ))),
        }
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg = model_config(ctx.params, Some(ctx.data_root)).map_err(StageError::Message)?;
        ctx.progress.start("building VGG16", 0);
        let report = build_model(&cfg, ctx.out_dir).map_err(StageError::domain)?;
        stages::features::write_base(&report.checkpoint, &ctx.output("base.safetensors"))
            .map_err(StageError::domain)?;
        let mut out = StageReport::default();
        out.notes.insert(
            "weights".into(),
            toml::Value::String(report.weights.clone()),
        );
        out.notes.insert(
            "total_params".into(),
            toml::Value::Integer(report.summary.total_params as i64),
        );
        out.notes.insert(
            "trainable_params".into(),
            toml::Value::Integer(report.summary.trainable_params as i64),
        );
        Ok(out)
    }
}

pub struct Features;

impl StageKind for Features {
    fn name(&self) -> &'static str {
        "features"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "runs the frozen VGG16 base once over every image (exact: the base never changes while the head trains)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &[]
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["base", "images"])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("features", "features.npy", false).floats()]
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let report = stages::features::compute(
            &CpuBackend,
            ctx.input("base")?,
            ctx.input("images")?,
            &ctx.output("features.npy"),
            &Progress(ctx.progress),
        )
        .map_err(StageError::domain)?;
        Ok(StageReport {
            notes: notes_of(&report),
            ..StageReport::default()
        })
    }
}

pub struct Train;

const TRAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "epochs",
        ty: ParamType::Int,
        default: ParamDefault::Int(50),
        help: "passes over the training rows",
    },
    ParamSpec {
        name: "batch_size",
        ty: ParamType::Int,
        default: ParamDefault::Int(8),
        help: "rows per gradient step",
    },
    ParamSpec {
        name: "learning_rate",
        ty: ParamType::Float,
        default: ParamDefault::Float(1e-3),
        help: "Adam's step size",
    },
    ParamSpec {
        name: "beta1",
        ty: ParamType::Float,
        default: ParamDefault::Float(0.9),
        help: "Adam's first-moment decay",
    },
    ParamSpec {
        name: "beta2",
        ty: ParamType::Float,
        default: ParamDefault::Float(0.999),
        help: "Adam's second-moment decay",
    },
    ParamSpec {
        name: "epsilon",
        ty: ParamType::Float,
        default: ParamDefault::Float(1e-7),
        help: "Adam's epsilon (Keras' default)",
    },
    ParamSpec {
        name: "validation_fraction",
        ty: ParamType::Float,
        default: ParamDefault::Float(0.1),
        help: "last share of the training rows held out for validation, as Keras' validation_split",
    },
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        default: ParamDefault::ExperimentSeed,
        help: "seed of the shuffles and dropout masks",
    },
    ParamSpec {
        name: "freeze_base",
        ty: ParamType::Bool,
        default: ParamDefault::Bool(true),
        help: "true: train the head on precomputed features; false: fine-tune the whole network (slow on CPU)",
    },
];

fn train_config(params: &Params) -> Result<TrainConfig, StageError> {
    let positive = |n: &str| -> Result<usize, StageError> {
        usize::try_from(params.int(n)?)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| StageError::msg(format!("`{n}` must be at least 1")))
    };
    Ok(TrainConfig {
        epochs: positive("epochs")?,
        batch_size: positive("batch_size")?,
        learning_rate: params.float("learning_rate")?,
        beta1: params.float("beta1")?,
        beta2: params.float("beta2")?,
        epsilon: params.float("epsilon")?,
        validation_fraction: params.float("validation_fraction")?,
        seed: u64::try_from(params.int("seed")?)
            .map_err(|_| StageError::msg("`seed` must not be negative"))?,
        freeze_base: params.bool("freeze_base")?,
    })
}

impl StageKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        // 2: checkpoint metadata in one key, byte-stable. 3: the images input and the
        // features output (fine-tuning).
        3
    }
    fn summary(&self) -> &'static str {
        "trains the head with Adam and binary cross-entropy, Keras' fit semantics"
    }
    fn params(&self) -> &'static [ParamSpec] {
        TRAIN_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["model", "features", "labels", "train", "images"])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("model", "model.safetensors", true).floats(),
            OutputSpec::new("history", "history.csv", true).volatile(),
            OutputSpec::new("features", "features.npy", false).floats(),
        ]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        let cfg = train_config(params).map_err(|e| ParamProblem {
            param: "epochs".into(),
            message: e.to_string(),
        })?;
        if !(0.0..1.0).contains(&cfg.validation_fraction) {
            return Err(ParamProblem {
                param: "validation_fraction".into(),
                message: format!("must be in [0, 1), not {}", cfg.validation_fraction),
            });
        }
        Ok(())
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg = train_config(ctx.params)?;
        let inputs = TrainInputs {
            model: ctx.input("model")?,
            features: ctx.input("features")?,
            labels: ctx.input("labels")?,
            train_index: ctx.input("train")?,
            images: ctx.input("images")?,
        };
        let report = train::run(
            &CpuBackend,
            &inputs,
            &cfg,
            ctx.out_dir,
            &Progress(ctx.progress),
        )
        .map_err(StageError::domain)?;
        let mut out = StageReport {
            notes: notes_of(&report),
            ..StageReport::default()
        };
        out.metrics.insert("final_loss".into(), report.final_loss);
        out.metrics
            .insert("final_accuracy".into(), report.final_accuracy);
        if let Some(v) = report.final_val_loss {
            out.metrics.insert("final_val_loss".into(), v);
        }
        if let Some(v) = report.final_val_accuracy {
            out.metrics.insert("final_val_accuracy".into(), v);
        }
        Ok(out)
    }
}
