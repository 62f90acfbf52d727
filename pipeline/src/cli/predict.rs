//! `pipeline predict`: a recorded run's trained model on new images, preprocessed as the run
//! preprocessed its training data. The numbers come from `stages::predict`; this module only
//! reads the run record, lists the images and prints.
//!
//! For a two-class model the decision threshold is the run's own (its evaluate stage's
//! `threshold`), so `predict` labels an image as the run's predictions.csv did; it is printed
//! with what the probability is of. For three classes or more each image gets every class's
//! probability and the most probable class (ties to the lower class index); the CSV has one
//! column per class, named by the class. Class names are the model's own (its checkpoint's).
//! With `--on-bad-image skip`, an unreadable file costs only itself: it is listed on stderr
//! and in the CSV (empty probabilities, label `skipped`), and the others are predicted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use pipeline_engine::run::store::Store;
use pipeline_engine::runs::record::{RunRecord, RunStatus, StageRecord};
use stages::data::normalize::NormalizeConfig;
use stages::metrics::multiclass::predicted_class;
use stages::metrics::{predicted_label, DEFAULT_THRESHOLD};

use super::export::TrainedCheckpoint;

/// What a folder argument contributes, compared without case.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

#[derive(Args)]
pub struct PredictArgs {
    /// The run whose trained model predicts: id, unique prefix, name, latest or latest~N
    pub run: String,
    /// Image files, or folders whose .png/.jpg/.jpeg files are taken (sorted, not recursive)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Also write `image,probability,label` to FILE (two classes; for more,
    /// `image,CLASS0,CLASS1,...,label`), probabilities at full f32 precision
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// What a file that cannot be read does: `fail` stops with an error naming it, printing
    /// nothing; `skip` lists it and predicts the others (exit 0 unless none could be read)
    #[arg(long, value_enum, default_value_t = OnBadImage::Fail, value_name = "WHAT")]
    pub on_bad_image: OnBadImage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBadImage {
    Fail,
    Skip,
}

/// Where `latest` (or `latest~N`) passed over a newer run that did not succeed, a note naming
/// the run used and the newest one, with where its record is: predicting with an older model
/// than the user just trained must not go unsaid.
fn skipped_newer_runs(
    store: &Store,
    spec: &str,
    used: &RunRecord,
) -> anyhow::Result<Option<String>> {
    if !spec.starts_with("latest") {
        return Ok(None);
    }
    let runs = store.runs.summaries()?;
    let Some(newest) = runs.first() else {
        return Ok(None);
    };
    if newest.id == used.id || newest.status == RunStatus::Succeeded {
        return Ok(None);
    }
    let how = match &newest.failed_stage {
        Some(stage) => format!("{} at stage `{stage}`", newest.status_label()),
        None => newest.status_label().to_string(),
    };
    Ok(Some(format!(
        "note: using run {} ({spec}, the newest run that succeeded); the newest run, {}, {how}: \
         its record is {}",
        used.id,
        newest.id,
        store.runs.dir_of(&newest.id).join("run.toml").display()
    )))
}

/// The label written for an image that could not be read under `--on-bad-image skip`.
const SKIPPED: &str = "skipped";

pub fn predict(
    store: &Store,
    args: &PredictArgs,
    backend: &dyn stages::model::Backend,
) -> anyhow::Result<ExitCode> {
    let run = store.runs.resolve(&args.run)?;
    if let Some(note) = skipped_newer_runs(store, &args.run, &run)? {
        eprintln!("{note}");
    }
    let checkpoint = checkpoint(store, &run)?;
    let image_size = image_size(&run)?;
    let mode = normalize_config(&run)?.mode;
    let options = decode_options(&run)?;
    let images = expand(&args.images)?;
    let progress = Bar::new();
    let result = stages::predict::predict_each(
        backend,
        checkpoint.path(),
        image_size,
        mode,
        options,
        &images,
        &progress,
    );
    // Cleared before any error is printed, so the message does not land on the bar's line.
    progress.0.finish_and_clear();
    // The message already names the file and the cause; `?` would also chain the cause's
    // own source after it and print that twice.
    let each = result.map_err(|e| anyhow::Error::msg(e.to_string()))?;
    let classes = each.classes;
    let results = each.results;
    // Two classes: the run's threshold on the probability of class 1, as its evaluation.
    let decision = if classes.len() == 2 {
        Decision::Threshold(threshold(&run)?)
    } else {
        Decision::MostProbable
    };
    if args.on_bad_image == OnBadImage::Fail {
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            // All or nothing, as asked: nothing printed, and how to go on past it.
            bail!("{e} (to predict the other images anyway: --on-bad-image skip)");
        }
    }

    let rows: Vec<Row> = images
        .iter()
        .zip(results)
        .map(|(path, r)| Row {
            image: path.display().to_string(),
            outcome: r.map_err(|e| e.to_string()),
        })
        .collect();
    let skipped = rows.iter().filter(|r| r.outcome.is_err()).count();
    // The file first: when it cannot be written, the command fails having printed nothing.
    if let Some(file) = &args.csv {
        write_csv(file, &rows, &classes, &decision)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    match &decision {
        Decision::Threshold((threshold, threshold_from)) => eprintln!(
            "probability of {} per image; labelled {} above {threshold} ({threshold_from})",
            classes[1], classes[1]
        ),
        Decision::MostProbable => eprintln!(
            "per image: the most probable class, then each class's probability ({})",
            classes.join(", ")
        ),
    }
    for row in &rows {
        if let Ok(p) = &row.outcome {
            match &decision {
                Decision::Threshold((threshold, _)) => println!(
                    "{}\t{:.6}\t{}",
                    row.image,
                    p[1],
                    label_of(p, &classes, &decision, *threshold)
                ),
                Decision::MostProbable => {
                    let each: Vec<String> = classes
                        .iter()
                        .zip(p)
                        .map(|(name, q)| format!("{name} {q:.6}"))
                        .collect();
                    println!(
                        "{}\t{}\t{}",
                        row.image,
                        label_of(p, &classes, &decision, 0.0),
                        each.join("\t")
                    );
                }
            }
        }
    }
    if skipped > 0 {
        eprintln!(
            "skipped {skipped} of {} images that could not be read:",
            rows.len()
        );
        for row in &rows {
            if let Err(e) = &row.outcome {
                eprintln!("  {e}");
            }
        }
        if skipped == rows.len() {
            bail!("none of the {} images could be read", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One image's outcome: every class's probability, or why it could not be read.
struct Row {
    image: String,
    outcome: Result<Vec<f32>, String>,
}

/// How an image's class is decided.
enum Decision {
    /// Two classes: class 1 where its probability is above the run's threshold (and where
    /// the threshold comes from).
    Threshold((f32, String)),
    /// More: the most probable class.
    MostProbable,
}

fn label_of<'a>(p: &[f32], classes: &'a [String], decision: &Decision, threshold: f32) -> &'a str {
    match decision {
        Decision::Threshold(_) => &classes[usize::from(predicted_label(p[1], threshold))],
        Decision::MostProbable => &classes[predicted_class(p)],
    }
}

/// The run's decision threshold and where it comes from: the evaluate stage that scored the
/// test split (the one with a `test` input), else the only evaluate stage, else the default.
fn threshold(run: &RunRecord) -> anyhow::Result<(f32, String)> {
    let evaluates: Vec<&StageRecord> = run.stages.iter().filter(|s| s.kind == "evaluate").collect();
    let stage = evaluates
        .iter()
        .find(|s| s.inputs.contains_key("test"))
        .or(evaluates.first());
    let Some(stage) = stage else {
        return Ok((
            DEFAULT_THRESHOLD,
            format!("the default: run {} has no evaluate stage", run.id),
        ));
    };
    let value = stage
        .params
        .get("threshold")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .with_context(|| {
            format!(
                "run {}: stage `{}` records no valid threshold",
                run.id, stage.name
            )
        })?;
    Ok((
        value as f32,
        format!("the threshold of the run's `{}` stage", stage.name),
    ))
}

/// The stage of `kind` (`normalize` or `load`) that prepared the images the model trained on:
/// followed back from the train stage's `images` input, so that a run with other load stages
/// (an external evaluation set's, say) still names the right one. A record without that
/// chain falls back to the one stage of the kind.
fn preprocessing<'a>(run: &'a RunRecord, kind: &str) -> anyhow::Result<&'a StageRecord> {
    let producer = |stage: &StageRecord| -> Option<&'a StageRecord> {
        let from = &stage.inputs.get("images")?.from;
        let name = from.split_once('.').map_or(from.as_str(), |(s, _)| s);
        run.stage(name)
    };
    let mut at = run.stages.iter().find(|s| s.kind == "train");
    while let Some(stage) = at {
        if stage.kind == kind {
            return Ok(stage);
        }
        at = producer(stage);
    }
    stage_of_kind(run, kind)
}

/// The one stage of `kind`: preprocessing is found by what stages do, not what they are called.
pub(super) fn stage_of_kind<'a>(run: &'a RunRecord, kind: &str) -> anyhow::Result<&'a StageRecord> {
    let found: Vec<&StageRecord> = run.stages.iter().filter(|s| s.kind == kind).collect();
    match found.as_slice() {
        [stage] => Ok(stage),
        [] => bail!("run {} has no `{kind}` stage", run.id),
        // Which of them fed the model is a question the record does not answer directly.
        many => bail!(
            "run {} has several `{kind}` stages ({}): cannot tell which one to follow",
            run.id,
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The trained model as one file: the run directory's whole checkpoint, or its head put back
/// on its base from the store, written whole under the cache's `tmp/` (removed when
/// dropped); each checked against its recorded digest.
enum Checkpoint {
    Published(PathBuf),
    Assembled(tempfile::TempPath),
}

impl Checkpoint {
    fn path(&self) -> &Path {
        match self {
            Checkpoint::Published(path) => path,
            Checkpoint::Assembled(path) => path,
        }
    }
}

fn checkpoint(store: &Store, run: &RunRecord) -> anyhow::Result<Checkpoint> {
    let trained = TrainedCheckpoint::of(store, run)?;
    if let Some(path) = trained.published() {
        return Ok(Checkpoint::Published(path.to_path_buf()));
    }
    let tmp = store.cache.root().join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let path = tempfile::Builder::new()
        .prefix("predict.")
        .suffix(".safetensors")
        .tempfile_in(&tmp)
        .with_context(|| format!("cannot create a file in {}", tmp.display()))?
        .into_temp_path();
    trained.write_to(&path)?;
    Ok(Checkpoint::Assembled(path))
}

fn image_size(run: &RunRecord) -> anyhow::Result<u32> {
    let load = preprocessing(run, "load")?;
    load.params
        .get("image_size")
        .and_then(toml::Value::as_integer)
        .and_then(|v| u32::try_from(v).ok())
        .with_context(|| {
            format!(
                "run {}: stage `{}` records no valid image_size",
                run.id, load.name
            )
        })
}

/// Images are read as strictly as the run's load stage read them: truncated images only if
/// it allowed them.
fn decode_options(run: &RunRecord) -> anyhow::Result<stages::data::DecodeOptions> {
    let load = preprocessing(run, "load")?;
    Ok(stages::data::DecodeOptions {
        allow_truncated: load
            .params
            .get("allow_truncated_images")
            .and_then(toml::Value::as_bool)
            .unwrap_or(false),
    })
}

fn normalize_config(run: &RunRecord) -> anyhow::Result<NormalizeConfig> {
    let stage = preprocessing(run, "normalize")?;
    // The recorded parameters are the effective ones, so the stage's own config type reads
    // them with the same defaults and spelling the stage accepted.
    stage.params.clone().try_into().with_context(|| {
        format!(
            "run {}: stage `{}` has unreadable parameters",
            run.id, stage.name
        )
    })
}

/// Files as given; folders replaced by their image files, sorted by name.
fn expand(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for arg in args {
        if !arg.is_dir() {
            // A missing or unreadable file is reported by the decoder, naming it.
            images.push(arg.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
            .with_context(|| format!("cannot read the folder {}", arg.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read the folder {}", arg.display()))?
            .into_iter()
            // By name only, not by type: a FIFO, a device or a dangling link named like an
            // image goes to the decoder, which refuses it without reading and names why, so
            // `--on-bad-image skip` lists it like any other bad image. Only subfolders are
            // left out: the folder is not searched recursively.
            .filter(|p| !p.is_dir() && is_image_name(p))
            .collect();
        if found.is_empty() {
            return Err(crate::usage::UsageError(format!(
                "the folder {} holds no .png, .jpg or .jpeg images",
                arg.display()
            ))
            .into());
        }
        found.sort();
        images.extend(found);
    }
    Ok(images)
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn write_csv(
    file: &Path,
    rows: &[Row],
    classes: &[String],
    decision: &Decision,
) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(file)?;
    match decision {
        Decision::Threshold((threshold, _)) => {
            out.write_record(["image", "probability", "label"])?;
            for row in rows {
                match &row.outcome {
                    // Shortest round-trip form, as the evaluate stage's predictions.csv.
                    Ok(p) => out.write_record([
                        row.image.as_str(),
                        &p[1].to_string(),
                        label_of(p, classes, decision, *threshold),
                    ])?,
                    Err(_) => out.write_record([row.image.as_str(), "", SKIPPED])?,
                }
            }
        }
        Decision::MostProbable => {
            let mut header = vec!["image"];
            header.extend(classes.iter().map(String::as_str));
            header.push("label");
            out.write_record(&header)?;
            for row in rows {
                let mut record = vec![row.image.clone()];
                match &row.outcome {
                    Ok(p) => {
                        record.extend(p.iter().map(|q| q.to_string()));
                        record.push(label_of(p, classes, decision, 0.0).to_string());
                    }
                    Err(_) => {
                        record.extend(classes.iter().map(|_| String::new()));
                        record.push(SKIPPED.to_string());
                    }
                }
                out.write_record(&record)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} images")
        {
            bar.set_style(style);
        }
        Bar(bar)
    }
}

impl stages::progress::Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        self.0.set_message(phase.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, _text: &str) {}
}
