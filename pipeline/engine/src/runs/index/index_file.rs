//! The layout of `runs-index.json`: every distinct string once, in one table, and runs that
//! refer to strings by their position in it; numbers stored as the bits of the `f64`.
//!
//! ```text
//! {"format": 3, "blake3": "<hex digest of what follows, up to the final brace>",
//!  "strings": ["model1", "experiments/model1.toml", "train.learning_rate", "0.001", ...],
//!  "runs": [{"stamp": {..}, "id": "20261125-181502-042-7c1e", ..., "experiment": 0,
//!            "params": [[2, 3], ...], "metrics": [[7, 4606281698874543309], ...],
//!            "stages": [[8, 9, 10, "miss", 4607182418800017408], ...]}, ...]}
//! ```
//!
//! Interning pays per string, not per run: a parameter value shared by two runs is stored
//! once even when every other value differs. Strings that belong to one run (its id, name,
//! start time, error) stay in the run. Metrics and durations are kept as bits because
//! serde_json reads decimals to within one unit in the last place, not exactly: a listing
//! from the index prints the same digits as one from the records.
//!
//! The index checks itself, as a cache entry's manifest does: its first field after the
//! format is the blake3 digest of the bytes after it (from the string table to the last
//! byte before the closing brace), so an index edited by hand into other valid JSON (a metric
//! changed, say) is noticed and rebuilt from the records rather than believed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{RunSummary, StageBrief, Stamp};
use crate::runs::record::{CacheUse, RunStatus};

/// Version of the index layout; another version is ignored and rebuilt. 1 held whole
/// summaries with every string repeated; 2 was this layout without its own digest.
pub(super) const INDEX_FORMAT: u32 = 3;

/// How the index file starts: its format, then the digest (64 hex digits) of its content.
fn head() -> String {
    format!("{{\"format\":{INDEX_FORMAT},\"blake3\":\"")
}
/// What follows the digest: the content it covers starts after this.
const AFTER_DIGEST: &str = "\",";
/// The length of a blake3 digest in hex.
const DIGEST_HEX: usize = 64;

/// The content the digest covers: everything but the format and the digest (which a
/// reader of the whole file skips as fields it does not know).
#[derive(Serialize, Deserialize)]
struct IndexFile<'a> {
    /// Every string the runs share, once; runs refer to them by position.
    strings: Vec<Cow<'a, str>>,
    runs: Vec<StoredRun<'a>>,
}

/// A run's summary with its shared strings as positions in the table.
#[derive(Serialize, Deserialize)]
struct StoredRun<'a> {
    stamp: Stamp,
    id: Cow<'a, str>,
    name: Option<Cow<'a, str>>,
    status: RunStatus,
    pid: u32,
    started: Cow<'a, str>,
    /// The bits of the `f64`.
    duration_s: Option<u64>,
    error: Option<Cow<'a, str>>,
    failed_stage: Option<Cow<'a, str>>,
    experiment: u32,
    experiment_path: u32,
    overrides: Vec<u32>,
    /// (name, value as TOML), in name order.
    params: Vec<(u32, u32)>,
    /// (name, bits of the `f64`), in name order.
    metrics: Vec<(u32, u64)>,
    stages: Vec<StoredStage>,
}

/// A [`StageBrief`]: name, kind, key, cache use, bits of the duration.
#[derive(Serialize, Deserialize)]
struct StoredStage(u32, u32, u32, CacheUse, u64);

/// The string table being built: each distinct string gets the next position.
#[derive(Default)]
struct Table<'a> {
    positions: HashMap<&'a str, u32>,
    strings: Vec<&'a str>,
}

impl<'a> Table<'a> {
    fn position(&mut self, text: &'a str) -> u32 {
        *self.positions.entry(text).or_insert_with(|| {
            self.strings.push(text);
            (self.strings.len() - 1) as u32
        })
    }
}

/// The index file for `runs` (each with the stamp of the record it was made from).
pub(super) fn encode(runs: &[(Stamp, RunSummary)]) -> serde_json::Result<Vec<u8>> {
    let mut table = Table::default();
    let stored: Vec<StoredRun> = runs
        .iter()
        .map(|(stamp, r)| StoredRun {
            stamp: *stamp,
            id: Cow::Borrowed(&r.id),
            name: r.name.as_deref().map(Cow::Borrowed),
            status: r.status,
            pid: r.pid,
            started: Cow::Borrowed(&r.started),
            duration_s: r.duration_s.map(f64::to_bits),
            error: r.error.as_deref().map(Cow::Borrowed),
            failed_stage: r.failed_stage.as_deref().map(Cow::Borrowed),
            experiment: table.position(&r.experiment),
            experiment_path: table.position(&r.experiment_path),
            overrides: r.overrides.iter().map(|o| table.position(o)).collect(),
            params: r
                .params
                .iter()
                .map(|(k, v)| (table.position(k), table.position(v)))
                .collect(),
            metrics: r
                .metrics
                .iter()
                .map(|(k, v)| (table.position(k), v.to_bits()))
                .collect(),
            stages: r
                .stages
                .iter()
                .map(|s| {
                    StoredStage(
                        table.position(&s.name),
                        table.position(&s.kind),
                        table.position(&s.key),
                        s.cache,
                        s.duration_s.to_bits(),
                    )
                })
                .collect(),
        })
        .collect();
    let content = serde_json::to_vec(&IndexFile {
        strings: table.strings.into_iter().map(Cow::Borrowed).collect(),
        runs: stored,
    })?;
    // `{"strings":...,"runs":...}` with its braces dropped: the fields the digest covers.
    let fields = &content[1..content.len() - 1];
    let digest = blake3::hash(fields).to_hex();
    let head = head();
    let mut file = Vec::with_capacity(content.len() + head.len() + DIGEST_HEX + 4);
    file.extend_from_slice(head.as_bytes());
    file.extend_from_slice(digest.as_bytes());
    file.extend_from_slice(AFTER_DIGEST.as_bytes());
    file.extend_from_slice(fields);
    file.push(b'}');
    Ok(file)
}

/// Whether an index file is of this format and matches its digest (`false` for one changed
/// since it was written).
fn checks_itself(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(head().as_bytes()) else {
        return false;
    };
    let (Some(digest), Some(after)) = (rest.get(..DIGEST_HEX), rest.get(DIGEST_HEX..)) else {
        return false;
    };
    after
        .strip_prefix(AFTER_DIGEST.as_bytes())
        .and_then(|fields| fields.strip_suffix(b"}"))
        .is_some_and(|fields| blake3::hash(fields).to_hex().as_bytes() == digest)
}

/// The runs in an index file, sharing one `Arc<str>` per distinct string; `None` when the
/// file is not an index of this format, does not match its digest, or refers to strings it
/// does not have.
pub(super) fn decode(bytes: &[u8]) -> Option<Vec<(Stamp, RunSummary)>> {
    if !checks_itself(bytes) {
        return None;
    }
    let file: IndexFile = serde_json::from_slice(bytes).ok()?;
    let strings: Vec<Arc<str>> = file.strings.iter().map(|s| Arc::from(&**s)).collect();
    let text = |position: u32| strings.get(position as usize).cloned();
    file.runs
        .into_iter()
        .map(|r| {
            let summary = RunSummary {
                id: r.id.into_owned(),
                name: r.name.map(Cow::into_owned),
                status: r.status,
                pid: r.pid,
                started: r.started.into_owned(),
                duration_s: r.duration_s.map(f64::from_bits),
                error: r.error.map(Cow::into_owned),
                failed_stage: r.failed_stage.map(Cow::into_owned),
                experiment: text(r.experiment)?,
                experiment_path: text(r.experiment_path)?,
                overrides: r
                    .overrides
                    .iter()
                    .map(|&o| text(o))
                    .collect::<Option<_>>()?,
                params: r
                    .params
                    .iter()
                    .map(|&(k, v)| Some((text(k)?, text(v)?)))
                    .collect::<Option<BTreeMap<_, _>>>()?,
                metrics: r
                    .metrics
                    .iter()
                    .map(|&(k, v)| Some((text(k)?, f64::from_bits(v))))
                    .collect::<Option<BTreeMap<_, _>>>()?,
                stages: r
                    .stages
                    .iter()
                    .map(|&StoredStage(name, kind, key, cache, duration)| {
                        Some(StageBrief {
                            name: text(name)?,
                            kind: text(kind)?,
                            key: text(key)?,
                            cache,
                            duration_s: f64::from_bits(duration),
                        })
                    })
                    .collect::<Option<_>>()?,
            };
            Some((r.stamp, summary))
        })
        .collect()
}
