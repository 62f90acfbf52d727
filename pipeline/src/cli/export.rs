//! `pipeline export`: a run's whole trained checkpoint, PyTorch-loadable, as one file. A
//! frozen-base run directory holds only the head (`head.safetensors`) and a record of its
//! base (`base.toml`); the whole model is the base, found in the store by its digest, with
//! that head in place of its own, checked against the digest the run recorded for it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use pipeline_engine::repro::verify::check_recorded;
use pipeline_engine::run::store::Store;
use pipeline_engine::runs::record::{OutputRecord, RunRecord, StageRecord};
use pipeline_engine::store::cas::short;
use stages::model::checkpoint;

use super::predict::stage_of_kind;
use stages::train::{CHECKPOINT_FILE, HEAD_FILE};

#[derive(Args)]
pub struct ExportArgs {
    /// The run: id, unique prefix, name, latest or latest~N
    pub run: String,
    /// Where to write the checkpoint
    #[arg(short, long, value_name = "FILE", default_value = CHECKPOINT_FILE)]
    pub output: PathBuf,
    /// Replace FILE if it exists
    #[arg(long)]
    pub force: bool,
}

pub fn export(store: &Store, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let run = store.runs.resolve(&args.run)?;
    if !args.force && fs::symlink_metadata(&args.output).is_ok() {
        bail!(
            "{} exists: pass --force to replace it, or -o FILE to write elsewhere",
            args.output.display()
        );
    }
    let trained = TrainedCheckpoint::of(store, &run)?;
    trained.write_to(&args.output)?;
    eprintln!(
        "wrote {} ({} bytes, blake3 {}): run {}'s trained model",
        args.output.display(),
        trained.size,
        short(&trained.blake3),
        run.id
    );
    Ok(ExitCode::SUCCESS)
}

/// Where a run's trained model comes from, every file checked against its recorded digest.
pub struct TrainedCheckpoint {
    from: Source,
    /// The whole checkpoint's digest and size, as `run.toml` records them.
    pub blake3: String,
    pub size: u64,
}

enum Source {
    /// Published whole in the run directory (a fine-tuned run, or one from before heads were
    /// published alone).
    Whole(PathBuf),
    /// The head in the run directory, the checkpoint it was trained from in the store.
    Head { head: PathBuf, base: PathBuf },
}

/// Removes a partly written file unless it was kept.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

impl TrainedCheckpoint {
    /// The run's trained checkpoint, the run directory's files checked against `run.toml`
    /// and the base against its digest in the store.
    pub fn of(store: &Store, run: &RunRecord) -> anyhow::Result<TrainedCheckpoint> {
        let missing = || {
            anyhow::anyhow!(
                "run {} has no trained checkpoint (no `train` stage published {CHECKPOINT_FILE})",
                run.id
            )
        };
        // A run that failed or was interrupted before training has no `train` stage recorded.
        if !run.stages.iter().any(|s| s.kind == "train") {
            return Err(missing());
        }
        let train = stage_of_kind(run, "train")?;
        let model = train
            .outputs
            .values()
            .find(|o| o.file == CHECKPOINT_FILE)
            .ok_or_else(missing)?;
        let (blake3, size) = (model.blake3.clone(), model.size);
        if model.published.is_some() {
            let path = published_checked(store, run, model)?;
            return Ok(TrainedCheckpoint {
                from: Source::Whole(path),
                blake3,
                size,
            });
        }
        let head_output = train
            .outputs
            .values()
            .find(|o| o.file == HEAD_FILE && o.published.is_some())
            .ok_or_else(missing)?;
        let head = published_checked(store, run, head_output)?;
        let base = base_in_store(store, run, train)?;
        Ok(TrainedCheckpoint {
            from: Source::Head { head, base },
            blake3,
            size,
        })
    }

    /// The run directory's whole checkpoint, already checked, where it holds one.
    pub fn published(&self) -> Option<&Path> {
        match &self.from {
            Source::Whole(path) => Some(path),
            Source::Head { .. } => None,
        }
    }

    /// Writes the checkpoint to `dest`: under a temporary name beside it, checked against the
    /// recorded digest, then renamed, so `dest` is never a partial or wrong file.
    pub fn write_to(&self, dest: &Path) -> anyhow::Result<()> {
        let name = dest
            .file_name()
            .with_context(|| format!("{} names no file", dest.display()))?
            .to_string_lossy()
            .into_owned();
        let partial = dest.with_file_name(format!(".{name}.partial.{}", std::process::id()));
        let mut guard = Partial(Some(partial.clone()));
        let _ = fs::remove_file(&partial);
        match &self.from {
            Source::Whole(path) => {
                fs::copy(path, &partial).with_context(|| {
                    format!("cannot write {} from {}", partial.display(), path.display())
                })?;
            }
            Source::Head { head, base } => {
                let model = checkpoint::with_head(base, head)?;
                checkpoint::save(&model, &partial)?;
            }
        }
        if let Err(how) = check_recorded(&partial, Some(self.size), &self.blake3) {
            bail!(
                "the checkpoint written to {} does not match the digest run.toml records for it{how}; nothing was written",
                partial.display()
            );
        }
        fs::rename(&partial, dest).with_context(|| {
            format!("cannot rename {} to {}", partial.display(), dest.display())
        })?;
        guard.0 = None;
        Ok(())
    }
}

/// The run directory's copy of `output`, checked against its recorded digest.
fn published_checked(
    store: &Store,
    run: &RunRecord,
    output: &OutputRecord,
) -> anyhow::Result<PathBuf> {
    let name = output.published.as_deref().unwrap_or(&output.file);
    let path = store.runs.dir_of(&run.id).join(name);
    if !path.is_file() {
        bail!("run {}: {} is missing", run.id, path.display());
    }
    if let Err(how) = check_recorded(&path, Some(output.size), &output.blake3) {
        bail!(
            "run {}: {} does not match the digest recorded in run.toml (altered or damaged since the run){how}",
            run.id,
            path.display()
        );
    }
    Ok(path)
}

/// The checkpoint the head was trained from (the train stage's `model` input), found in the
/// store by its digest and checked there.
fn base_in_store(store: &Store, run: &RunRecord, train: &StageRecord) -> anyhow::Result<PathBuf> {
    let input = train.inputs.get("model").with_context(|| {
        format!(
            "run {}: stage `{}` records no `model` input",
            run.id, train.name
        )
    })?;
    // The size is the producing stage's record of that output (`model.model`).
    let size = input
        .from
        .split_once('.')
        .and_then(|(stage, output)| run.stage(stage)?.outputs.get(output))
        .filter(|o| o.blake3 == input.digest)
        .map(|o| o.size)
        .with_context(|| {
            format!(
                "run {}: the base `{}` of stage `{}` is not recorded in run.toml",
                run.id, input.from, train.name
            )
        })?;
    store
        .cache
        .blobs()
        .stored(&input.digest, size)
        .map_err(|why| {
            anyhow::anyhow!(
                "run {}: the base checkpoint ({}, blake3 {}) {why} (removed by gc?): run the experiment again to store it, then export",
                run.id,
                input.from,
                short(&input.digest)
            )
        })
}
