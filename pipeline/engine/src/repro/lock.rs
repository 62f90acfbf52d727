//! Lock files (`EXP.lock`): the stage keys, output digests and headline metrics of an
//! experiment, meant to be committed, as DVC users commit `dvc.lock`. `pipeline verify --lock`
//! reruns the experiment from scratch and compares with it.
//!
//! Integer and byte outputs must match exactly everywhere. Floating-point outputs must match
//! exactly on a CPU with the same vector instruction set; on another one (AVX2 instead of
//! AVX-512, say) rounding may legitimately differ, so they are compared through the metrics,
//! within the tolerance the lock file states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiment::Experiment;
use crate::runs::record::RunRecord;

pub const LOCK_FORMAT: u32 = 1;

/// The default absolute tolerance for metrics when float outputs cannot be compared exactly.
pub const DEFAULT_METRIC_TOLERANCE: f64 = 1e-3;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read the lock file {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The lock could not be put into TOML: a write failure, reported as one.
    #[error("cannot write {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedOutput {
    pub file: String,
    pub blake3: String,
    /// Floating-point data, whose bytes depend on the instruction set.
    pub floats: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedStage {
    pub name: String,
    pub key: String,
    pub outputs: BTreeMap<String, LockedOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub format: u32,
    /// The experiment file, relative to the lock file's folder.
    pub experiment: String,
    pub experiment_digest: String,
    pub tool_version: String,
    pub cpu: String,
    /// Vector instruction sets of the CPU that produced the digests.
    pub isa: Vec<String>,
    /// Largest allowed absolute difference of a metric where floats are not compared exactly.
    pub metric_tolerance: f64,
    pub metrics: BTreeMap<String, f64>,
    pub stages: Vec<LockedStage>,
    /// The device class that produced the digests (`cpu`, `cuda-fp32`, `cuda-tf32`); locks
    /// from before devices were recorded were made on the CPU.
    #[serde(default = "cpu_class")]
    pub device_class: String,
}

fn cpu_class() -> String {
    crate::device::CPU_CLASS.to_string()
}

/// The vector instruction sets that change float rounding in our kernels.
pub fn current_isa() -> Vec<String> {
    let mut isa = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            isa.push("avx512f".to_string());
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            isa.push("avx2".to_string());
        }
        if std::arch::is_x86_feature_detected!("fma") {
            isa.push("fma".to_string());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    isa.push(std::env::consts::ARCH.to_string());
    isa
}

/// `experiments/x.toml` -> `experiments/x.lock`.
pub fn lock_path(experiment: &Path) -> PathBuf {
    experiment.with_extension("lock")
}

/// Builds the lock of a finished run of `exp`.
pub fn from_run(exp: &Experiment, run: &RunRecord, experiment_file_name: &str) -> LockFile {
    LockFile {
        format: LOCK_FORMAT,
        experiment: experiment_file_name.to_string(),
        experiment_digest: exp.digest.to_hex().to_string(),
        tool_version: run.tool_version.clone(),
        cpu: run.host.cpu.clone(),
        isa: current_isa(),
        metric_tolerance: DEFAULT_METRIC_TOLERANCE,
        metrics: run.metrics(),
        device_class: crate::runs::record::device_class(run).to_string(),
        stages: run
            .stages
            .iter()
            .map(|s| LockedStage {
                name: s.name.clone(),
                key: s.key.clone(),
                outputs: s
                    .outputs
                    .iter()
                    .filter(|(_, o)| !o.volatile)
                    .map(|(name, o)| {
                        let floats = exp
                            .stage(&s.name)
                            .and_then(|st| st.outputs.iter().find(|spec| &spec.name == name))
                            .is_some_and(|spec| spec.floats);
                        (
                            name.clone(),
                            LockedOutput {
                                file: o.file.clone(),
                                blake3: o.blake3.clone(),
                                floats,
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn write(lock: &LockFile, path: &Path) -> Result<(), LockError> {
    write_showing(lock, path, &path.display().to_string())
}

/// [`write()`], with the lock file's path as the header should show it (relative to the
/// project root, from where `pipeline verify --lock PATH` is typed).
pub fn write_showing(lock: &LockFile, path: &Path, shown: &str) -> Result<(), LockError> {
    let body = toml::to_string(lock).map_err(|e| encode_error(path, &e))?;
    let text = format!(
        "# Written by `pipeline lock`; commit it. `pipeline verify --lock {shown}` (from the\n\
         # project root) reruns the experiment from scratch and compares its outputs with these\n\
         # digests.\n{body}"
    );
    let tmp = path.with_extension("lock.tmp");
    std::fs::write(&tmp, text).map_err(|source| LockError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| LockError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn encode_error(path: &Path, e: &toml::ser::Error) -> LockError {
    LockError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub fn read(path: &Path) -> Result<LockFile, LockError> {
    let text = std::fs::read_to_string(path).map_err(|e| LockError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| LockError::Read {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// How one output was checked against the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Digests compared: equal or not.
    Exact { equal: bool },
    /// Float data from another instruction set: covered by the metric comparison.
    ViaMetrics,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputCheck {
    pub stage: String,
    pub output: String,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheck {
    pub name: String,
    pub locked: f64,
    pub fresh: Option<f64>,
    pub within: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockReport {
    pub same_isa: bool,
    /// The fresh run computed on the lock's device class.
    pub same_device: bool,
    pub outputs: Vec<OutputCheck>,
    pub metrics: Vec<MetricCheck>,
}

impl LockReport {
    pub fn passed(&self) -> bool {
        self.outputs
            .iter()
            .all(|o| o.check != Check::Exact { equal: false })
            && self.metrics.iter().all(|m| m.within)
    }
}

/// Compares a fresh run with the lock.
pub fn check(lock: &LockFile, fresh: &RunRecord) -> LockReport {
    let same_isa = lock.isa == current_isa();
    let same_device = lock.device_class == crate::runs::record::device_class(fresh);
    let mut outputs = Vec::new();
    for stage in &lock.stages {
        let run_stage = fresh.stage(&stage.name);
        for (name, locked) in &stage.outputs {
            let digest = run_stage
                .and_then(|s| s.outputs.get(name))
                .map(|o| &o.blake3);
            let check = if locked.floats && !(same_isa && same_device) {
                Check::ViaMetrics
            } else {
                Check::Exact {
                    equal: digest == Some(&locked.blake3),
                }
            };
            outputs.push(OutputCheck {
                stage: stage.name.clone(),
                output: name.clone(),
                check,
            });
        }
    }
    let fresh_metrics = fresh.metrics();
    let tolerance = if same_isa && same_device {
        0.0
    } else {
        lock.metric_tolerance
    };
    let metrics = lock
        .metrics
        .iter()
        .map(|(name, locked)| {
            let value = fresh_metrics.get(name).copied();
            MetricCheck {
                name: name.clone(),
                locked: *locked,
                fresh: value,
                within: value.is_some_and(|v| (v - locked).abs() <= tolerance),
            }
        })
        .collect();
    LockReport {
        same_isa,
        same_device,
        outputs,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_lock() -> LockFile {
        LockFile {
            format: LOCK_FORMAT,
            experiment: "exp.toml".into(),
            experiment_digest: "00".into(),
            tool_version: "0".into(),
            cpu: "test".into(),
            isa: current_isa(),
            metric_tolerance: DEFAULT_METRIC_TOLERANCE,
            metrics: BTreeMap::from([("accuracy".to_string(), 0.5)]),
            stages: Vec::new(),
            device_class: "cpu".into(),
        }
    }

    #[test]
    fn failures_to_write_say_write_and_failures_to_read_say_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exp.lock");
        write(&small_lock(), &path).expect("written");
        assert_eq!(read(&path).expect("read back"), small_lock());

        let absent_dir = dir.path().join("absent/exp.lock");
        let e = write(&small_lock(), &absent_dir).unwrap_err().to_string();
        assert!(e.starts_with("cannot write "), "{e}");
        let e = read(&absent_dir).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the lock file "), "{e}");

        // A value TOML cannot hold at the top level: what `write` reports when encoding fails.
        let encoding = toml::to_string(&1u8).expect_err("not a table");
        let e = encode_error(&path, &encoding).to_string();
        assert!(
            e.starts_with(&format!("cannot write {}: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn a_lock_from_another_device_class_is_checked_through_metrics() {
        let cpu_run = crate::repro::verify::tests::run_on("cpu", "f1", 0.9);
        let mut lock = small_lock();
        lock.metrics = cpu_run.metrics();
        lock.stages = vec![LockedStage {
            name: "features".into(),
            key: "k-cpu".into(),
            outputs: BTreeMap::from([(
                "features".to_string(),
                LockedOutput {
                    file: "features.npy".into(),
                    blake3: "f1".into(),
                    floats: true,
                },
            )]),
        }];
        // Same class: bit for bit, metrics exactly.
        let same = check(
            &lock,
            &crate::repro::verify::tests::run_on("cpu", "f1", 0.9),
        );
        assert!(same.same_device && same.passed(), "{same:?}");
        assert!(matches!(
            same.outputs[0].check,
            Check::Exact { equal: true }
        ));
        // A GPU run: its features differ in their last bits, legitimately.
        let gpu = check(
            &lock,
            &crate::repro::verify::tests::run_on("cuda-fp32", "f2", 0.9002),
        );
        assert!(!gpu.same_device);
        assert_eq!(gpu.outputs[0].check, Check::ViaMetrics);
        assert!(gpu.passed(), "{gpu:?}");
        // Beyond the tolerance it fails.
        let far = check(
            &lock,
            &crate::repro::verify::tests::run_on("cuda-tf32", "f2", 0.8),
        );
        assert!(!far.passed(), "{far:?}");
        // Locks written before devices were recorded read as CPU locks.
        let text = toml::to_string(&small_lock()).expect("encoded");
        let old = text.replace("device_class = \"cpu\"\n", "");
        assert!(!old.contains("device_class"), "{old}");
        let read_back: LockFile = toml::from_str(&old).expect("an old lock");
        assert_eq!(read_back.device_class, "cpu");
    }
}
