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
               \"synthetic\" (seed, count or count_per_class = N or [N0, N1, ...], labels = the \
               classes drawn, default all). A source may name each image's group (patient) for \
               a grouped split, which index.csv then holds in a column of that name: cohen \
               group_by = \"patientid\" (a metadata column), folder group_by = \"patientid\" \
               with group_pattern = 'IM-(\\d+)-' (a regex on the file name, first capture \
               group), synthetic group_by with group_size = K (K consecutive images of a class)",
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
    ParamSpec {
        name: "allow_empty_classes",
        ty: ParamType::Bool,
        default: ParamDefault::Optional,
        help:
            "let a class have no image (an evaluation set without that class); an error by default",
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
    ParamSpec {
        name: "group_by",
        ty: ParamType::Str,
        default: ParamDefault::Optional,
        help: "a column of the load stage's index.csv (connect index = \"load.index\"): rows \
               sharing its value (a patient) stay on one side, each class's test share near \
               test_fraction; split.csv gains a group column",
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
        group_by: match params.get("group_by") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| {
                        ConfigError::new("group_by", format!("must be a column name, not {v}"))
                    })?
                    .to_owned(),
            ),
        },
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
        InputSlots::Fixed(&["labels", "index"])
    }
    /// `index` (load's index.csv) only serves `group_by`.
    fn optional_inputs(&self) -> &'static [&'static str] {
        &["index"]
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
        let Some(group_by) = cfg.group_by.clone() else {
            let result = split::split(&labels, &cfg).map_err(StageError::domain)?;
            split::write_split(&result, &labels, None, ctx.out_dir).map_err(StageError::domain)?;
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
            return Ok(report);
        };
        let index = ctx.optional_input("index").ok_or_else(|| {
            StageError::msg(format!(
                "split stage `{}`: group_by = {group_by:?} reads the groups from the load \
                 stage's index.csv, but input `index` is not connected: add index = \
                 \"load.index\" to its inputs",
                ctx.stage
            ))
        })?;
        let columns =
            split::read_index(index, &group_by, labels.len()).map_err(StageError::domain)?;
        let result = split::split_grouped(&labels, &columns.groups, &columns.classes, &cfg)
            .map_err(StageError::domain)?;
        split::write_split(&result, &labels, Some(&columns.groups), ctx.out_dir)
            .map_err(StageError::domain)?;
        Ok(grouped_report(
            &result,
            &columns.classes,
            &cfg,
            &group_by,
            ctx,
        ))
    }
}

/// A grouped split's report: the usual counts, each class's test share against the one asked
/// for (`test_share`), a warning for every class off by more than the tolerance (`warnings`,
/// also shown while the stage runs) and the groups on each side (`n_groups_train`/`_test`).
fn grouped_report(
    result: &split::Split,
    classes: &std::collections::BTreeMap<u8, String>,
    cfg: &SplitConfig,
    group_by: &str,
    ctx: &StageContext,
) -> StageReport {
    let mut report = StageReport {
        notes: notes_of(&result.counts),
        ..StageReport::default()
    };
    let shares = split::class_shares(result, classes, cfg.test_fraction);
    let lines = shares
        .iter()
        .map(|s| toml::Value::String(s.line()))
        .collect();
    report
        .notes
        .insert("test_share".into(), toml::Value::Array(lines));
    let warnings: Vec<String> = shares.iter().filter_map(|s| s.warning(group_by)).collect();
    for w in &warnings {
        ctx.progress.message(&format!("warning: {w}"));
    }
    if !warnings.is_empty() {
        report.notes.insert(
            "warnings".into(),
            toml::Value::Array(warnings.into_iter().map(toml::Value::String).collect()),
        );
    }
    report
        .notes
        .insert("group_by".into(), toml::Value::String(group_by.to_owned()));
    let metrics = [
        ("train_rows", result.train.len()),
        ("test_rows", result.test.len()),
    ]
    .into_iter()
    .chain(
        result
            .groups
            .iter()
            .flat_map(|g| [("n_groups_train", g.train), ("n_groups_test", g.test)]),
    );
    for (name, value) in metrics {
        report.metrics.insert(name.into(), value as f64);
    }
    report
}
