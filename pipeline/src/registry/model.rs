//! Adapters for the model stages: `model` (build), `features` (frozen base), `train` (head).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stages::model::config::{HeadConfig, ModelConfig, Weights};
use stages::model::size::Pooling;
use stages::model::spec::default_classes;
use stages::model::{build_model, Backend, ConvAlgorithm};
use stages::train::{self, ClassWeight, TrainConfig, TrainInputs};
use stages::validate::ConfigError;

use super::{float, notes_of, problem, unsigned, Progress};
use pipeline_engine::experiment::kind::{
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
    ParamSpec {
        name: "classes",
        ty: ParamType::StrList,
        default: ParamDefault::Optional,
        help: "the class names, class 0 first (as load.classes): two give the seed's Dense(1) + sigmoid head, three or more a Dense(C) + softmax head; default [\"NORMAL\", \"COVID\"]",
    },
];

/// The stage's parameters as the domain's config, validated by its own `validate`: every
/// problem names the parameter at fault.
fn model_config(params: &Params) -> Result<ModelConfig, ConfigError> {
    let text = |name: &'static str| {
        params
            .str(name)
            .map_err(|e| ConfigError::new(name, e.to_string()))
    };
    let pooling_name = text("pooling")?;
    let pooling = Pooling::from_name(pooling_name)
        .ok_or_else(|| ConfigError::new("pooling", format!("unknown pooling `{pooling_name}`")))?;
    let conv_name = text("conv")?;
    let conv = ConvAlgorithm::from_name(conv_name)
        .ok_or_else(|| ConfigError::new("conv", format!("unknown conv `{conv_name}`")))?;
    let weights = match text("weights")? {
        "random" => Weights::Random,
        "random-he" => Weights::RandomHe,
        path => Weights::File(PathBuf::from(path)),
    };
    let classes = match params.get("classes") {
        None => default_classes(),
        Some(_) => params
            .str_list("classes")
            .map_err(|e| ConfigError::new("classes", e.to_string()))?,
    };
    let cfg = ModelConfig {
        classes,
        image_size: unsigned(params, "image_size")?,
        weights,
        seed: unsigned(params, "seed")?,
        head: HeadConfig {
            units: unsigned(params, "units")?,
            dropout: float(params, "dropout")? as f32,
            pooling,
        },
        conv,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The validated config with its weights file resolved against the data root, for running.
fn resolved_model_config(params: &Params, data_root: &Path) -> Result<ModelConfig, StageError> {
    let mut cfg = model_config(params).map_err(StageError::domain)?;
    cfg.resolve_weights(data_root);
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
            OutputSpec::new("model", train::CHECKPOINT_FILE, false).floats(),
            OutputSpec::new("base", "base.safetensors", false).floats(),
            OutputSpec::new("summary", "summary.txt", true),
        ]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        model_config(params).map(|_| ()).map_err(problem)
    }
    fn output_depends_on(&self, output: &str) -> Option<&'static [&'static str]> {
        // The frozen base: its weights and the geometry its metadata records; the head's
        // units and dropout leave it alone (pinned by tests/sweep.rs).
        (output == "base").then_some(&["image_size", "weights", "seed", "pooling", "conv"])
    }
    fn external_files(
        &self,
        params: &Params,
        data_root: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        let cfg = resolved_model_config(params, data_root)?;
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
        let cfg = resolved_model_config(ctx.params, ctx.data_root)?;
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

/// Computes on its backend: the CPU, or the GPU `--device` chose.
pub struct Features(pub Arc<dyn Backend>);

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
    fn device_dependent(&self, _params: &Params) -> bool {
        true
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let report = stages::features::compute(
            &*self.0,
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

/// Fine-tunes on its backend; the head alone (`freeze_base = true`) is trained in dfdx on the
/// CPU whichever the backend.
pub struct Train(pub Arc<dyn Backend>);

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
    ParamSpec {
        name: "class_weight",
        ty: ParamType::Any,
        default: ParamDefault::Optional,
        help: "Keras' class_weight: \"balanced\" (n / (C n_c) over the training rows) or a table { CLASS = weight, ... } naming every class; absent, every row weighs 1",
    },
];

/// The stage's parameters as the domain's config, validated by its own `validate`: every
/// problem names the parameter at fault.
fn train_config(params: &Params) -> Result<TrainConfig, ConfigError> {
    let cfg = TrainConfig {
        epochs: unsigned(params, "epochs")?,
        batch_size: unsigned(params, "batch_size")?,
        learning_rate: float(params, "learning_rate")?,
        beta1: float(params, "beta1")?,
        beta2: float(params, "beta2")?,
        epsilon: float(params, "epsilon")?,
        validation_fraction: float(params, "validation_fraction")?,
        seed: unsigned(params, "seed")?,
        freeze_base: params
            .bool("freeze_base")
            .map_err(|e| ConfigError::new("freeze_base", e.to_string()))?,
        class_weight: params.get("class_weight").map(class_weight).transpose()?,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `class_weight` as written: `"balanced"` or a table of numbers keyed by class name.
fn class_weight(value: &toml::Value) -> Result<ClassWeight, ConfigError> {
    let bad = |detail: String| ConfigError::new("class_weight", detail);
    match value {
        toml::Value::String(name) => Ok(ClassWeight::Named(name.clone())),
        toml::Value::Table(table) => table
            .iter()
            .map(|(name, w)| {
                let w = w
                    .as_float()
                    .or_else(|| w.as_integer().map(|i| i as f64))
                    .ok_or_else(|| {
                        bad(format!("the weight of `{name}` must be a number, not {w}"))
                    })?;
                Ok((name.clone(), w))
            })
            .collect::<Result<_, _>>()
            .map(ClassWeight::Table),
        other => Err(bad(format!(
            "must be \"balanced\" or a table {{ CLASS = weight, ... }}, not {other}"
        ))),
    }
}

impl StageKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        // 2: checkpoint metadata in one key, byte-stable. 3: the images input and the
        // features output (fine-tuning). 4: history.csv records the validation split's size.
        // 5: a frozen-base train publishes its head and a record of the base
        // (`head.safetensors`, `base.toml`) instead of the whole model, which stays in the
        // cache unpublished, byte-identical (`pipeline export` writes it).
        5
    }
    fn summary(&self) -> &'static str {
        "trains the head with Adam and cross-entropy (binary for two classes, categorical for more), Keras' fit semantics"
    }
    fn params(&self) -> &'static [ParamSpec] {
        TRAIN_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["model", "features", "labels", "train", "images"])
    }
    /// A frozen base publishes only what training changed, as PEFT's adapters do: the head
    /// and a record of the base it goes on. The whole model is still an output, read by the
    /// stages after this one; a fine-tuned one, all new, is published whole.
    fn outputs(&self, params: &Params) -> Vec<OutputSpec> {
        let frozen = params.bool("freeze_base").unwrap_or(true);
        let mut outputs = vec![OutputSpec::new("model", train::CHECKPOINT_FILE, !frozen).floats()];
        if frozen {
            outputs.push(OutputSpec::new("head", train::HEAD_FILE, true).floats());
            outputs.push(OutputSpec::new("base_record", BASE_RECORD_FILE, true));
        }
        outputs.extend([
            OutputSpec::new("history", "history.csv", true).volatile(),
            OutputSpec::new("features", "features.npy", false).floats(),
        ]);
        outputs
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        train_config(params).map(|_| ()).map_err(problem)
    }
    /// Fine-tuning runs the base on the device; the head alone is trained in dfdx on the
    /// CPU on every device, bit for bit the same.
    fn device_dependent(&self, params: &Params) -> bool {
        params.bool("freeze_base").is_ok_and(|frozen| !frozen)
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg = train_config(ctx.params).map_err(StageError::domain)?;
        let inputs = TrainInputs {
            model: ctx.input("model")?,
            features: ctx.input("features")?,
            labels: ctx.input("labels")?,
            train_index: ctx.input("train")?,
            images: ctx.input("images")?,
        };
        let report = train::run(
            &*self.0,
            &inputs,
            &cfg,
            ctx.out_dir,
            &Progress(ctx.progress),
        )
        .map_err(StageError::domain)?;
        if cfg.freeze_base {
            write_base_record(inputs.model, ctx.out_dir)?;
        }
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

/// What a frozen-base run directory holds instead of the whole model, beside the head.
pub const BASE_RECORD_FILE: &str = "base.toml";

/// A file's size and blake3 digest, or the stage error naming it.
fn size_and_digest(path: &Path) -> Result<(u64, String), StageError> {
    let digest = pipeline_engine::hash::hash_regular_file(path, None)
        .map_err(|e| StageError::msg(format!("cannot read {}: {e}", path.display())))?;
    let size = std::fs::metadata(path)
        .map_err(|e| StageError::msg(format!("cannot read {}: {e}", path.display())))?
        .len();
    Ok((size, digest.to_hex().to_string()))
}

/// Writes `base.toml`: which checkpoint the head in `head.safetensors` goes on (the train
/// stage's `model` input, the initial checkpoint: the base as the model stage built it, with
/// the initial head), and the digest of the whole trained model the two give back. Only
/// digests and sizes, so that the bytes depend on nothing but the files.
fn write_base_record(base: &Path, out_dir: &Path) -> Result<(), StageError> {
    let (base_size, base_digest) = size_and_digest(base)?;
    let (model_size, model_digest) = size_and_digest(&out_dir.join(train::CHECKPOINT_FILE))?;
    let text = format!(
        "# The trained model is the base below with head.safetensors in place of its head:\n\
         # `pipeline export RUN -o model.safetensors` writes it whole, checked against [model].\n\
         [base]\n\
         source = \"the train stage's `model` input: the model stage's initial checkpoint (its weights, see `pipeline show RUN`)\"\n\
         blake3 = \"{base_digest}\"\n\
         size = {base_size}\n\
         \n\
         [model]\n\
         file = \"{}\"\n\
         blake3 = \"{model_digest}\"\n\
         size = {model_size}\n",
        train::CHECKPOINT_FILE
    );
    let path = out_dir.join(BASE_RECORD_FILE);
    std::fs::write(&path, text)
        .map_err(|e| StageError::msg(format!("cannot write {}: {e}", path.display())))
}
