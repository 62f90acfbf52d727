//! Run records: one directory per `pipeline run` under `runs/`, holding `run.toml` and the
//! outputs its stages publish. Only this module writes or finds them.
//!
//! ```text
//! runs/<run-id>/run.toml           what ran, with what, where, and what came out
//! runs/<run-id>/experiment.toml    the experiment file as it was
//! runs/<run-id>/<published files>  read-only: copies of small files (metrics, figures),
//!                                  hard links into the cache for large ones (checkpoint)
//! ```
//!
//! A run id is the UTC start time to the millisecond plus a short random suffix
//! (`20261125-181502-042-7c1e`), so ids
//! sort by time and two runs started in the same second still differ.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::device::{DeviceRecord, CPU_CLASS};

/// Version of the run record layout.
pub const RECORD_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("run store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: unreadable run record: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no run matches `{0}` (try `pipeline runs`)")]
    NotFound(String),
    #[error("`{spec}` matches several runs: {}", list_some(.candidates))]
    Ambiguous {
        spec: String,
        candidates: Vec<String>,
    },
    /// A reference that cannot match, with why (`latest` before any run succeeded, say).
    #[error("no run matches `{spec}`: {why}")]
    NoMatch { spec: String, why: String },
    /// An id that is not one plain name (`../x`, `a/b`): it would lead outside `runs/`.
    #[error("`{0}` is not a run id")]
    NotAnId(String),
}

/// The first few of many run ids, and how many more there are.
fn list_some(ids: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(
            ", and {} more (type more of the id)",
            ids.len() - SHOWN
        ));
    }
    text
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

/// How a stage's result was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheUse {
    /// Reused from the cache.
    Hit,
    /// Computed: no result was cached.
    Miss,
    /// Computed because `--no-cache` was given.
    Forced,
    /// Computed because the cached result's files no longer matched their digests.
    Damaged,
    /// Downloaded from the remote cache, checked, and published locally.
    Remote,
}

impl CacheUse {
    pub fn label(self) -> &'static str {
        match self {
            CacheUse::Hit => "cached",
            CacheUse::Miss => "ran",
            CacheUse::Forced => "ran (--no-cache)",
            CacheUse::Damaged => "ran (cache entry damaged)",
            CacheUse::Remote => "cached (remote)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpu: String,
    pub threads: usize,
    pub os: String,
    pub arch: String,
}

impl Host {
    pub fn current() -> Host {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Host {
            cpu,
            threads: rayon::current_num_threads(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    pub path: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub digest: String,
    pub seed: i64,
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The experiment file's `caveats`, shown up front wherever the run is shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    /// The experiment file's `headline` metrics (names within an evaluate stage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headline: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub from: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalRecord {
    pub files: usize,
    pub bytes: u64,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub file: String,
    pub size: u64,
    pub blake3: String,
    /// The file's path in the run directory, when the stage publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Timings and the like: allowed to differ between identical executions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
    /// Floating-point data, whose bytes depend on the device's rounding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floats: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    pub kind_version: u32,
    pub key: String,
    pub cache: CacheUse,
    pub duration_s: f64,
    pub params: toml::Table,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRecord>,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputRecord>,
    #[serde(default)]
    pub notes: toml::Table,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The device class in the stage's key, for a stage whose bytes depend on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stage that failed, when a stage did (the run's other errors name no stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stage: Option<String>,
    pub pid: u32,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    pub tool_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub host: Host,
    pub data_root: String,
    pub no_cache: bool,
    pub experiment: ExperimentRecord,
    /// Effective parameters: `seed`, then one table per stage.
    pub params: toml::Table,
    /// The device the run computed on; absent in runs from before devices were recorded,
    /// which ran on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRecord>,
    #[serde(default)]
    pub stages: Vec<StageRecord>,
}

impl RunRecord {
    /// The display status: a run still marked running whose process is gone was interrupted.
    pub fn status_label(&self) -> &'static str {
        status_label(self.status, self.pid)
    }

    /// Every stage's metrics, as `stage.metric`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.stages
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |(k, v)| (format!("{}.{k}", s.name), *v))
            })
            .collect()
    }

    pub fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stage at which a failed run stopped: recorded since runs record it, read from
    /// the error (`stage `NAME` ...`) for older records.
    pub fn failed_at(&self) -> Option<&str> {
        if self.status != RunStatus::Failed {
            return None;
        }
        self.failed_stage
            .as_deref()
            .or_else(|| self.error.as_deref().and_then(stage_named_in))
    }
}

impl RunRecord {
    /// The error of a failed run without the `stage `NAME` failed: ` it starts with, for
    /// sentences that name the stage already.
    pub fn failure_reason(&self) -> Option<&str> {
        let error = self.error.as_deref()?;
        let Some(stage) = self.failed_at() else {
            return Some(error);
        };
        let failed = format!("stage `{stage}` failed: ");
        let other = format!("stage `{stage}`: ");
        Some(
            error
                .strip_prefix(failed.as_str())
                .or_else(|| error.strip_prefix(other.as_str()))
                .unwrap_or(error),
        )
    }
}

/// The device class of a run (`cpu` for runs recorded before devices were).
pub fn device_class(run: &RunRecord) -> &str {
    run.device.as_ref().map_or(CPU_CLASS, |d| d.class.as_str())
}

/// `NAME` from an error that starts `stage `NAME``, as every error of a stage does.
fn stage_named_in(error: &str) -> Option<&str> {
    let rest = error.strip_prefix("stage `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// A run's display status from its recorded status and the process that ran it.
pub(crate) fn status_label(status: RunStatus, pid: u32) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Running if process_alive(pid) => "running",
        RunStatus::Running => "interrupted",
    }
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The largest `run.toml` read: a record of hundreds of stages is well under a megabyte, and
/// a bound keeps a file grown by accident (or a link to a device) from filling memory.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// The text of a record file, refused unless it is a regular file (not a link, a FIFO or a
/// device) of at most [`MAX_RECORD_BYTES`]: `pipeline` only ever writes records as regular
/// files, and reading a FIFO would wait forever. The type is checked before opening, and
/// again on the open file, which is opened without following links or blocking, so that a
/// file swapped in between cannot make it hang either.
fn read_record_text(path: &Path) -> Result<String, RecordError> {
    let refused = |why: String| RecordError::Parse {
        path: path.to_path_buf(),
        message: why,
    };
    let check = |meta: &fs::Metadata| -> Result<(), RecordError> {
        if !meta.file_type().is_file() {
            let kind = crate::hash::describe_type(&meta.file_type());
            return Err(refused(format!("{kind}, not a regular file")));
        }
        if meta.len() > MAX_RECORD_BYTES {
            return Err(refused(format!(
                "{} bytes, larger than any run record ({} at most)",
                meta.len(),
                MAX_RECORD_BYTES
            )));
        }
        Ok(())
    };
    check(&fs::symlink_metadata(path).map_err(io_err(path))?)?;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(path).map_err(io_err(path))?;
    check(&file.metadata().map_err(io_err(path))?)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_RECORD_BYTES + 1), &mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(refused(format!(
            "larger than any run record ({MAX_RECORD_BYTES} bytes at most)"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        refused(format!(
            "not text (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The directory of all runs.
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    pub fn open(root: &Path) -> Result<RunStore, RecordError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(RunStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates the directory of a new run and returns its id.
    pub fn create(&self, started: &chrono::DateTime<chrono::Utc>) -> Result<String, RecordError> {
        let stamp = started
            .format("%Y%m%d-%H%M%S%.3f")
            .to_string()
            .replace('.', "-");
        for attempt in 0u32.. {
            let mut h = blake3::Hasher::new();
            h.update(&started.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
            h.update(&std::process::id().to_le_bytes());
            h.update(&attempt.to_le_bytes());
            let suffix = &h.finalize().to_hex()[..4];
            let id = format!("{stamp}-{suffix}");
            let dir = self.dir_of(&id);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        unreachable!("the attempt counter is unbounded")
    }

    /// Writes `run.toml` atomically: readers see the old record or the new one, never half.
    pub fn save(&self, record: &RunRecord) -> Result<(), RecordError> {
        let dir = self.dir_of(&record.id);
        let path = dir.join("run.toml");
        let text = toml::to_string(record).map_err(|e| RecordError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp = dir.join("run.toml.tmp");
        fs::write(&tmp, text).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    pub fn load(&self, id: &str) -> Result<RunRecord, RecordError> {
        // Ids come from files a user can edit (a sweep's table): one plain name, never a
        // path that leads elsewhere.
        let plain = matches!(
            Path::new(id).components().collect::<Vec<_>>()[..],
            [Component::Normal(_)]
        );
        if !plain {
            return Err(RecordError::NotAnId(id.to_string()));
        }
        let path = self.dir_of(id).join("run.toml");
        let text = read_record_text(&path)?;
        toml::from_str(&text).map_err(|e| RecordError::Parse {
            path,
            message: e.message().to_string(),
        })
    }

    /// Every readable run, newest first. Directories without a readable record are skipped,
    /// and so are records whose id is not their directory's name (a run directory copied by
    /// hand): every use of a run finds its files by id, and gc removes runs by it. Records
    /// are parsed in parallel.
    pub fn list(&self) -> Result<Vec<RunRecord>, RecordError> {
        let dirs: Vec<String> = fs::read_dir(&self.root)
            .map_err(io_err(&self.root))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut runs: Vec<RunRecord> = dirs
            .into_par_iter()
            .filter_map(|dir| self.load(&dir).ok().filter(|r| r.id == dir))
            .collect();
        runs.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        Ok(runs)
    }
}

/// The project's git commit and whether the work tree has changes, when it is a git checkout.
pub fn git_state(project: &Path) -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(project)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
            (Some(commit), dirty)
        }
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_candidates_are_cut_short() {
        let ids: Vec<String> = (0..20).map(|i| format!("id-{i:02}")).collect();
        let text = list_some(&ids);
        assert!(text.starts_with("id-00, id-01"), "{text}");
        assert!(
            text.ends_with("and 12 more (type more of the id)"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_run_names_the_stage_it_stopped_at() {
        assert_eq!(stage_named_in("stage `train` failed: boom"), Some("train"));
        assert_eq!(stage_named_in("cannot publish x"), None);
    }
}
