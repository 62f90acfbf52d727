//! `pipeline verify`: checks that a run's directory still holds what its record says, then
//! re-executes its stages from scratch in a temporary store and compares every output's
//! digest with the recorded one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::device::CPU_CLASS;
use crate::experiment::kind::Registry;
use crate::experiment::{self, Experiment, Override};
use crate::hash::{hash_regular_file, FileProblem};
use crate::repro::lock::MetricCheck;
use crate::run::error::RunError;
use crate::run::execute::{self, RunOptions};
use crate::run::reporter::Reporter;
use crate::run::store::Store;
use crate::runs::record::{device_class, RunRecord};

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
    /// Float outputs computed on another device class than the recorded ones: not compared
    /// byte for byte, but through the run's metrics ([`compare_metrics`]).
    pub via_metrics: Vec<String>,
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
                    via_metrics: Vec::new(),
                };
            }
            let old_outputs: BTreeMap<&String, &String> = old
                .map(|o| o.outputs.iter().map(|(k, v)| (k, &v.blake3)).collect())
                .unwrap_or_default();
            // A device-dependent stage computed on another device class: its float outputs
            // may round differently, legitimately.
            let other_device = old.is_some_and(|o| {
                o.device_class.as_deref().unwrap_or(CPU_CLASS)
                    != s.device_class.as_deref().unwrap_or(CPU_CLASS)
            });
            let (across, exact): (Vec<_>, Vec<_>) = s
                .outputs
                .iter()
                .filter(|(_, out)| !out.volatile)
                .partition(|(_, out)| other_device && out.floats);
            let different = exact
                .into_iter()
                .filter(|(name, out)| old_outputs.get(name) != Some(&&out.blake3))
                .map(|(name, out)| format!("{name} ({})", out.file))
                .collect();
            StageVerdict {
                stage: s.name.clone(),
                different,
                key_changed: old.is_some_and(|o| o.key != s.key),
                not_recorded: false,
                via_metrics: across
                    .into_iter()
                    .map(|(name, out)| format!("{name} ({})", out.file))
                    .collect(),
            }
        })
        .collect()
}

/// How a re-execution is compared with its run: by the device classes of the two.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Both on one device class: every output bit for bit.
    Exact { class: String },
    /// On different classes (`cpu` then `cuda-fp32`, say): float outputs of the stages whose
    /// bytes depend on the device are compared through the metrics, within `tolerance`;
    /// every other output bit for bit.
    AcrossDevices {
        recorded: String,
        fresh: String,
        tolerance: f64,
    },
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Comparison::Exact { class } => {
                write!(f, "same device class ({class}): every output compared bit for bit")
            }
            Comparison::AcrossDevices {
                recorded,
                fresh,
                tolerance,
            } => write!(
                f,
                "device class differs ({recorded} recorded, {fresh} now): float outputs of device-dependent stages compared through metrics within {tolerance}, the rest bit for bit"
            ),
        }
    }
}

/// Which comparison a re-execution `fresh` of `recorded` gets.
pub fn comparison(recorded: &RunRecord, fresh: &RunRecord, tolerance: f64) -> Comparison {
    let (a, b) = (device_class(recorded), device_class(fresh));
    if a == b {
        Comparison::Exact {
            class: a.to_string(),
        }
    } else {
        Comparison::AcrossDevices {
            recorded: a.to_string(),
            fresh: b.to_string(),
            tolerance,
        }
    }
}

/// Every recorded metric against the fresh run's, within `tolerance` (absolute).
pub fn compare_metrics(
    recorded: &RunRecord,
    fresh: &RunRecord,
    tolerance: f64,
) -> Vec<MetricCheck> {
    let now = fresh.metrics();
    recorded
        .metrics()
        .into_iter()
        .map(|(name, locked)| {
            let value = now.get(&name).copied();
            MetricCheck {
                within: value.is_some_and(|v| (v - locked).abs() <= tolerance),
                name,
                locked,
                fresh: value,
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::device::DeviceRecord;

    /// A run of one device-dependent stage `features` (float output `features`, exact output
    /// `index`) and one `evaluate` stage with an accuracy, on device class `class`.
    pub(crate) fn run_on(class: &str, features: &str, accuracy: f64) -> RunRecord {
        let text = format!(
            r#"
format = 1
id = "r-{class}"
status = "succeeded"
pid = 1
started = "now"
tool_version = "0"
data_root = "data"
no_cache = false
params = {{}}
[host]
cpu = "test"
threads = 2
os = "linux"
arch = "x86_64"
[experiment]
path = "exp.toml"
name = "exp"
digest = "00"
seed = 1
[[stages]]
name = "features"
kind = "features"
kind_version = 1
key = "k-{class}"
cache = "miss"
duration_s = 0.0
params = {{}}
device_class = "{class}"
[stages.outputs.features]
file = "features.npy"
size = 8
blake3 = "{features}"
floats = true
[stages.outputs.index]
file = "index.csv"
size = 8
blake3 = "same-index"
[[stages]]
name = "evaluate"
kind = "evaluate"
kind_version = 1
key = "e"
cache = "miss"
duration_s = 0.0
params = {{}}
[stages.metrics]
accuracy = {accuracy}
"#
        );
        let mut run: RunRecord = toml::from_str(&text).expect("a run record");
        run.device = Some(DeviceRecord {
            class: class.into(),
            requested: class.into(),
            ..DeviceRecord::default()
        });
        run
    }

    #[test]
    fn within_a_device_class_every_output_is_compared_bit_for_bit() {
        let a = run_on("cuda-fp32", "f1", 0.9);
        let b = run_on("cuda-fp32", "f2", 0.9);
        assert_eq!(
            comparison(&a, &b, 1e-3),
            Comparison::Exact {
                class: "cuda-fp32".into()
            }
        );
        let verdicts = compare(&a, &b);
        assert_eq!(verdicts[0].different, ["features (features.npy)"]);
        assert!(verdicts[0].via_metrics.is_empty());
        assert!(verdicts[1].same());
    }

    #[test]
    fn across_device_classes_float_outputs_go_through_the_metrics() {
        let cpu = run_on("cpu", "f1", 0.9);
        let gpu = run_on("cuda-fp32", "f2", 0.9004);
        let how = comparison(&cpu, &gpu, 1e-3);
        assert_eq!(
            how,
            Comparison::AcrossDevices {
                recorded: "cpu".into(),
                fresh: "cuda-fp32".into(),
                tolerance: 1e-3
            }
        );
        assert!(
            how.to_string().contains("cpu recorded, cuda-fp32 now"),
            "{how}"
        );
        let verdicts = compare(&cpu, &gpu);
        // The float output is not compared byte for byte; the exact one still is.
        assert!(verdicts[0].different.is_empty());
        assert_eq!(verdicts[0].via_metrics, ["features (features.npy)"]);
        let metrics = compare_metrics(&cpu, &gpu, 1e-3);
        assert_eq!(metrics.len(), 1);
        assert!(metrics[0].within, "{metrics:?}");
        // Beyond the tolerance: named.
        let far = run_on("cuda-tf32", "f3", 0.8);
        assert!(!compare_metrics(&cpu, &far, 1e-3)[0].within);
        // A non-float output that differs across devices is still a difference.
        let mut other_index = gpu.clone();
        other_index.stages[0]
            .outputs
            .get_mut("index")
            .expect("index")
            .blake3 = "changed".into();
        assert_eq!(
            compare(&cpu, &other_index)[0].different,
            ["index (index.csv)"]
        );
    }

    #[test]
    fn runs_recorded_before_devices_count_as_cpu() {
        let mut old = run_on("cpu", "f1", 0.9);
        old.device = None;
        old.stages[0].device_class = None;
        assert_eq!(device_class(&old), "cpu");
        let now = run_on("cpu", "f1", 0.9);
        assert!(compare(&old, &now).iter().all(|v| v.same()));
    }
}
