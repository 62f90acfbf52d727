//! `pipeline status`: which stages have a cached result, and for the others, why not,
//! explained against the experiment's latest recorded run.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cache::Lookup;
use crate::execute::{connect_inputs, external_data, key_of, Available, RunError, Store};
use crate::experiment::{Experiment, Stage};
use crate::kind::Registry;
use crate::record::{RunRecord, StageRecord};

#[derive(Debug, Clone, PartialEq)]
pub enum StageState {
    Cached,
    /// Not in the local store, but in the remote cache: the next run downloads it.
    Remote,
    /// Will run; each line is one reason.
    Stale(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageStatus {
    pub name: String,
    pub kind: String,
    /// Unknown while an upstream stage has no result.
    pub key: Option<String>,
    pub state: StageState,
    /// The command from the experiment file the stage runs (`shell` stages), shown so that
    /// the user sees what `--allow-shell` would allow.
    pub command: Option<String>,
}

pub fn status(
    exp: &Experiment,
    registry: &Registry,
    store: &Store,
    data_root: &Path,
) -> Result<Vec<StageStatus>, RunError> {
    let previous_runs: Vec<RunRecord> = store
        .runs
        .list()?
        .into_iter()
        .filter(|r| r.experiment.name == exp.name)
        .collect();
    let mut available: BTreeMap<String, Available> = BTreeMap::new();
    let mut out = Vec::new();
    for stage in &exp.stages {
        let Some(kind) = registry.get(&stage.kind) else {
            continue;
        };
        let previous = previous_runs.iter().find_map(|r| r.stage(&stage.name));
        let external = external_data(stage, kind, data_root)?;
        let mut reasons = own_changes(stage, kind.version(), previous);
        let inputs = match connect_inputs(stage, &available) {
            Ok(inputs) => Some(inputs),
            Err(_) => {
                for (slot, from) in &stage.inputs {
                    if !available.contains_key(&from.to_string()) {
                        reasons.push(format!(
                            "input `{slot}` comes from `{}`, which must run first",
                            from.stage
                        ));
                    }
                }
                None
            }
        };
        let Some(inputs) = inputs else {
            out.push(StageStatus {
                name: stage.name.clone(),
                kind: stage.kind.clone(),
                key: None,
                state: StageState::Stale(reasons),
                command: kind.command(&stage.params),
            });
            continue;
        };
        let key = key_of(stage, kind, &inputs, external.as_ref())
            .to_hex()
            .to_string();
        // Inspected, not looked up: a status query must not change the store.
        let state = match store.cache.inspect(&key)? {
            Lookup::Hit(entry) => {
                for output in &stage.outputs {
                    if let Some(file) = entry.manifest.file(&output.name) {
                        if let Ok(digest) = blake3::Hash::from_hex(&file.blake3) {
                            available.insert(
                                format!("{}.{}", stage.name, output.name),
                                Available {
                                    path: entry.path_of(file),
                                    digest,
                                    size: file.size,
                                    stored: file.stored(),
                                },
                            );
                        }
                    }
                }
                StageState::Cached
            }
            Lookup::Damaged { problems } => StageState::Stale(vec![format!(
                "the cached result was damaged ({})",
                problems.join("; ")
            )]),
            Lookup::Miss if on_remote(store, &key, stage, &mut available) => StageState::Remote,
            Lookup::Miss => {
                if let Some(prev) = previous {
                    for (slot, a) in &inputs {
                        let old = prev.inputs.get(slot).map(|i| i.digest.as_str());
                        if old != Some(a.digest.to_hex().as_str()) {
                            let from = stage.inputs.get(slot).map(|r| r.to_string());
                            reasons.push(format!(
                                "input `{slot}` ({}) changed",
                                from.unwrap_or_default()
                            ));
                        }
                    }
                    if let Some(ext) = &external {
                        let old = prev.external.as_ref().map(|e| e.digest.as_str());
                        if old != Some(ext.digest.to_hex().as_str()) {
                            reasons.push(data_change(store, prev, ext));
                        }
                    }
                }
                if reasons.is_empty() {
                    reasons.push(if previous.is_some() {
                        "its earlier result is no longer in the cache".into()
                    } else {
                        "no earlier result".into()
                    });
                }
                StageState::Stale(reasons)
            }
        };
        out.push(StageStatus {
            name: stage.name.clone(),
            kind: stage.kind.clone(),
            key: Some(key),
            state,
            command: kind.command(&stage.params),
        });
    }
    Ok(out)
}

/// Changes in the stage itself: its kind, the kind's version, its parameters.
/// Whether the remote cache has `key`; if so its outputs' digests become known downstream
/// (nothing is downloaded). An unreachable remote counts as not having it.
fn on_remote(
    store: &Store,
    key: &str,
    stage: &Stage,
    available: &mut BTreeMap<String, Available>,
) -> bool {
    let Some(remote) = &store.remote else {
        return false;
    };
    let Ok(Some((_, manifest))) = remote.manifest(key) else {
        return false;
    };
    for output in &stage.outputs {
        if let Some(file) = manifest.file(&output.name) {
            if let Ok(digest) = blake3::Hash::from_hex(&file.blake3) {
                available.insert(
                    format!("{}.{}", stage.name, output.name),
                    Available {
                        path: store.cache.entry_path(key).join(&file.file),
                        digest,
                        size: file.size,
                        stored: file.stored(),
                    },
                );
            }
        }
    }
    true
}

fn own_changes(stage: &Stage, version: u32, previous: Option<&StageRecord>) -> Vec<String> {
    let Some(prev) = previous else {
        return vec!["no earlier result".into()];
    };
    let mut reasons = Vec::new();
    if prev.kind != stage.kind {
        reasons.push(format!(
            "kind changed from `{}` to `{}`",
            prev.kind, stage.kind
        ));
        return reasons;
    }
    if prev.kind_version != version {
        reasons.push(format!(
            "kind `{}` changed its behaviour (version {} -> {version})",
            stage.kind, prev.kind_version
        ));
    }
    let now = stage.params.values();
    for (name, value) in now {
        match prev.params.get(name) {
            Some(old) if old == value => {}
            Some(old) => reasons.push(format!("parameter `{name}` changed: {old} -> {value}")),
            None => reasons.push(format!("parameter `{name}` set to {value}")),
        }
    }
    for (name, old) in &prev.params {
        if !now.contains_key(name) {
            reasons.push(format!("parameter `{name}` removed (was {old})"));
        }
    }
    reasons
}

/// Describes how a stage's data files differ from those of its earlier result.
fn data_change(store: &Store, prev: &StageRecord, now: &crate::execute::External) -> String {
    let Ok(Some(entry)) = store.cache.read_entry(&prev.key) else {
        return "its data files changed".into();
    };
    let old = &entry.manifest.external;
    let mut added = Vec::new();
    let mut modified = Vec::new();
    for f in &now.files {
        match old.get(&f.name) {
            None => added.push(f.name.as_str()),
            Some(d) if d.as_str() != f.digest.to_hex().as_str() => modified.push(f.name.as_str()),
            Some(_) => {}
        }
    }
    let removed: Vec<&str> = old
        .keys()
        .filter(|k| !now.files.iter().any(|f| &f.name == *k))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    for (label, names) in [
        ("modified", modified),
        ("added", added),
        ("removed", removed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{} {label} ({})", names.len(), brief(&names)));
        }
    }
    format!("its data files changed: {}", parts.join(", "))
}

fn brief(names: &[&str]) -> String {
    let shown: Vec<&str> = names.iter().take(3).copied().collect();
    let more = names.len().saturating_sub(3);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
