//! Run summaries and the index that keeps them: what `pipeline runs`, run references and
//! sweeps need from each run, without parsing thousands of `run.toml` files every time.
//!
//! The index is one file beside `runs/` (`runs-index.json`, laid out by `index_file.rs`).
//! Each entry holds a run's summary and the identity of the `run.toml` it was made from
//! (inode, modification time, size): a record saved since (a running run finishing a stage)
//! or a run added or removed is noticed by one `stat` per run and summarized again, in
//! parallel. The index is only ever a cache: deleting it costs one slower listing, and a
//! damaged one (it carries its own digest), or one of another format, is ignored and
//! rewritten from the records.
//!
//! Runs repeat the same strings thousands of times (parameter names, stage names and keys,
//! experiment names): the file keeps each once, and in memory they are shared (`Arc<str>`),
//! so that listing 5,000 runs does not allocate half a million strings.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::record::{CacheUse, RecordError, RunRecord, RunStatus, RunStore};
pub use damage::DamagedRecord;

mod damage;
mod index_file;
#[cfg(test)]
mod tests;

/// What listing, filtering and referring to a run needs from its record. The strings that
/// runs share are `Arc<str>`: runs read from the index share one copy of each.
#[derive(Debug, Clone, PartialEq)]
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
    pub experiment: Arc<str>,
    /// The experiment file as given to `pipeline run`.
    pub experiment_path: Arc<str>,
    pub overrides: Vec<Arc<str>>,
    /// Effective parameters as `stage.param` (or `seed`) = the value written as TOML.
    pub params: BTreeMap<Arc<str>, Arc<str>>,
    /// Every stage's metrics as `stage.metric`; values that are not finite are left out.
    pub metrics: BTreeMap<Arc<str>, f64>,
    /// The stages that finished, in run order.
    pub stages: Vec<StageBrief>,
}

/// One finished stage of a run: enough to estimate how long computing it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct StageBrief {
    pub name: Arc<str>,
    pub kind: Arc<str>,
    pub key: Arc<str>,
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
            experiment: r.experiment.name.as_str().into(),
            experiment_path: r.experiment.path.as_str().into(),
            overrides: r
                .experiment
                .overrides
                .iter()
                .map(|o| o.as_str().into())
                .collect(),
            params: flatten_params(&r.params)
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            metrics: r
                .metrics()
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.into(), v))
                .collect(),
            stages: r
                .stages
                .iter()
                .map(|s| StageBrief {
                    name: s.name.as_str().into(),
                    kind: s.kind.as_str().into(),
                    key: s.key.as_str().into(),
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
        super::record::status_label(self.status, self.pid)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    inode: u64,
    modified_ns: i128,
    size: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        // The entry itself, not what a link points to: a link is refused when read.
        let meta = fs::symlink_metadata(path).ok()?;
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

/// Where the index of the runs under `runs_root` is kept.
pub fn index_path(runs_root: &Path) -> PathBuf {
    let name = runs_root
        .file_name()
        .map_or("runs".into(), |n| n.to_string_lossy().into_owned());
    runs_root.with_file_name(format!("{name}-index.json"))
}

/// The runs the index describes, by id; nothing when it is missing, damaged or of another
/// format (they are all summarized again).
fn read_index(path: &Path) -> HashMap<String, (Stamp, RunSummary)> {
    fs::read(path)
        .ok()
        .and_then(|bytes| index_file::decode(&bytes))
        .map(|runs| {
            runs.into_iter()
                .map(|(stamp, summary)| (summary.id.clone(), (stamp, summary)))
                .collect()
        })
        .unwrap_or_default()
}

/// Best effort: a store that cannot be written (read-only media) still lists, only slower.
fn write_index(path: &Path, runs: &[(Stamp, RunSummary)]) {
    let Ok(bytes) = index_file::encode(runs) else {
        return;
    };
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// Listing and finding runs go through the index: the run store's own methods for them live
/// here, above the records they read.
impl RunStore {
    /// Every readable run's summary, newest first: what listing and references need, kept in
    /// an index so that thousands of runs list quickly (this module).
    /// Records that cannot be read are left out: [`RunStore::listing`] names them.
    pub fn summaries(&self) -> Result<Vec<RunSummary>, RecordError> {
        Ok(survey(self)?.runs)
    }

    /// The readable runs' summaries and the records that cannot be read, for a listing that
    /// says which runs it leaves out (the engine prints nothing: the binary does).
    pub fn listing(&self) -> Result<Listing, RecordError> {
        survey(self)
    }

    /// Finds a run by a reference ([`resolve_in`]) and reads its whole record. A reference
    /// to a run whose record cannot be read says so, naming the file.
    pub fn resolve(&self, spec: &str) -> Result<RunRecord, RecordError> {
        let listing = survey(self)?;
        let found = resolve_in(&listing.runs, spec);
        if let Some(damaged) = damage::refers_to_damaged(&listing.damaged, spec, &found) {
            return Err(damaged);
        }
        self.load(&found?)
    }
}

/// The id of the run `spec` refers to, among `runs` (newest first):
/// - `latest`: the newest run that succeeded; `latest~N`: the Nth successful run before it;
/// - an exact id;
/// - a name: the newest run with that name;
/// - a unique prefix or suffix of an id (the random suffix, `7c1e`, is the shortest to type).
pub fn resolve_in(runs: &[RunSummary], spec: &str) -> Result<String, RecordError> {
    let no_match = |why: String| RecordError::NoMatch {
        spec: spec.to_string(),
        why,
    };
    if let Some(rest) = spec.strip_prefix("latest") {
        let back = match rest {
            "" => Some(0),
            r => r.strip_prefix('~').and_then(|n| n.parse::<usize>().ok()),
        };
        if let Some(back) = back {
            let succeeded: Vec<&RunSummary> = runs
                .iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .collect();
            if let Some(run) = succeeded.get(back) {
                return Ok(run.id.clone());
            }
            let newest = match runs.first() {
                Some(r) if r.status != RunStatus::Succeeded => format!(
                    "; the newest run, {}, {} (name it by its id)",
                    r.id,
                    r.status_label()
                ),
                _ => String::new(),
            };
            return Err(no_match(match succeeded.len() {
                0 if runs.is_empty() => "there are no runs yet".to_string(),
                0 => format!("no run has succeeded yet (`latest` counts successful runs only){newest}"),
                n => format!(
                    "there {} only {n} successful run{} (`latest` counts successful runs only){newest}",
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "" } else { "s" }
                ),
            }));
        }
    }
    if runs.iter().any(|r| r.id == spec) {
        return Ok(spec.to_string());
    }
    if let Some(run) = runs.iter().find(|r| r.name.as_deref() == Some(spec)) {
        return Ok(run.id.clone());
    }
    if spec.is_empty() {
        return Err(RecordError::NotFound(spec.to_string()));
    }
    let matching: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| r.id.starts_with(spec) || r.id.ends_with(spec))
        .collect();
    match matching.as_slice() {
        [] => Err(RecordError::NotFound(spec.to_string())),
        [one] => Ok(one.id.clone()),
        many => Err(RecordError::Ambiguous {
            spec: spec.to_string(),
            candidates: many.iter().map(|r| r.id.clone()).collect(),
        }),
    }
}

/// What is under `runs/`: the readable runs and the records that cannot be read.
pub struct Listing {
    /// Every readable run's summary, newest first.
    pub runs: Vec<RunSummary>,
    /// Run directories whose `run.toml` cannot be read, in id order.
    pub damaged: Vec<DamagedRecord>,
}

/// Every readable run's summary, newest first, from the index where it is current, and the
/// records that could not be read.
pub(crate) fn survey(store: &RunStore) -> Result<Listing, RecordError> {
    let root = store.root();
    let path = index_path(root);
    let dirs: Vec<String> = fs::read_dir(root)
        .map_err(|source| RecordError::Io {
            path: root.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Reading the index and one stat per run are independent: they overlap.
    let (mut known, stamped) = rayon::join(
        || read_index(&path),
        || {
            dirs.into_par_iter()
                .filter_map(|dir| {
                    let stamp = Stamp::of(&root.join(&dir).join("run.toml"))?;
                    Some((dir, stamp))
                })
                .collect::<Vec<_>>()
        },
    );
    let indexed = known.len();
    let mut current: Vec<(Stamp, RunSummary)> = Vec::with_capacity(stamped.len());
    let mut stale: Vec<(String, Stamp)> = Vec::new();
    for (dir, stamp) in stamped {
        match known.remove(&dir) {
            Some((was, summary)) if was == stamp => current.push((stamp, summary)),
            _ => stale.push((dir, stamp)),
        }
    }
    // Only the runs whose record changed are read and parsed, in parallel. Records whose id
    // is not their directory's name (a run directory copied by hand) are skipped, as
    // `RunStore::list` skips them.
    let read: Vec<Result<(Stamp, RunSummary), DamagedRecord>> = stale
        .into_par_iter()
        .filter_map(|(dir, stamp)| match store.load(&dir) {
            Ok(record) if record.id == dir => Some(Ok((stamp, RunSummary::of(&record)))),
            Ok(_) => None,
            Err(e) => {
                let path = store.dir_of(&dir).join("run.toml");
                Some(Err(DamagedRecord::of(dir, path, &e)))
            }
        })
        .collect();
    let mut fresh: Vec<(Stamp, RunSummary)> = Vec::new();
    let mut damaged: Vec<DamagedRecord> = Vec::new();
    for outcome in read {
        match outcome {
            Ok(run) => fresh.push(run),
            Err(record) => damaged.push(record),
        }
    }
    damaged.sort_by(|a, b| a.id.cmp(&b.id));
    // Every entry kept from the index is unchanged, so the index is stale exactly when runs
    // were summarized again or entries were dropped (runs removed, or no longer readable).
    let changed = !fresh.is_empty() || current.len() != indexed;
    current.extend(fresh);
    current.sort_by(|(_, a), (_, b)| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
    if changed {
        write_index(&path, &current);
    }
    Ok(Listing {
        runs: current.into_iter().map(|(_, summary)| summary).collect(),
        damaged,
    })
}
