//! `pipeline verify`: checks that a run's directory still holds what its record says, then
//! re-executes its stages from scratch in a temporary store and compares every output's
//! digest with the recorded one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::execute::{self, Reporter, RunError, RunOptions, Store};
use crate::experiment::{self, Experiment, Override};
use crate::hash::{hash_regular_file, FileProblem};
use crate::kind::Registry;
use crate::record::RunRecord;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot rebuild the run's experiment: {0}")]
    Experiment(String),
    /// The recorded experiment no longer validates (a kind changed, or shell stages are not
    /// allowed): the user's to fix, as for any experiment file.
    #[error("cannot rebuild the run's experiment: {0}")]
    Invalid(#[source] crate::diagnostic::ExperimentError),
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
    /// The run has no result for this stage: it failed or was interrupted before it.
    pub not_recorded: bool,
}

impl StageVerdict {
    /// Reproduced, or nothing recorded to compare with.
    pub fn same(&self) -> bool {
        self.different.is_empty()
    }
}

/// How a file differs from what a record says of it.
#[derive(Debug)]
pub enum Discrepancy {
    /// A regular file of the recorded size, with other bytes.
    Bytes,
    /// Missing, not a regular file, another size, or unreadable.
    File(FileProblem),
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discrepancy::Bytes => Ok(()),
            Discrepancy::File(problem) => write!(f, ": it {problem}"),
        }
    }
}

/// Checks a file against a recorded size (when known) and blake3 digest (hex). Type and size
/// come first, so a link to a device or a FIFO is reported without being read.
pub fn check_recorded(path: &Path, size: Option<u64>, blake3: &str) -> Result<(), Discrepancy> {
    let digest = hash_regular_file(path, size).map_err(Discrepancy::File)?;
    if digest.to_hex().as_str() == blake3 {
        Ok(())
    } else {
        Err(Discrepancy::Bytes)
    }
}

/// A file of a run directory that no longer matches `run.toml`.
#[derive(Debug)]
pub struct Altered {
    /// Its name in the run directory.
    pub file: String,
    pub how: Discrepancy,
}

impl fmt::Display for Altered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not match the digest recorded in run.toml{}",
            self.file, self.how
        )
    }
}

/// The files of a run directory that differ from its record: the experiment's copy, then
/// every published output in stage order. Volatile outputs are checked too: they may differ
/// between executions, not after one.
pub fn altered_files(record: &RunRecord, run_dir: &Path) -> Vec<Altered> {
    let mut expected: Vec<(String, Option<u64>, &str)> = vec![(
        "experiment.toml".into(),
        None,
        record.experiment.digest.as_str(),
    )];
    for stage in &record.stages {
        for output in stage.outputs.values() {
            if let Some(name) = &output.published {
                expected.push((name.clone(), Some(output.size), output.blake3.as_str()));
            }
        }
    }
    expected
        .into_iter()
        .filter_map(|(file, size, digest)| {
            check_recorded(&run_dir.join(&file), size, digest)
                .err()
                .map(|how| Altered { file, how })
        })
        .collect()
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
    .map_err(VerifyError::Invalid)?;
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
            if old.is_none() {
                // Nothing to compare with: not a difference, which would be a false alarm.
                return StageVerdict {
                    stage: s.name.clone(),
                    different: Vec::new(),
                    key_changed: false,
                    not_recorded: true,
                };
            }
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
                not_recorded: false,
            }
        })
        .collect()
}
