//! `pipeline gc`: removes cache entries that no kept run refers to.

use std::collections::BTreeSet;

use crate::execute::{RunError, Store};

/// What a collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Collected {
    pub entries: Vec<String>,
    pub bytes: u64,
    pub kept: usize,
}

/// Keeps the entries referenced by the newest `keep_last` runs (all runs when `None`).
pub fn collect(
    store: &Store,
    keep_last: Option<usize>,
    dry_run: bool,
) -> Result<Collected, RunError> {
    let runs = store.runs.list()?;
    let kept_runs = keep_last.unwrap_or(runs.len());
    let referenced: BTreeSet<String> = runs
        .iter()
        .take(kept_runs)
        .flat_map(|r| r.stages.iter().map(|s| s.key.clone()))
        .collect();
    let mut out = Collected::default();
    for key in store.cache.keys()? {
        if referenced.contains(&key) {
            out.kept += 1;
            continue;
        }
        // An entry being published right now belongs to a running run: leave it.
        if store.cache.is_locked(&key) {
            out.kept += 1;
            continue;
        }
        if let Some(entry) = store.cache.read_entry(&key)? {
            out.bytes += entry.manifest.files.iter().map(|f| f.size).sum::<u64>();
        }
        if !dry_run {
            store.cache.evict(&key)?;
        }
        out.entries.push(key);
    }
    Ok(out)
}
