//! Run summaries and the index that keeps them: what `pipeline runs`, run references and
//! sweeps need from each run, without parsing thousands of `run.toml` files every time.
//!
//! The index is one JSON file beside `runs/` (`runs-index.json`). Each entry holds a run's
//! summary and the identity of the `run.toml` it was made from (inode, modification time,
//! size): a record saved since (a running run finishing a stage) or a run added or removed is
//! noticed by one `stat` per run and summarized again, in parallel. The index is only ever a
//! cache: deleting it costs one slower listing, and a damaged one is ignored and rewritten.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::record::{CacheUse, RecordError, RunRecord, RunStatus, RunStore};

/// Version of the index layout; another version is ignored and rebuilt.
const INDEX_FORMAT: u32 = 1;

/// What listing, filtering and referring to a run needs from its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub name: Option<String>,
    pub status: RunStatus,
    pub pid: u32,
    pub started: String,
    pub duration_s: Option<f64>,
    pub error: Option<String>,
    pub failed_stage: Option<String>,
    /// The experiment's name.
    pub experiment: String,
    /// The experiment file as given to `pipeline run`.
    pub experiment_path: String,
    pub overrides: Vec<String>,
    /// Effective parameters as `stage.param` (or `seed`) = the value written as TOML.
    pub params: BTreeMap<String, String>,
    /// Every stage's metrics as `stage.metric`; values that are not finite are left out.
    pub metrics: BTreeMap<String, f64>,
    /// The stages that finished, in run order.
    pub stages: Vec<StageBrief>,
}

/// One finished stage of a run: enough to estimate how long computing it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageBrief {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub cache: CacheUse,
    pub duration_s: f64,
}

impl RunSummary {
    pub fn of(r: &RunRecord) -> RunSummary {
        RunSummary {
            id: r.id.clone(),
            name: r.name.clone(),
            status: r.status,
            pid: r.pid,
            started: r.started.clone(),
            duration_s: r.duration_s.filter(|d| d.is_finite()),
            error: r.error.clone(),
            failed_stage: r.failed_at().map(str::to_string),
            experiment: r.experiment.name.clone(),
            experiment_path: r.experiment.path.clone(),
            overrides: r.experiment.overrides.clone(),
            params: flatten_params(&r.params),
            metrics: r
                .metrics()
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .collect(),
            stages: r
                .stages
                .iter()
                .map(|s| StageBrief {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    key: s.key.clone(),
                    cache: s.cache,
                    duration_s: if s.duration_s.is_finite() {
                        s.duration_s
                    } else {
                        0.0
                    },
                })
                .collect(),
        }
    }

    /// The display status: a run still marked running whose process is gone was interrupted.
    pub fn status_label(&self) -> &'static str {
        crate::record::status_label(self.status, self.pid)
    }
}

/// The effective parameters as `stage.param` -> value written as TOML (`seed` stays `seed`).
pub fn flatten_params(table: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                for (p, pv) in t {
                    out.insert(format!("{k}.{p}"), pv.to_string());
                }
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    out
}

/// The identity of a `run.toml` as it is on disk: any save replaces the file (a new inode)
/// and changes its time, so an equal stamp means the summary still describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    inode: u64,
    modified_ns: i128,
    size: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Some(Stamp {
            inode,
            modified_ns,
            size: meta.len(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Indexed {
    stamp: Stamp,
    summary: RunSummary,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    runs: BTreeMap<String, Indexed>,
}

/// Where the index of the runs under `runs_root` is kept.
pub fn index_path(runs_root: &Path) -> PathBuf {
    let name = runs_root
        .file_name()
        .map_or("runs".into(), |n| n.to_string_lossy().into_owned());
    runs_root.with_file_name(format!("{name}-index.json"))
}

fn read_index(path: &Path) -> IndexFile {
    fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<IndexFile>(&bytes).ok())
        .filter(|i| i.format == INDEX_FORMAT)
        .unwrap_or_default()
}

/// Best effort: a store that cannot be written (read-only media) still lists, only slower.
fn write_index(path: &Path, index: &IndexFile) {
    let Ok(bytes) = serde_json::to_vec(index) else {
        return;
    };
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// Every readable run's summary, newest first, from the index where it is current.
pub(crate) fn summaries(store: &RunStore) -> Result<Vec<RunSummary>, RecordError> {
    let root = store.root();
    let path = index_path(root);
    let mut index = read_index(&path);
    let dirs: Vec<String> = fs::read_dir(root)
        .map_err(|source| RecordError::Io {
            path: root.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // One stat per run; only the runs whose record changed are read and parsed, in parallel.
    let found: Vec<(String, Option<Indexed>, bool)> = dirs
        .into_par_iter()
        .map(|dir| {
            let Some(stamp) = Stamp::of(&root.join(&dir).join("run.toml")) else {
                return (dir, None, false);
            };
            if let Some(known) = index.runs.get(&dir).filter(|i| i.stamp == stamp) {
                return (dir, Some(known.clone()), false);
            }
            // Records whose id is not their directory's name (a run directory copied by
            // hand) are skipped, as `RunStore::list` skips them.
            let summary = store
                .load(&dir)
                .ok()
                .filter(|r| r.id == dir)
                .map(|r| Indexed {
                    stamp,
                    summary: RunSummary::of(&r),
                });
            let fresh = summary.is_some();
            (dir, summary, fresh)
        })
        .collect();
    let mut changed = found.iter().any(|(_, _, fresh)| *fresh);
    let mut runs = BTreeMap::new();
    for (dir, indexed, _) in found {
        if let Some(indexed) = indexed {
            runs.insert(dir, indexed);
        }
    }
    changed |= index.runs.keys().any(|id| !runs.contains_key(id));
    index = IndexFile {
        format: INDEX_FORMAT,
        runs,
    };
    if changed {
        write_index(&path, &index);
    }
    let mut out: Vec<RunSummary> = index.runs.into_values().map(|i| i.summary).collect();
    out.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
    Ok(out)
}
