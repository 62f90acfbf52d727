//! `pipeline verify`: re-executes a run's stages from scratch in a temporary store and
//! compares every output's digest with the recorded one.

use std::collections::BTreeMap;
use std::path::Path;

use crate::execute::{self, Reporter, RunError, RunOptions, Store};
use crate::experiment::{self, Experiment, Override};
use crate::kind::Registry;
use crate::record::RunRecord;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot rebuild the run's experiment: {0}")]
    Experiment(String),
    #[error("cannot create a temporary store in {path}: {source}")]
    TempStore {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("re-executing the run failed: {0}")]
    Run(#[from] RunError),
}

/// The verdict on one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageVerdict {
    pub stage: String,
    /// Outputs whose bytes differ from the recorded ones.
    pub different: Vec<String>,
    /// The stage's key differs from the recorded one (its kind changed since the run).
    pub key_changed: bool,
}

impl StageVerdict {
    pub fn same(&self) -> bool {
        self.different.is_empty()
    }
}

/// Rebuilds the experiment a run executed, from the copy and the overrides it recorded.
pub fn experiment_of(
    record: &RunRecord,
    run_dir: &Path,
    registry: &Registry,
) -> Result<Experiment, VerifyError> {
    let path = run_dir.join("experiment.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| VerifyError::Experiment(format!("{}: {e}", path.display())))?;
    let overrides = record
        .experiment
        .overrides
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(VerifyError::Experiment)?;
    let mut exp = experiment::parse(
        Path::new(&record.experiment.path),
        &text,
        &overrides,
        registry,
    )
    .map_err(|e| VerifyError::Experiment(e.to_string()))?;
    exp.path = record.experiment.path.clone().into();
    Ok(exp)
}

/// Runs `exp` with no cache into a fresh store under `scratch_parent`, which is removed
/// afterwards, and returns the new run's record.
pub fn rerun_from_scratch(
    exp: &Experiment,
    registry: &Registry,
    scratch_parent: &Path,
    opts: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<RunRecord, VerifyError> {
    std::fs::create_dir_all(scratch_parent).map_err(|source| VerifyError::TempStore {
        path: scratch_parent.to_path_buf(),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(scratch_parent)
        .map_err(|source| VerifyError::TempStore {
            path: scratch_parent.to_path_buf(),
            source,
        })?;
    let store = Store::open(scratch.path())?;
    let opts = RunOptions {
        no_cache: true,
        data_root: opts.data_root.clone(),
        project_root: opts.project_root.clone(),
        name: opts.name.clone(),
    };
    Ok(execute::run(exp, registry, &store, &opts, reporter)?)
}

/// Compares a fresh execution with the recorded run, stage by stage.
pub fn compare(recorded: &RunRecord, fresh: &RunRecord) -> Vec<StageVerdict> {
    fresh
        .stages
        .iter()
        .map(|s| {
            let old = recorded.stage(&s.name);
            let old_outputs: BTreeMap<&String, &String> = old
                .map(|o| o.outputs.iter().map(|(k, v)| (k, &v.blake3)).collect())
                .unwrap_or_default();
            let different = s
                .outputs
                .iter()
                .filter(|(_, out)| !out.volatile)
                .filter(|(name, out)| old_outputs.get(name) != Some(&&out.blake3))
                .map(|(name, out)| format!("{name} ({})", out.file))
                .collect();
            StageVerdict {
                stage: s.name.clone(),
                different,
                key_changed: old.is_some_and(|o| o.key != s.key),
            }
        })
        .collect()
}
