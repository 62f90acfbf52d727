//! End-to-end tests of what reads the store: diff, verify, lock files, gc, and damaged
//! cache entries.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{cache_uses, Project};

/// `gen` is deterministic; `noise` is not (same key, different bytes on every execution).
const EXP: &str = r#"
name = "store"
seed = 1

[stages.gen]
kind = "shell"
command = "seq 1 5 > numbers.txt"
outputs = ["numbers.txt"]

[stages.sum]
kind = "shell"
inputs = { numbers = "gen.numbers.txt" }
command = "awk '{s+=$1} END {print s}' $PIPELINE_IN_NUMBERS > total.txt"
outputs = ["total.txt"]
"#;

const NOISE: &str = r#"
[stages.noise]
kind = "shell"
command = "od -An -N8 -tx8 /dev/urandom > noise.txt"
outputs = ["noise.txt"]
"#;

#[test]
fn diff_explains_parameters_stages_and_outputs() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml", "--name", "before"]);
    p.write("exp.toml", &EXP.replace("seq 1 5", "seq 1 6"));
    p.ok(&["run", "--allow-shell", "exp.toml", "--name", "after"]);

    let text = p.ok(&["diff", "before", "after"]);
    assert!(
        text.contains("gen.command: \"seq 1 5 > numbers.txt\" -> \"seq 1 6 > numbers.txt\""),
        "{text}"
    );
    assert!(text.contains("gen: parameter `command` changed"), "{text}");
    assert!(
        text.contains("sum: input `numbers` changed (from `gen.numbers.txt`)"),
        "{text}"
    );
    assert!(text.contains("gen.numbers.txt:"), "{text}");
    assert!(!text.contains("NOT REPRODUCIBLE"), "{text}");

    let json = p.ok(&["diff", "before", "after", "--format", "json"]);
    let start = json.find('{').expect("json object");
    let value: serde_json::Value = serde_json::from_str(&json[start..]).expect("valid json");
    assert_eq!(value["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(value["params"][0]["key"], "gen.command");

    let md = p.ok(&["diff", "before", "after", "--format", "markdown"]);
    assert!(md.contains("| `gen.command` |"), "{md}");

    let out = p.pipeline(&["diff", "before", "after", "--fail-on-diff"]);
    assert_eq!(out.status.code(), Some(1), "outputs differ");
    let same = p.pipeline(&["diff", "after", "after", "--fail-on-diff"]);
    assert_eq!(same.status.code(), Some(0));
}

#[test]
fn diff_and_verify_flag_a_non_reproducible_stage() {
    let p = Project::new();
    p.write("exp.toml", &format!("{EXP}{NOISE}"));
    p.ok(&["run", "--allow-shell", "exp.toml", "--no-cache"]);
    p.ok(&["run", "--allow-shell", "exp.toml", "--no-cache"]);
    let text = p.ok(&["diff", "latest~1", "latest"]);
    assert!(
        text.contains("NOT REPRODUCIBLE: 1 output(s) differ although their stage had the same key: noise.noise.txt"),
        "{text}"
    );
    let out = p.pipeline(&["verify", "--allow-shell", "latest"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("gen          same"), "{stdout}");
    assert!(
        stdout.contains("noise        DIFFERENT: noise.txt"),
        "{stdout}"
    );
}

#[test]
fn verify_passes_on_a_deterministic_run_and_leaves_no_scratch() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let out = p.ok(&["verify", "--allow-shell", "latest"]);
    assert!(out.contains("sum          same"), "{out}");
    assert!(out.contains("reproduces bit for bit"), "{out}");
    let scratch = p.path().join("artifacts/tmp");
    assert_eq!(fs::read_dir(scratch).expect("tmp").count(), 0);
    assert_eq!(
        p.ok(&["runs"]).lines().count(),
        2,
        "verify records no run in the store"
    );
}

#[test]
fn lock_files_catch_changed_outputs() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["lock", "--allow-shell", "exp.toml"]);
    let lock_text = fs::read_to_string(p.path().join("exp.lock")).expect("lock written");
    let lock: toml::Table = toml::from_str(&lock_text).expect("lock parses");
    assert_eq!(lock["experiment"].as_str(), Some("exp.toml"));
    assert_eq!(lock["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        lock["stages"][1]["outputs"]["total.txt"]["blake3"].as_str(),
        Some(blake3::hash(b"15\n").to_hex().as_str())
    );
    let out = p.ok(&["verify", "--allow-shell", "--lock", "exp.lock"]);
    assert!(out.contains("every output compared exactly"), "{out}");
    assert!(out.contains("exp.toml matches its lock"), "{out}");

    // Someone edits the experiment without updating the lock: CI catches it.
    p.write("exp.toml", &EXP.replace("seq 1 5", "seq 1 4"));
    let out = p.pipeline(&["verify", "--allow-shell", "--lock", "exp.lock"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("sum          total.txt        DIFFERENT"),
        "{stdout}"
    );
}

#[test]
fn gc_keeps_what_kept_runs_use() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    p.write("exp.toml", &EXP.replace("seq 1 5", "seq 1 7"));
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(p.cache_entries(), 4);

    let dry = p.ok(&["gc", "--keep-last", "1", "--dry-run"]);
    assert!(dry.contains("would remove 2 cache entries"), "{dry}");
    assert_eq!(p.cache_entries(), 4, "a dry run removes nothing");
    let all_kept = p.ok(&["gc"]);
    assert!(all_kept.contains("removed 0 cache entries"), "{all_kept}");
    let done = p.ok(&["gc", "--keep-last", "1"]);
    assert!(done.contains("removed 2 cache entries"), "{done}");
    assert_eq!(p.cache_entries(), 2);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=hit", "sum=hit"]);
}

/// The path of `name` in the cache entry of `key`, made writable, and its bytes with the first
/// bit flipped.
fn flipped_entry_file(p: &Project, key: &str, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let file = p
        .path()
        .join("artifacts/cache/entries")
        .join(&key[..2])
        .join(key)
        .join(name);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = fs::read(&file).expect("read");
    bytes[0] ^= 1;
    (file, bytes)
}

#[test]
fn a_flipped_byte_in_the_cache_is_detected_and_recomputed() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let record = p.latest();
    let key = record["stages"][0]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let (file, bytes) = flipped_entry_file(&p, &key, "numbers.txt");
    // Replace rather than write in place: the run directory's hard link keeps the good copy.
    fs::remove_file(&file).expect("rm");
    fs::write(&file, &bytes).expect("corrupt");

    let status = p.ok(&["status", "exp.toml"]);
    assert!(
        status.contains("gen  will run: the cached result was damaged"),
        "{status}"
    );
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let uses = cache_uses(&p.latest());
    assert_eq!(uses[0], "gen=damaged", "{uses:?}");
    assert_eq!(
        uses[1], "sum=hit",
        "same bytes again, so downstream is reused"
    );
    assert_eq!(fs::read(&file).expect("read"), b"1\n2\n3\n4\n5\n");
}

#[test]
fn an_edit_in_place_is_caught_after_hits_stopped_reading_the_file() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let record = p.latest();
    let gen = &record["stages"][0];
    let key = gen["key"].as_str().expect("key").to_string();
    let digest = gen["outputs"]["numbers.txt"]["blake3"]
        .as_str()
        .expect("digest")
        .to_string();
    // Once the entry has gone unchanged long enough, a hit remembers its files' identity
    // and later hits do not read them.
    std::thread::sleep(
        pipeline_engine::store::checked::SETTLED + std::time::Duration::from_millis(300),
    );
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=hit", "sum=hit"]);
    let remembered = p
        .path()
        .join("artifacts/cache/checked")
        .join(&digest[..2])
        .join(&digest);
    assert!(remembered.is_file(), "{} missing", remembered.display());

    // An edit in place, same length, through the entry's link to the blob: the file's change
    // time moves, so the next hit reads it again and finds the damage.
    let (file, bytes) = flipped_entry_file(&p, &key, "numbers.txt");
    fs::write(&file, &bytes).expect("edit in place");
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest())[0], "gen=damaged");
    assert_eq!(fs::read(&file).expect("read"), b"1\n2\n3\n4\n5\n");
}

#[test]
fn an_edit_in_place_of_a_run_directory_file_is_caught_and_recomputed() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let record = p.latest();
    let published = p
        .runs_dir()
        .join(record["id"].as_str().expect("id"))
        .join("numbers.txt");
    // The run directory's file is the cache's own, linked (stored once, however small).
    assert!(
        std::os::unix::fs::MetadataExt::nlink(&fs::metadata(&published).expect("published")) >= 2
    );
    // Let a hit remember the blob's identity, so only the identity can catch the edit.
    std::thread::sleep(
        pipeline_engine::store::checked::SETTLED + std::time::Duration::from_millis(300),
    );
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=hit", "sum=hit"]);

    // A careless edit in place, same length, of the run directory's file: it reaches the
    // cache's blob through the link, and is caught there rather than trusted.
    fs::set_permissions(&published, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&published, b"1\n2\n3\n4\n6\n").expect("edit in place");
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=damaged", "sum=hit"]);
    let fresh = p
        .runs_dir()
        .join(p.latest()["id"].as_str().expect("id"))
        .join("numbers.txt");
    assert_eq!(fs::read(&fresh).expect("read"), b"1\n2\n3\n4\n5\n");
}
