//! Tests of the runs index: summaries, the index file, resolving run references.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use super::index_file::{decode, encode, INDEX_FORMAT};
use super::*;

/// A run record of experiment `exp` with learning rate `lr` (TOML text) and a ROC AUC.
fn record(id: &str, lr: &str, roc_auc: f64) -> RunRecord {
    let text = format!(
        r#"
format = 1
id = "{id}"
status = "succeeded"
pid = 1
started = "{id}"
duration_s = 12.5
tool_version = "0"
data_root = "data"
no_cache = false
[host]
cpu = "test"
threads = 2
os = "linux"
arch = "x86_64"
[experiment]
path = "experiments/exp.toml"
name = "exp"
digest = "00"
seed = 1
overrides = ["train.learning_rate={lr}"]
[params]
seed = 1
[params.train]
learning_rate = {lr}
optimizer = "adam"
[params.evaluate]
threshold = 0.5
[[stages]]
name = "train"
kind = "train"
kind_version = 1
key = "{id}-train"
cache = "miss"
duration_s = 10.25
params = {{}}
[[stages]]
name = "evaluate"
kind = "evaluate"
kind_version = 1
key = "shared-evaluate-key"
cache = "hit"
duration_s = 0.0
params = {{}}
[stages.metrics]
roc_auc = {roc_auc:?}
n_test = 55.0
"#
    );
    toml::from_str(&text).expect("a run record")
}

fn store_with(records: &[RunRecord]) -> (tempfile::TempDir, RunStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RunStore::open(&dir.path().join("runs")).expect("store");
    for r in records {
        fs::create_dir_all(store.dir_of(&r.id)).expect("run dir");
        store.save(r).expect("save");
    }
    (dir, store)
}

fn stamp(n: u64) -> Stamp {
    Stamp {
        inode: n,
        modified_ns: 1_700_000_000_123_456_789 + n as i128,
        size: 1000 + n,
    }
}

/// The index file as JSON, to look inside it.
fn index_json(store: &RunStore) -> serde_json::Value {
    let bytes = fs::read(index_path(store.root())).expect("the index was written");
    serde_json::from_slice(&bytes).expect("the index is JSON")
}

fn ids(runs: &[RunSummary]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn the_index_gives_back_every_field_exactly() {
    let mut failed = RunSummary::of(&record("b", "3e-4", 0.5));
    failed.status = RunStatus::Failed;
    failed.name = Some("sweep-1.02".into());
    failed.error = Some("stage `train` failed: \"out of memory\"\nsee log".into());
    failed.failed_stage = Some("train".into());
    failed.duration_s = None;
    failed.pid = u32::MAX;
    failed
        .params
        .insert("load.note".into(), "'C:\\data' \u{e9}\u{1F600}\t".into());
    // Values that a decimal round trip through serde_json does not give back bit for bit
    // (0.9783549783549783 came back as ...784), and extremes.
    for (name, value) in [
        ("evaluate.macro_f1", 0.978_354_978_354_978_3),
        ("evaluate.sensitivity", 0.974_358_974_358_974_3),
        ("evaluate.test_loss", 0.109_454_412_841_450_41),
        ("evaluate.tiny", 5e-324),
        ("evaluate.huge", f64::MAX),
        ("evaluate.negative_zero", -0.0),
        ("evaluate.sum", 0.1 + 0.2),
    ] {
        failed.metrics.insert(name.into(), value);
    }
    let runs = vec![
        (
            stamp(1),
            RunSummary::of(&record("a", "1e-3", 0.987_654_321_012_345_6)),
        ),
        (stamp(2), failed),
    ];
    let bytes = encode(&runs).expect("encodes");
    let back = decode(&bytes).expect("decodes");
    assert_eq!(back.len(), runs.len());
    for ((stamp, summary), (stamp_back, summary_back)) in runs.iter().zip(&back) {
        assert_eq!(stamp, stamp_back);
        assert_eq!(summary, summary_back);
        for (name, v) in &summary.metrics {
            assert_eq!(
                v.to_bits(),
                summary_back.metrics[name].to_bits(),
                "{name} must come back bit for bit"
            );
        }
    }
}

#[test]
fn each_shared_string_is_stored_once_and_shared_in_memory() {
    // Two runs that differ in their learning rate only: every other string is common.
    let a = RunSummary::of(&record("a", "1e-3", 0.9));
    let b = RunSummary::of(&record("b", "3e-4", 0.8));
    let bytes = encode(&[(stamp(1), a), (stamp(2), b)]).expect("encodes");
    let file: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(file["format"], INDEX_FORMAT);
    let strings: Vec<&str> = file["strings"]
        .as_array()
        .expect("a string table")
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect();
    let count = |s: &str| strings.iter().filter(|t| **t == s).count();
    for common in [
        "exp",
        "experiments/exp.toml",
        "train.learning_rate",
        "train.optimizer",
        "\"adam\"",
        "evaluate.roc_auc",
        "shared-evaluate-key",
    ] {
        assert_eq!(count(common), 1, "{common} once in {strings:?}");
    }
    // Interning pays per string: the values that differ are each stored once too, and the
    // run's own strings (its id) are not in the table.
    assert_eq!((count("0.001"), count("0.0003")), (1, 1), "{strings:?}");
    assert_eq!(count("a"), 0, "{strings:?}");
    let bytes_text = String::from_utf8(bytes.clone()).expect("UTF-8");
    assert_eq!(bytes_text.matches("train.optimizer").count(), 1);

    let back = decode(&bytes).expect("decodes");
    let (a, b) = (&back[0].1, &back[1].1);
    let shared = |x: &Arc<str>, y: &Arc<str>| Arc::ptr_eq(x, y);
    assert!(shared(&a.experiment, &b.experiment));
    let (ka, va) = a.params.get_key_value("train.optimizer").expect("a param");
    let (kb, vb) = b.params.get_key_value("train.optimizer").expect("b param");
    assert!(
        shared(ka, kb) && shared(va, vb),
        "one Arc per distinct string"
    );
    assert!(!shared(
        &a.params["train.learning_rate"],
        &b.params["train.learning_rate"]
    ));
    assert!(shared(&a.stages[1].key, &b.stages[1].key));
}

#[test]
fn listing_builds_the_index_then_reads_it() {
    let (_dir, store) = store_with(&[record("r1", "1e-3", 0.9), record("r2", "3e-4", 0.8)]);
    let first = store.summaries().expect("lists");
    assert_eq!(ids(&first), ["r2", "r1"], "newest first");
    assert_eq!(first[1], RunSummary::of(&record("r1", "1e-3", 0.9)));
    assert_eq!(index_json(&store)["runs"].as_array().map(Vec::len), Some(2));
    let again = store.summaries().expect("lists");
    assert_eq!(
        again, first,
        "the index gives the same summaries as the records"
    );
}

#[test]
fn an_index_of_another_format_is_ignored_and_rebuilt() {
    let (_dir, store) = store_with(&[record("r1", "1e-3", 0.9)]);
    let path = index_path(store.root());
    let stamped = Stamp::of(&store.dir_of("r1").join("run.toml")).expect("stamp");
    let mut stale = RunSummary::of(&record("r1", "1e-3", 0.9));
    stale.experiment = "from-the-stale-index".into();
    // This layout with an older version number: current stamps, so only the version tells.
    let older = String::from_utf8(encode(&[(stamped, stale.clone())]).expect("encodes"))
        .expect("UTF-8")
        .replacen(
            &format!("{{\"format\":{INDEX_FORMAT},"),
            "{\"format\":1,",
            1,
        );
    assert!(older.starts_with("{\"format\":1,"), "{older}");
    // Format 1's layout: whole summaries by id.
    let format_1 = serde_json::json!({
        "format": 1,
        "runs": {"r1": {"stamp": stamped, "summary": {"id": "r1",
            "experiment": "from-the-stale-index"}}}
    })
    .to_string();
    for old in [older, format_1] {
        fs::write(&path, &old).expect("write the old index");
        let runs = store.summaries().expect("lists");
        assert_eq!(&*runs[0].experiment, "exp", "read from run.toml, not {old}");
        assert_eq!(index_json(&store)["format"], INDEX_FORMAT, "rewritten");
    }
}

#[test]
fn a_damaged_index_is_ignored_and_rewritten() {
    let (_dir, store) = store_with(&[record("r1", "1e-3", 0.9), record("r2", "3e-4", 0.8)]);
    let expected = store.summaries().expect("lists");
    let path = index_path(store.root());
    let good = fs::read(&path).expect("index");
    let text = String::from_utf8(good.clone()).expect("UTF-8");
    // A position past the end of the string table.
    let out_of_range = text.replacen("\"experiment\":", "\"experiment\":99999", 1);
    assert_ne!(out_of_range, text);
    let damaged: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        b"\0\xff not an index".to_vec(),
        Vec::new(),
        b"{\"format\":2}".to_vec(),
        out_of_range.into_bytes(),
    ];
    for bytes in damaged {
        assert!(decode(&bytes).is_none());
        fs::write(&path, &bytes).expect("damage the index");
        assert_eq!(store.summaries().expect("lists"), expected);
        assert_eq!(
            decode(&fs::read(&path).expect("index")).map(|r| r.len()),
            Some(2),
            "a good index is written in its place"
        );
    }
}

#[test]
fn changed_added_and_removed_records_are_noticed_and_the_rest_come_from_the_index() {
    let (_dir, store) = store_with(&[
        record("r1", "1e-3", 0.9),
        record("r2", "3e-4", 0.8),
        record("r3", "1e-4", 0.7),
    ]);
    store.summaries().expect("lists");
    // Mark r1 in the index: while its record is unchanged, the mark must show.
    let path = index_path(store.root());
    let mut indexed = decode(&fs::read(&path).expect("index")).expect("decodes");
    for (_, s) in &mut indexed {
        if s.id == "r1" {
            s.metrics.insert("from.index".into(), 1.0);
        }
    }
    fs::write(&path, encode(&indexed).expect("encodes")).expect("write");

    store
        .save(&record("r2", "3e-4", 0.85))
        .expect("r2 saved again");
    fs::remove_dir_all(store.dir_of("r3")).expect("r3 removed");
    fs::create_dir_all(store.dir_of("r4")).expect("r4 dir");
    store.save(&record("r4", "1e-2", 0.6)).expect("r4 added");
    fs::create_dir_all(store.dir_of("not-a-run")).expect("a directory without a record");

    let runs = store.summaries().expect("lists");
    assert_eq!(ids(&runs), ["r4", "r2", "r1"]);
    let metric = |i: usize, name: &str| runs[i].metrics.get(name).copied();
    assert_eq!(
        metric(2, "from.index"),
        Some(1.0),
        "unchanged r1 from the index"
    );
    assert_eq!(
        metric(1, "evaluate.roc_auc"),
        Some(0.85),
        "changed r2 re-read"
    );
    assert_eq!(metric(0, "evaluate.roc_auc"), Some(0.6), "new r4 read");
    let file = decode(&fs::read(&path).expect("index")).expect("decodes");
    let in_file: BTreeMap<&str, &RunSummary> =
        file.iter().map(|(_, s)| (s.id.as_str(), s)).collect();
    assert_eq!(
        in_file.keys().copied().collect::<Vec<_>>(),
        ["r1", "r2", "r4"],
        "the removed run left the index"
    );
    assert_eq!(in_file["r2"].metrics["evaluate.roc_auc"], 0.85);
}

fn summary(id: &str, name: Option<&str>, status: RunStatus) -> RunSummary {
    RunSummary {
        id: id.into(),
        name: name.map(str::to_string),
        status,
        pid: 1,
        started: id.into(),
        duration_s: None,
        error: None,
        failed_stage: None,
        experiment: "exp".into(),
        experiment_path: "exp.toml".into(),
        overrides: vec![],
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        stages: vec![],
    }
}

/// Newest first, as `RunStore::summaries` returns them.
fn runs() -> Vec<RunSummary> {
    vec![
        summary("20261125-181502-042-7c1e", None, RunStatus::Failed),
        summary(
            "20261125-181401-000-ef0b",
            Some("tweak"),
            RunStatus::Succeeded,
        ),
        summary("20261125-181300-000-a0a0", None, RunStatus::Succeeded),
        summary(
            "20261124-090000-000-b1b1",
            Some("tweak"),
            RunStatus::Succeeded,
        ),
    ]
}

#[test]
fn latest_counts_successful_runs_only() {
    let runs = runs();
    assert_eq!(resolve_in(&runs, "latest").unwrap(), runs[1].id);
    assert_eq!(resolve_in(&runs, "latest~1").unwrap(), runs[2].id);
    assert_eq!(resolve_in(&runs, "latest~2").unwrap(), runs[3].id);
    let e = resolve_in(&runs, "latest~3").unwrap_err().to_string();
    assert!(e.contains("there are only 3 successful runs"), "{e}");
    assert!(
        e.contains("the newest run, 20261125-181502-042-7c1e, failed"),
        "{e}"
    );
    let failed_only = vec![runs[0].clone()];
    let e = resolve_in(&failed_only, "latest").unwrap_err().to_string();
    assert!(e.contains("no run has succeeded yet"), "{e}");
    let e = resolve_in(&[], "latest").unwrap_err().to_string();
    assert!(e.contains("there are no runs yet"), "{e}");
}

#[test]
fn ids_names_prefixes_and_suffixes() {
    let runs = runs();
    assert_eq!(resolve_in(&runs, &runs[2].id).unwrap(), runs[2].id);
    assert_eq!(
        resolve_in(&runs, "tweak").unwrap(),
        runs[1].id,
        "a name is the newest run with that name"
    );
    assert_eq!(resolve_in(&runs, "ef0b").unwrap(), runs[1].id, "suffix");
    assert_eq!(
        resolve_in(&runs, "7c1e").unwrap(),
        runs[0].id,
        "failed runs too"
    );
    assert_eq!(resolve_in(&runs, "20261124").unwrap(), runs[3].id, "prefix");
    match resolve_in(&runs, "20261125") {
        Err(RecordError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 3),
        other => panic!("expected ambiguous, got {other:?}"),
    }
    assert!(matches!(
        resolve_in(&runs, "zzzz"),
        Err(RecordError::NotFound(_))
    ));
    assert!(matches!(
        resolve_in(&runs, ""),
        Err(RecordError::NotFound(_))
    ));
}

/// A store with runs `aaa1` and `bbb2` whose `bbb2/run.toml` is then replaced by `damage`.
fn store_with_damaged(damage: impl FnOnce(&Path)) -> (tempfile::TempDir, RunStore) {
    let (dir, store) = store_with(&[
        record("20261125-100000-000-aaa1", "0.001", 0.75),
        record("20261125-110000-000-bbb2", "0.01", 0.8),
    ]);
    let path = store.dir_of("20261125-110000-000-bbb2").join("run.toml");
    fs::remove_file(&path).expect("remove the record");
    damage(&path);
    (dir, store)
}

/// What referring to the damaged run says: it must name its file and call it damaged.
fn damage_named(store: &RunStore, spec: &str) -> String {
    let err = store
        .resolve(spec)
        .expect_err("a damaged record")
        .to_string();
    assert!(
        err.contains("20261125-110000-000-bbb2/run.toml") && err.contains("damaged"),
        "{spec}: {err}"
    );
    err
}

#[test]
fn a_truncated_record_is_left_out_and_named_when_referred_to() {
    let (_dir, store) = store_with_damaged(|path| {
        fs::write(
            path,
            "format = 1\nid = \"20261125-110000-000-bbb2\"\nstatus = \"succ",
        )
        .expect("write")
    });
    assert_eq!(
        ids(&store.summaries().expect("summaries")),
        ["20261125-100000-000-aaa1"]
    );
    for spec in ["20261125-110000-000-bbb2", "bbb2", "20261125-11"] {
        damage_named(&store, spec);
    }
    // The readable run is still found.
    let found = store.resolve("aaa1").expect("found");
    assert_eq!(found.id, "20261125-100000-000-aaa1");
}

#[test]
fn a_garbled_record_is_named_when_referred_to() {
    let (_dir, store) =
        store_with_damaged(|path| fs::write(path, [0xff, 0xfe, 0x00, 0x41]).expect("write"));
    assert_eq!(store.summaries().expect("summaries").len(), 1);
    damage_named(&store, "bbb2");
}

#[cfg(unix)]
#[test]
fn a_record_linked_to_dev_zero_is_refused_without_reading_it() {
    let (_dir, store) =
        store_with_damaged(|path| std::os::unix::fs::symlink("/dev/zero", path).expect("symlink"));
    let started = std::time::Instant::now();
    assert_eq!(store.summaries().expect("summaries").len(), 1);
    let err = damage_named(&store, "bbb2");
    assert!(err.contains("link"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[cfg(unix)]
#[test]
fn a_record_that_is_a_fifo_does_not_hang_the_listing() {
    let (_dir, store) = store_with_damaged(|path| {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(status.success());
    });
    // The listing runs on another thread, so that a hang fails the test instead.
    let (done, finished) = std::sync::mpsc::channel();
    let root = store.root().to_path_buf();
    std::thread::spawn(move || {
        let store = RunStore::open(&root).expect("store");
        let listed = store.summaries().map(|s| s.len()).ok();
        let referred = store.resolve("bbb2").err().map(|e| e.to_string());
        let _ = done.send((listed, referred));
    });
    let (listed, referred) = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the listing finished");
    assert_eq!(listed, Some(1));
    let err = referred.expect("an error");
    assert!(
        err.contains("bbb2/run.toml") && err.contains("FIFO"),
        "{err}"
    );
}

#[test]
fn an_oversized_record_is_refused() {
    let (_dir, store) = store_with_damaged(|path| {
        let file = fs::File::create(path).expect("create");
        file.set_len(64 << 20).expect("set_len");
    });
    assert_eq!(store.summaries().expect("summaries").len(), 1);
    let err = damage_named(&store, "bbb2");
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn an_index_edited_into_other_valid_json_is_not_believed() {
    let (_dir, store) = store_with(&[record("r1", "1e-3", 0.75), record("r2", "3e-4", 0.8)]);
    let expected = store.summaries().expect("lists");
    assert_eq!(expected[1].metrics["evaluate.roc_auc"], 0.75);
    let path = index_path(store.root());
    let text = fs::read_to_string(&path).expect("index");
    // The metric's bits changed in place: still JSON, still an index, the same stamps.
    let edited = text.replacen(
        &0.75f64.to_bits().to_string(),
        &0.3873f64.to_bits().to_string(),
        1,
    );
    assert_ne!(edited, text);
    let edited_runs = decode(edited.as_bytes()).map(|runs| runs.len());
    fs::write(&path, &edited).expect("edit the index");
    let listed = store.summaries().expect("lists");
    assert_eq!(listed[1].metrics["evaluate.roc_auc"], 0.75, "from run.toml");
    assert_eq!(listed, expected);
    assert_eq!(edited_runs, None, "an edited index does not decode");
    assert_eq!(
        fs::read_to_string(&path).expect("index"),
        text,
        "rebuilt from the records"
    );
}
