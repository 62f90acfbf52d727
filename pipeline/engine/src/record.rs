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
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    #[error("`{spec}` matches several runs: {}", .candidates.join(", "))]
    Ambiguous {
        spec: String,
        candidates: Vec<String>,
    },
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
    #[serde(default)]
    pub stages: Vec<StageRecord>,
}

impl RunRecord {
    /// The display status: a run still marked running whose process is gone was interrupted.
    pub fn status_label(&self) -> &'static str {
        match self.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Running if process_alive(self.pid) => "running",
            RunStatus::Running => "interrupted",
        }
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
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
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
        let path = self.dir_of(id).join("run.toml");
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        toml::from_str(&text).map_err(|e| RecordError::Parse {
            path,
            message: e.message().to_string(),
        })
    }

    /// Every readable run, newest first. Directories without a readable record are skipped,
    /// and so are records whose id is not their directory's name (a run directory copied by
    /// hand): every use of a run finds its files by id, and gc removes runs by it.
    pub fn list(&self) -> Result<Vec<RunRecord>, RecordError> {
        let mut runs: Vec<RunRecord> = fs::read_dir(&self.root)
            .map_err(io_err(&self.root))?
            .flatten()
            .filter_map(|e| {
                let dir = e.file_name().to_string_lossy().into_owned();
                self.load(&dir).ok().filter(|r| r.id == dir)
            })
            .collect();
        runs.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        Ok(runs)
    }

    /// Finds a run by `latest`, `latest~N`, exact id, name (the newest with that name) or a
    /// unique id prefix.
    pub fn resolve(&self, spec: &str) -> Result<RunRecord, RecordError> {
        let runs = self.list()?;
        let not_found = || RecordError::NotFound(spec.to_string());
        if let Some(rest) = spec.strip_prefix("latest") {
            let back = match rest {
                "" => 0,
                r => r
                    .strip_prefix('~')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(not_found)?,
            };
            return runs.into_iter().nth(back).ok_or_else(not_found);
        }
        if let Some(run) = runs.iter().find(|r| r.id == spec) {
            return Ok(run.clone());
        }
        if let Some(run) = runs.iter().find(|r| r.name.as_deref() == Some(spec)) {
            return Ok(run.clone());
        }
        let matching: Vec<&RunRecord> = runs.iter().filter(|r| r.id.starts_with(spec)).collect();
        match matching.as_slice() {
            [] => Err(not_found()),
            [one] => Ok((*one).clone()),
            many => Err(RecordError::Ambiguous {
                spec: spec.to_string(),
                candidates: many.iter().map(|r| r.id.clone()).collect(),
            }),
        }
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
