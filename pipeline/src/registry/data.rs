//! Adapters for the data stages: `load`, `normalize`, `split`.

use std::path::{Path, PathBuf};

use stages::data::load::{self, LoadConfig};
use stages::data::normalize::{self, NormalizeConfig};
use stages::data::split::{self, SplitConfig};
use stages::validate::ConfigError;

use super::{config, float, notes_of, problem, run_config, unsigned, Progress};
use pipeline_engine::experiment::kind::{
    InputSlots, OutputSpec, ParamDefault, ParamProblem, ParamSpec, ParamType, Params, StageContext,
    StageError, StageKind, StageReport,
};

pub struct Load;

const LOAD_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "image_size",
        ty: ParamType::Int,
        default: ParamDefault::Required,
        help: "side of the square every image is resized to",
    },
    ParamSpec {
        name: "sources",
        ty: ParamType::Any,
        default: ParamDefault::Required,
        help: "[[sources]] tables, each with a `type`: type = \"cohen\" (path, label, metadata, \
               images_dir, filename_column, filters = { column = \"value\" or [\"a\", \"b\"] }, \
               exclude_extensions = [\".gz\"]), type = \"folder\" (path, label, limit = N: the \
               first N files by name, extensions), type = \"npy\" (images, labels), type = \
               \"synthetic\" (seed, count or count_per_class)",
    },
    ParamSpec {
        name: "classes",
        ty: ParamType::StrList,
        default: ParamDefault::Optional,
        help: "class names, label i = classes[i] (default [\"NORMAL\", \"COVID\"])",
    },
    ParamSpec {
        name: "on_bad_image",
        ty: ParamType::Choice(&["error", "skip"]),
        default: ParamDefault::Str("error"),
        help: "stop on an unreadable image, or leave it out and list it in skipped.csv",
    },
    ParamSpec {
        name: "allow_truncated_images",
        ty: ParamType::Bool,
        default: ParamDefault::Bool(false),
        help: "load JPEGs cut short (the missing part gray) instead of treating them as bad images",
    },
    ParamSpec {
        name: "allow_outside_data_root",
        ty: ParamType::Bool,
        default: ParamDefault::Bool(false),
        help: "follow symbolic links that lead out of the data root (refused by default)",
    },
];

impl StageKind for Load {
    fn name(&self) -> &'static str {
        "load"
    }
    fn version(&self) -> u32 {
        // 2: truncated JPEGs, decompression bombs, stray CSV quotes and links out of the data
        // root became errors; a result cached from such input must not be reused.
        // 3: the synthetic source draws other images (a learnable task, see synthetic.rs).
        // 4: quotes checked on the raw bytes (an unclosed quote on the last row, text after a
        // closing quote, a field over two lines): a result cached from such a file must not
        // be served again without the error.
        4
    }
    fn summary(&self) -> &'static str {
        "decodes and resizes chest X-rays into images.npy + labels.npy"
    }
    fn params(&self) -> &'static [ParamSpec] {
        LOAD_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&[])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("images", "images.npy", false),
            OutputSpec::new("labels", "labels.npy", false),
            OutputSpec::new("index", "index.csv", true),
            OutputSpec::new("skipped", "skipped.csv", true),
        ]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        // A size that does not fit the config's type is the user's mistake on `image_size`.
        unsigned::<u32>(params, "image_size").map_err(problem)?;
        // What else fails to deserialize is in the nested `sources` tables.
        let cfg: LoadConfig = config(params).map_err(|message| ParamProblem {
            param: "sources".into(),
            message,
        })?;
        cfg.validate().map_err(problem)
    }
    fn external_files(
        &self,
        params: &Params,
        data_root: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        let cfg: LoadConfig = run_config(params)?;
        load::input_files(&cfg, data_root).map_err(StageError::domain)
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg: LoadConfig = run_config(ctx.params)?;
        let report = load::load(&cfg, ctx.data_root, ctx.out_dir, &Progress(ctx.progress))
            .map_err(StageError::domain)?;
        let mut out = StageReport {
            notes: notes_of(&report),
            ..StageReport::default()
        };
        out.metrics.insert("images".into(), report.images as f64);
        Ok(out)
    }
}

pub struct Normalize;

const NORMALIZE_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "mode",
    ty: ParamType::Choice(&["scale", "imagenet", "caffe"]),
    default: ParamDefault::Str("scale"),
    help: "scale: x/255; imagenet: torchvision mean/std; caffe: BGR minus Keras' VGG16 means",
}];

impl StageKind for Normalize {
    fn name(&self) -> &'static str {
        "normalize"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "turns uint8 images into float32 model inputs"
    }
    fn params(&self) -> &'static [ParamSpec] {
        NORMALIZE_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["images"])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("images", "images.npy", false).floats()]
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg: NormalizeConfig = run_config(ctx.params)?;
        let report =
            normalize::normalize_file(ctx.input("images")?, cfg.mode, &ctx.output("images.npy"))
                .map_err(StageError::domain)?;
        Ok(StageReport {
            notes: notes_of(&report),
            ..StageReport::default()
        })
    }
}

pub struct Split;

const SPLIT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "test_fraction",
        ty: ParamType::Float,
        default: ParamDefault::Float(0.2),
        help: "share of the rows held out for test (rounded up, as scikit-learn)",
    },
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        default: ParamDefault::Int(40),
        help: "seed of the shuffle (the seed recipe's random_state = 40)",
    },
    ParamSpec {
        name: "stratify",
        ty: ParamType::Bool,
        default: ParamDefault::Bool(false),
        help: "keep each class's proportion on both sides",
    },
];

/// The stage's parameters as the domain's config, validated by its own `validate`: every
/// problem names the parameter at fault.
fn split_config(params: &Params) -> Result<SplitConfig, ConfigError> {
    let cfg = SplitConfig {
        test_fraction: float(params, "test_fraction")?,
        seed: unsigned(params, "seed")?,
        stratify: params
            .bool("stratify")
            .map_err(|e| ConfigError::new("stratify", e.to_string()))?,
    };
    cfg.validate()?;
    Ok(cfg)
}

impl StageKind for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "splits rows into train and test, seeded and independent of thread count"
    }
    fn params(&self) -> &'static [ParamSpec] {
        SPLIT_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["labels"])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("train", "train_index.npy", false),
            OutputSpec::new("test", "test_index.npy", false),
            OutputSpec::new("table", "split.csv", true),
        ]
    }
    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        split_config(params).map(|_| ()).map_err(problem)
    }
    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let cfg = split_config(ctx.params).map_err(StageError::domain)?;
        let labels = split::read_labels(ctx.input("labels")?).map_err(StageError::domain)?;
        let result = split::split(&labels, &cfg).map_err(StageError::domain)?;
        split::write_split(&result, &labels, ctx.out_dir).map_err(StageError::domain)?;
        let mut report = StageReport {
            notes: notes_of(&result.counts),
            ..StageReport::default()
        };
        report
            .metrics
            .insert("train_rows".into(), result.train.len() as f64);
        report
            .metrics
            .insert("test_rows".into(), result.test.len() as f64);
        Ok(report)
    }
}
