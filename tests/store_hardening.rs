//! The store against a hostile or careless user: gc racing live runs, edited and broken
//! manifests, cache files swapped for devices and links, altered run directories, killed
//! computations' leftovers, and what gc really frees. Each case failed before its fix.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cache_uses, Project, FAILURE, USAGE};

/// `gen` is deterministic and counts its executions in `counter` (outside the store), so a
/// test can tell whether anything was recomputed.
fn counted(counter: &Path) -> String {
    format!(
        r#"
name = "hardening"
seed = 1

[stages.gen]
kind = "shell"
command = "echo run >> {counter}; seq 1 5 > numbers.txt"
outputs = ["numbers.txt"]

[stages.sum]
kind = "shell"
inputs = {{ numbers = "gen.numbers.txt" }}
command = "awk '{{s+=$1}} END {{print s}}' $PIPELINE_IN_NUMBERS > total.txt"
outputs = ["total.txt"]
"#,
        counter = counter.display()
    )
}

/// `a`, then `b`, which signals that it started by creating `started`, waits while `hold`
/// exists, and only then reads `a`'s output: a run that needs an entry long after it got it.
fn held(started: &Path, hold: &Path) -> String {
    format!(
        r#"
name = "held"
seed = 1

[stages.a]
kind = "shell"
command = "seq 1 5 > numbers.txt"
outputs = ["numbers.txt"]

[stages.b]
kind = "shell"
inputs = {{ numbers = "a.numbers.txt" }}
command = "touch {started}; while [ -f {hold} ]; do sleep 0.05; done; awk '{{s+=$1}} END {{print s}}' $PIPELINE_IN_NUMBERS > total.txt"
outputs = ["total.txt"]
"#,
        started = started.display(),
        hold = hold.display()
    )
}

/// The quickstart at a few seconds' size: 24 synthetic images, 2 epochs.
fn mini_quickstart() -> String {
    let text =
        fs::read_to_string(common::repo().join("experiments/quickstart.toml")).expect("quickstart");
    let mini = text
        .replace("count_per_class = 120", "count_per_class = 12")
        .replace("epochs = 30", "epochs = 2");
    assert_ne!(
        mini, text,
        "the quickstart still has the parameters this test shrinks"
    );
    mini
}

fn key_of(record: &toml::Table, stage: &str) -> String {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some(stage))
        .and_then(|s| s["key"].as_str())
        .expect("stage key")
        .to_string()
}

fn entry_dir(p: &Project, key: &str) -> PathBuf {
    p.path()
        .join("artifacts/cache/entries")
        .join(&key[..2])
        .join(key)
}

fn run_dir(p: &Project, record: &toml::Table) -> PathBuf {
    p.runs_dir().join(record["id"].as_str().expect("id"))
}

fn make_writable(path: &Path) {
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Removes a file or directory even where the store made it read-only.
fn remove(path: &Path) {
    let meta = fs::symlink_metadata(path).expect("exists");
    if meta.is_dir() {
        make_writable(path);
        fs::remove_dir_all(path).expect("rm -r");
    } else {
        fs::remove_file(path).expect("rm");
    }
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipeline")
}

/// Waits for `child`, killing it and failing the test when it takes longer than `limit`: a
/// store that reads a device or blocks on a FIFO must fail the test, not hang it.
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} did not finish within {limit:?}:\n{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// `pipeline ARGS`, failing the test if it takes longer than 60 s.
fn bounded(p: &Project, args: &[&str]) -> Output {
    finish(
        spawn(p, args),
        Duration::from_secs(60),
        &format!("pipeline {args:?}"),
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: timed out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmp_dirs(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(p.path().join("artifacts/cache/tmp"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// gc against live runs

/// Starts the held experiment and returns once `b` is at work (so `a`'s entry exists and the
/// run will read it later).
fn start_held_run(p: &Project) -> (Child, PathBuf) {
    let started = p.path().join("started");
    let hold = p.path().join("hold");
    fs::write(&hold, "").expect("hold");
    p.write("exp.toml", &held(&started, &hold));
    let run = spawn(p, &["run", "exp.toml"]);
    wait_for("stage b starting", || started.exists());
    assert_eq!(p.cache_entries(), 1, "a is published, b is at work");
    (run, hold)
}

#[test]
fn gc_waits_for_a_live_run_and_removes_nothing_it_still_needs() {
    let p = Project::trusting_shell();
    let (run, hold) = start_held_run(&p);
    let a_entry = entry_dir(&p, &key_of(&p.latest(), "a"));

    // `--keep-last 0` keeps nothing: only the lease protects what the run still reads.
    let mut gc = spawn(&p, &["gc", "--keep-last", "0"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        gc.try_wait().expect("try_wait").is_none(),
        "gc must wait while a run holds the store"
    );
    assert!(
        a_entry.join("numbers.txt").is_file(),
        "a's result is still there"
    );

    fs::remove_file(&hold).expect("release");
    let run = finish(run, Duration::from_secs(30), "the held run");
    assert!(
        run.status.success(),
        "the run must succeed:\n{}",
        text(&run)
    );
    let record = p.latest();
    assert_eq!(record["status"].as_str(), Some("succeeded"));
    assert_eq!(
        fs::read_to_string(run_dir(&p, &record).join("total.txt")).expect("total"),
        "15\n"
    );

    let gc = finish(gc, Duration::from_secs(30), "gc");
    let gc_text = text(&gc);
    assert!(gc.status.success(), "{gc_text}");
    assert!(
        gc_text.contains("waiting: run ") && gc_text.contains(" is using the store"),
        "gc says why it waits:\n{gc_text}"
    );
    assert!(gc_text.contains("removed 2 cache entries"), "{gc_text}");
    assert_eq!(p.cache_entries(), 0, "after the run, gc did its work");
}

#[test]
fn gc_no_wait_fails_at_once_while_a_run_holds_the_store() {
    let p = Project::trusting_shell();
    let (run, hold) = start_held_run(&p);
    let id = p.latest()["id"].as_str().expect("id").to_string();

    let out = bounded(&p, &["gc", "--keep-last", "0", "--no-wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FAILURE), "{}", text(&out));
    assert_eq!(
        err.trim_end(),
        format!(
            "error: the store is in use by run {id} (pid {}): gc removed nothing; run it again when it has finished, or without --no-wait to wait",
            run.id()
        )
    );
    assert_eq!(p.cache_entries(), 1, "nothing removed");

    fs::remove_file(&hold).expect("release");
    let run = finish(run, Duration::from_secs(30), "the held run");
    assert!(run.status.success(), "{}", text(&run));
}

#[test]
fn gc_removes_the_leftovers_of_killed_computations_and_verifications() {
    let p = Project::trusting_shell();
    let (mut run, hold) = start_held_run(&p);
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    let leftovers = tmp_dirs(&p);
    assert_eq!(leftovers.len(), 1, "the killed stage's work: {leftovers:?}");
    let b_key = &leftovers[0][..64];

    // A verification killed mid-way leaves its scratch store too. By id: `latest` names the
    // newest run that succeeded.
    let killed = p.latest();
    let id = killed["id"].as_str().expect("id");
    let mut verify = spawn(&p, &["verify", id]);
    let scratch = p.path().join("artifacts/tmp");
    wait_for("verify's stage b starting", || {
        fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0) == 1
            && p.path().join("started").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    verify.kill().expect("SIGKILL");
    verify.wait().expect("reaped");
    assert_eq!(fs::read_dir(&scratch).expect("scratch").count(), 1);

    let dry = p.ok(&["gc", "--dry-run"]);
    assert!(
        dry.contains(&format!("would remove stale cache/tmp/{b_key}.")),
        "{dry}"
    );
    assert!(dry.contains("would remove stale tmp/verify-"), "{dry}");
    assert!(
        dry.contains(
            "would remove 0 cache entries, 0 run directories and 2 stale temporary directories"
        ),
        "{dry}"
    );
    assert_eq!(tmp_dirs(&p).len(), 1, "a dry run removes nothing");

    let done = p.ok(&["gc"]);
    assert!(done.contains("and 2 stale temporary directories"), "{done}");
    assert!(tmp_dirs(&p).is_empty(), "{:?}", tmp_dirs(&p));
    assert_eq!(fs::read_dir(&scratch).expect("scratch").count(), 0);
    assert_eq!(p.cache_entries(), 1, "a's entry is referenced and kept");

    fs::remove_file(&hold).expect("release");
    p.ok(&["run", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["a=hit", "b=miss"]);
}

// ---------------------------------------------------------------------------------------------
// The manifest verifies itself

#[test]
fn an_edited_metric_in_a_manifest_is_damage_not_a_result() {
    let p = Project::trusting_shell();
    p.write("mini.toml", &mini_quickstart());
    p.ok(&["run", "mini.toml"]);
    let first = p.latest();
    let recorded = first["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some("evaluate"))
        .and_then(|s| s["metrics"]["test_accuracy"].as_float())
        .expect("test_accuracy");

    let manifest = entry_dir(&p, &key_of(&first, "evaluate")).join("manifest.toml");
    make_writable(&manifest);
    let text = fs::read_to_string(&manifest).expect("manifest");
    let forged: String = text
        .lines()
        .map(|l| {
            if l.starts_with("test_accuracy = ") {
                "test_accuracy = 0.999".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(forged, text, "the manifest records test_accuracy");
    fs::write(&manifest, forged).expect("forge");

    let out = p.ok(&["run", "mini.toml"]);
    assert!(
        out.contains("cache entry damaged: manifest.toml does not match its own digest"),
        "the damage is reported:\n{out}"
    );
    let second = p.latest();
    let uses = cache_uses(&second);
    assert!(uses.contains(&"evaluate=damaged".to_string()), "{uses:?}");
    let metric = second["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some("evaluate"))
        .and_then(|s| s["metrics"]["test_accuracy"].as_float())
        .expect("test_accuracy");
    assert_eq!(
        metric, recorded,
        "the recomputed metric, not the forged one"
    );
    let mode = fs::metadata(&manifest)
        .expect("manifest")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "the manifest is read-only like the files");
}

/// Every way a manifest can be broken; each is damage (or a plain miss where the manifest is
/// simply gone), never a failed run or status.
#[test]
fn a_broken_manifest_is_damage_and_recomputed_never_a_failure() {
    type Break = fn(&Path, &Path);
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "a flipped byte in its syntax",
            |m, _| {
                let mut b = fs::read(m).expect("read");
                let at = b.iter().position(|&c| c == b'=').expect("an `=`");
                b[at] ^= 1;
                fs::write(m, b).expect("write");
            },
            "damaged",
        ),
        (
            "an edited value that still parses",
            |m, _| {
                let t = fs::read_to_string(m).expect("read");
                fs::write(m, t.replace("kind_version = 1", "kind_version = 2")).expect("write");
            },
            "damaged",
        ),
        (
            "truncated",
            |m, _| {
                let b = fs::read(m).expect("read");
                fs::write(m, &b[..b.len() / 2]).expect("write");
            },
            "damaged",
        ),
        ("empty", |m, _| fs::write(m, "").expect("write"), "damaged"),
        (
            "its digest line removed",
            |m, _| {
                let t = fs::read_to_string(m).expect("read");
                let rest = t.split_once('\n').expect("lines").1;
                fs::write(m, rest).expect("write");
            },
            "damaged",
        ),
        (
            "not UTF-8",
            |m, _| fs::write(m, [0xff, 0xfe, 0x00, 0x80]).expect("write"),
            "damaged",
        ),
        (
            "another entry's manifest, intact",
            |m, other| {
                fs::copy(other, m).expect("copy");
            },
            "damaged",
        ),
        (
            "a symlink to /dev/zero",
            |m, _| {
                fs::remove_file(m).expect("rm");
                std::os::unix::fs::symlink("/dev/zero", m).expect("symlink");
            },
            "damaged",
        ),
        (
            "a directory",
            |m, _| {
                fs::remove_file(m).expect("rm");
                fs::create_dir(m).expect("mkdir");
            },
            "damaged",
        ),
        ("deleted", |m, _| fs::remove_file(m).expect("rm"), "miss"),
    ];
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    for (what, break_it, expected) in &cases {
        let record = p.latest();
        let gen = entry_dir(&p, &key_of(&record, "gen"));
        let other = entry_dir(&p, &key_of(&record, "sum")).join("manifest.toml");
        let manifest = gen.join("manifest.toml");
        make_writable(&gen);
        make_writable(&manifest);
        break_it(&manifest, &other);

        let status = bounded(&p, &["status", "exp.toml"]);
        assert!(
            status.status.success(),
            "{what}: status fails:\n{}",
            text(&status)
        );
        let why = if *expected == "damaged" {
            "gen  will run: the cached result was damaged (manifest.toml "
        } else {
            "gen  will run: its earlier result is no longer in the cache"
        };
        assert!(text(&status).contains(why), "{what}:\n{}", text(&status));
        let out = bounded(&p, &["run", "exp.toml"]);
        assert!(
            out.status.success(),
            "{what}: the run fails:\n{}",
            text(&out)
        );
        assert_eq!(
            cache_uses(&p.latest()),
            [format!("gen={expected}"), "sum=hit".to_string()],
            "{what}"
        );
        // Recomputed: the entry is whole again, and the next run reuses it.
        p.ok(&["run", "exp.toml"]);
        assert_eq!(cache_uses(&p.latest()), ["gen=hit", "sum=hit"], "{what}");
    }
    assert_eq!(
        fs::read_to_string(&counter)
            .expect("counter")
            .lines()
            .count(),
        1 + cases.len(),
        "gen ran once at first and once per broken manifest"
    );
}

// ---------------------------------------------------------------------------------------------
// Cache files: type and size before bytes

#[test]
fn a_cache_file_swapped_for_a_device_fifo_link_or_other_size_is_damage_found_without_reading_it() {
    type Swap = fn(&Path);
    let cases: Vec<(&str, Swap)> = vec![
        ("a symlink to /dev/zero", |f| {
            std::os::unix::fs::symlink("/dev/zero", f).expect("symlink")
        }),
        ("a FIFO", |f| {
            let status = std::process::Command::new("mkfifo")
                .arg(f)
                .status()
                .expect("mkfifo");
            assert!(status.success());
        }),
        ("a directory", |f| fs::create_dir(f).expect("mkdir")),
        ("one byte longer", |f| {
            fs::write(f, b"1\n2\n3\n4\n5\n\n").expect("write")
        }),
        ("a symlink to a file with the right bytes", |f| {
            let copy = f.with_file_name("elsewhere");
            fs::write(&copy, b"1\n2\n3\n4\n5\n").expect("write");
            std::os::unix::fs::symlink(&copy, f).expect("symlink");
        }),
    ];
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    for (what, swap) in &cases {
        let gen = entry_dir(&p, &key_of(&p.latest(), "gen"));
        make_writable(&gen);
        let file = gen.join("numbers.txt");
        remove(&file);
        swap(&file);

        let status = bounded(&p, &["status", "exp.toml"]);
        assert!(
            text(&status).contains("gen  will run: the cached result was damaged"),
            "{what}:\n{}",
            text(&status)
        );
        let out = bounded(&p, &["run", "exp.toml"]);
        assert!(out.status.success(), "{what}:\n{}", text(&out));
        assert!(
            text(&out).contains("cache entry damaged: numbers.txt"),
            "{what}: the damaged file is named:\n{}",
            text(&out)
        );
        assert_eq!(
            cache_uses(&p.latest()),
            ["gen=damaged", "sum=hit"],
            "{what}"
        );
        let meta = fs::symlink_metadata(&file).expect("recomputed");
        assert!(meta.is_file(), "{what}: a regular file again");
    }
}

#[test]
fn a_stage_that_outputs_a_link_or_fifo_fails_clearly_and_publishes_nothing() {
    let cases = [
        ("ln -s /dev/zero out.txt", "a symbolic link"),
        ("mkfifo out.txt", "a FIFO"),
        (
            "echo hi > real.txt; ln -s real.txt out.txt",
            "a symbolic link",
        ),
    ];
    for (command, what) in cases {
        let p = Project::trusting_shell();
        p.write(
            "exp.toml",
            &format!(
                "name = \"links\"\n[stages.s]\nkind = \"shell\"\ncommand = \"{command}\"\noutputs = [\"out.txt\"]\n"
            ),
        );
        let out = bounded(&p, &["run", "exp.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(FAILURE), "{command}:\n{err}");
        let last = err.lines().last().expect("an error line");
        assert_eq!(
            last,
            format!(
                "error: stage `s`: output out.txt must be a regular file, not {what} (write the bytes, or copy them with `cp -L`)"
            ),
            "{command}"
        );
        assert_eq!(p.cache_entries(), 0, "{command}: nothing published");
        assert!(tmp_dirs(&p).is_empty(), "{command}: {:?}", tmp_dirs(&p));
    }
}

// ---------------------------------------------------------------------------------------------
// Run directories: recorded digests first

#[test]
fn verify_names_an_altered_published_file_and_fails_before_recomputing() {
    type Alter = fn(&Path);
    let cases: Vec<(&str, &str, Alter)> = vec![
        ("total.txt", "edited in place", |f| {
            make_writable(f);
            fs::write(f, "16\n").expect("edit")
        }),
        ("total.txt", "deleted", |f| fs::remove_file(f).expect("rm")),
        ("total.txt", "replaced by a symlink to /dev/zero", |f| {
            fs::remove_file(f).expect("rm");
            std::os::unix::fs::symlink("/dev/zero", f).expect("symlink");
        }),
        ("numbers.txt", "one byte flipped", |f| {
            make_writable(f);
            let mut b = fs::read(f).expect("read");
            b[0] ^= 1;
            fs::write(f, b).expect("write");
        }),
        ("experiment.toml", "edited", |f| {
            let t = fs::read_to_string(f).expect("read");
            fs::write(f, t.replace("seq 1 5", "seq 1 6")).expect("write");
        }),
    ];
    for (file, what, alter) in &cases {
        let p = Project::trusting_shell();
        let counter = p.path().join("counter");
        p.write("exp.toml", &counted(&counter));
        p.ok(&["run", "exp.toml"]);
        let record = p.latest();
        let id = record["id"].as_str().expect("id");
        alter(&run_dir(&p, &record).join(file));

        let out = bounded(&p, &["verify", "latest"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file} {what}:\n{all}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("error: run {id}: {file} "))
                    && l.contains("does not match the digest recorded in run.toml")),
            "{file} {what}: one line naming the file:\n{all}"
        );
        assert!(!all.contains("reproduces"), "{file} {what}:\n{all}");
        assert_eq!(
            fs::read_to_string(&counter).expect("counter"),
            "run\n",
            "{file} {what}: nothing was recomputed"
        );
    }
}

#[test]
fn published_small_files_are_links_so_editing_one_is_caught_and_recomputed() {
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    let record = p.latest();
    let published = run_dir(&p, &record).join("total.txt");
    let cached = entry_dir(&p, &key_of(&record, "sum")).join("total.txt");
    let mode = fs::metadata(&published)
        .expect("published")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "published files are read-only");
    assert_eq!(
        fs::metadata(&published).expect("published").ino(),
        fs::metadata(&cached).expect("cached").ino(),
        "a published file is the cache's own, linked: each distinct file stored once"
    );
    // A careless edit in place, as an editor or spreadsheet would make it: it reaches the
    // cache through the link, and the next run finds it damaged and recomputes.
    make_writable(&published);
    fs::write(&published, "999\n").expect("edit");
    p.ok(&["run", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=hit", "sum=damaged"]);
    assert_eq!(
        fs::read_to_string(run_dir(&p, &p.latest()).join("total.txt")).expect("total"),
        "15\n"
    );
}

#[test]
fn predict_refuses_a_checkpoint_with_a_flipped_byte() {
    let p = Project::trusting_shell();
    p.write("mini.toml", &mini_quickstart());
    p.ok(&["run", "mini.toml", "--name", "mini"]);
    let record = p.latest();
    let image = p.path().join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([90, 90, 90]))
        .save(&image)
        .expect("png");
    let image = image.to_str().expect("utf-8 path");
    p.ok(&["predict", "mini", image]);

    // A frozen-base run publishes its head: what predict reads of the run directory.
    let checkpoint = run_dir(&p, &record).join("head.safetensors");
    make_writable(&checkpoint);
    let mut bytes = fs::read(&checkpoint).expect("checkpoint");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    // In place, as a careless edit would: the cache's copy is a hard link to the same bytes.
    fs::write(&checkpoint, bytes).expect("flip");
    let err = p.fails(&["predict", "mini", image]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: run {}: {} does not match the digest recorded in run.toml (altered or damaged since the run)",
            record["id"].as_str().expect("id"),
            checkpoint.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// What gc frees

/// `big` writes 5 MB, published into the run directory as a hard link (it is large).
fn big(fill: &str) -> String {
    format!(
        r#"
name = "big"
seed = 1

[stages.big]
kind = "shell"
command = "head -c 5000000 /dev/zero | tr '\\0' '{fill}' > big.bin"
outputs = ["big.bin"]
"#
    )
}

#[test]
fn gc_reports_the_bytes_it_really_frees_and_prunes_old_run_directories() {
    let p = Project::trusting_shell();
    p.write("exp.toml", &big("a"));
    p.ok(&["run", "exp.toml", "--name", "old"]);
    let old = p.latest();
    p.write("exp.toml", &big("b"));
    p.ok(&["run", "exp.toml", "--name", "new"]);
    let new = p.latest();
    assert_eq!(p.cache_entries(), 2);

    // The old entry's 5 MB are still linked from the old run's directory: removing the entry
    // frees only its manifest.
    let done = p.ok(&["gc", "--keep-last", "1"]);
    let freed = done
        .lines()
        .find(|l| l.starts_with("removed 1 cache entries, 0 run directories"))
        .expect("the summary line");
    assert!(
        freed.contains(" B freed;") || freed.contains(" kB freed;"),
        "only the manifest is freed:\n{done}"
    );
    assert!(
        done.contains(
            "5.0 MB of it stays on disk, still linked from 1 older run directory (add --prune-runs to remove them)"
        ),
        "{done}"
    );

    let dry = p.ok(&["gc", "--keep-last", "1", "--prune-runs", "--dry-run"]);
    let old_id = old["id"].as_str().expect("id");
    assert!(dry.contains(&format!("would remove run {old_id}")), "{dry}");
    assert!(
        dry.contains("would remove 0 cache entries, 1 run directory"),
        "{dry}"
    );
    assert!(dry.contains("5.0 MB would be freed"), "{dry}");
    assert!(
        p.runs_dir().join(old_id).is_dir(),
        "a dry run removes nothing"
    );

    let pruned = p.ok(&["gc", "--keep-last", "1", "--prune-runs"]);
    assert!(pruned.contains("5.0 MB freed"), "{pruned}");
    assert!(
        !pruned.contains("stays on disk"),
        "nothing is held from outside the store once the old run is pruned:\n{pruned}"
    );
    assert!(!p.runs_dir().join(old_id).exists());
    assert!(
        run_dir(&p, &new).join("big.bin").is_file(),
        "the kept run is whole"
    );
    p.ok(&["run", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["big=hit"]);
    assert_eq!(
        p.ok(&["runs"]).lines().count(),
        3,
        "header, new and the rerun"
    );
}

#[test]
fn gc_prune_runs_needs_keep_last() {
    let p = Project::trusting_shell();
    let out = p.pipeline(&["gc", "--prune-runs"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--keep-last"), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// Escapes: nothing in the store may lead gc or a run outside it

/// A manifest is checked by its own digest, which anyone can recompute: it is a guard against
/// accidents, not a signature. What it names must still stay inside its entry.
#[test]
fn a_manifest_naming_a_file_outside_its_entry_is_damage() {
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    let victim = p.write("victim.txt", "1\n2\n3\n4\n5\n");
    let gen = entry_dir(&p, &key_of(&p.latest(), "gen"));
    let manifest = gen.join("manifest.toml");
    make_writable(&manifest);
    let text = fs::read_to_string(&manifest).expect("manifest");
    let body = text.split_once('\n').expect("digest line").1.replace(
        "file = \"numbers.txt\"",
        "file = \"../../../../../victim.txt\"",
    );
    // A forger recomputes the digest: the manifest is consistent, only its content is wrong.
    fs::write(
        &manifest,
        format!(
            "# blake3 {}\n{body}",
            blake3::hash(body.as_bytes()).to_hex()
        ),
    )
    .expect("forge");
    let out = p.ok(&["run", "exp.toml"]);
    assert!(
        out.contains("manifest.toml names a file outside its entry: ../../../../../victim.txt"),
        "{out}"
    );
    assert_eq!(cache_uses(&p.latest()), ["gen=damaged", "sum=hit"]);
    assert_eq!(
        fs::read_to_string(&victim).expect("victim"),
        "1\n2\n3\n4\n5\n"
    );
}

#[test]
fn an_entry_directory_swapped_for_a_link_is_damage_and_its_target_is_left_alone() {
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    let gen = entry_dir(&p, &key_of(&p.latest(), "gen"));
    // The entry, intact, moved elsewhere and linked back.
    let elsewhere = p.path().join("elsewhere");
    fs::rename(&gen, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &gen).expect("link");
    let out = p.ok(&["run", "exp.toml"]);
    assert!(
        out.contains("cache entry damaged: the entry is a symbolic link, not a directory"),
        "{out}"
    );
    assert_eq!(cache_uses(&p.latest()), ["gen=damaged", "sum=hit"]);
    assert!(fs::symlink_metadata(&gen).expect("entry").is_dir());
    let kept = fs::metadata(elsewhere.join("numbers.txt")).expect("the target is untouched");
    assert_eq!(kept.permissions().mode() & 0o222, 0, "and still read-only");
}

#[test]
fn gc_prunes_only_run_directories_and_never_follows_a_record_or_a_link_out() {
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    p.ok(&["run", "exp.toml"]);
    let victim = p.path().join("victim");
    fs::create_dir(&victim).expect("mkdir");
    fs::write(victim.join("precious.txt"), "keep me").expect("write");

    // A run directory copied by hand whose record claims to be elsewhere.
    let latest = p.latest();
    let id = latest["id"].as_str().expect("id").to_string();
    let record = fs::read_to_string(run_dir(&p, &latest).join("run.toml")).expect("record");
    let forged = p.runs_dir().join("copy");
    fs::create_dir(&forged).expect("mkdir");
    fs::write(
        forged.join("run.toml"),
        record.replace(&format!("id = \"{id}\""), "id = \"../../victim\""),
    )
    .expect("forge");
    // Leftovers that are links to the victim, where gc removes leftovers.
    std::os::unix::fs::symlink(&victim, p.path().join("artifacts/cache/tmp/link")).expect("ln");
    fs::create_dir_all(p.path().join("artifacts/tmp")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, p.path().join("artifacts/tmp/verify-link")).expect("ln");

    let out = p.ok(&["gc", "--keep-last", "0", "--prune-runs"]);
    assert!(
        out.contains("removed 2 cache entries, 2 run directories"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(victim.join("precious.txt")).expect("the victim survives"),
        "keep me"
    );
    assert!(
        forged.join("run.toml").is_file(),
        "not a run of this store: left alone"
    );
    assert!(!p.path().join("artifacts/cache/tmp/link").exists());
    assert!(!p.path().join("artifacts/tmp/verify-link").exists());
}

#[test]
fn stray_files_in_the_store_do_not_break_gc_or_runs() {
    let p = Project::trusting_shell();
    let counter = p.path().join("counter");
    p.write("exp.toml", &counted(&counter));
    p.ok(&["run", "exp.toml"]);
    let entries = p.path().join("artifacts/cache/entries");
    // What file managers and careless hands leave behind.
    fs::write(entries.join(".DS_Store"), "x").expect("write");
    let shard = fs::read_dir(&entries)
        .expect("entries")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a shard");
    fs::write(shard.join("a"), "x").expect("write");
    fs::create_dir(shard.join("notes")).expect("mkdir");
    let out = p.ok(&["gc", "--keep-last", "0"]);
    assert!(out.contains("removed 2 cache entries"), "{out}");
    p.ok(&["run", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["gen=miss", "sum=miss"]);
}

// ---------------------------------------------------------------------------------------------
// Kills and races, many times over

/// Checks, independently of the code under test, that the store holds nothing half-made:
/// every entry's manifest matches its digest line and every file it lists has the recorded
/// size and digest; every run record parses and every file it says it published is whole.
fn assert_store_whole(p: &Project, context: &str) {
    let entries = p.path().join("artifacts/cache/entries");
    for shard in fs::read_dir(&entries).expect("entries") {
        for entry in fs::read_dir(shard.expect("shard").path()).expect("shard") {
            let dir = entry.expect("entry").path();
            let text = fs::read_to_string(dir.join("manifest.toml"))
                .unwrap_or_else(|e| panic!("{context}: {}: {e}", dir.display()));
            let (first, body) = text.split_once('\n').expect("digest line");
            assert_eq!(
                first,
                format!("# blake3 {}", blake3::hash(body.as_bytes()).to_hex()),
                "{context}: {}",
                dir.display()
            );
            let manifest: toml::Table = toml::from_str(body).expect("manifest parses");
            for f in manifest["files"].as_array().expect("files") {
                let bytes = fs::read(dir.join(f["file"].as_str().expect("file"))).expect("file");
                assert_eq!(
                    Some(bytes.len() as i64),
                    f["size"].as_integer(),
                    "{context}"
                );
                assert_eq!(
                    Some(blake3::hash(&bytes).to_hex().as_str()),
                    f["blake3"].as_str(),
                    "{context}: {}",
                    dir.display()
                );
            }
        }
    }
    for run in fs::read_dir(p.runs_dir()).expect("runs") {
        let dir = run.expect("run").path();
        let Ok(text) = fs::read_to_string(dir.join("run.toml")) else {
            continue; // killed before its record was first written
        };
        let record: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{context}: {}: {e}", dir.display()));
        for stage in record["stages"].as_array().expect("stages") {
            for output in stage["outputs"].as_table().expect("outputs").values() {
                let Some(name) = output.get("published").and_then(|v| v.as_str()) else {
                    continue;
                };
                let bytes = fs::read(dir.join(name))
                    .unwrap_or_else(|e| panic!("{context}: {name} recorded but {e}"));
                assert_eq!(
                    Some(blake3::hash(&bytes).to_hex().as_str()),
                    output["blake3"].as_str(),
                    "{context}: {}/{name}",
                    dir.display()
                );
            }
        }
    }
}

/// Four stages with some work in each, and a published file large enough to be linked.
const WORK: &str = r#"
name = "work"
seed = 1

[stages.a]
kind = "shell"
command = "seq 1 20000 > a.txt; sleep 0.03"
outputs = ["a.txt"]

[stages.b]
kind = "shell"
inputs = { a = "a.a.txt" }
command = "awk '{print $1 * 3}' $PIPELINE_IN_A > b.txt; sleep 0.03"
outputs = ["b.txt"]

[stages.big]
kind = "shell"
inputs = { b = "b.b.txt" }
command = "cat $PIPELINE_IN_B > big.bin; head -c 4500000 /dev/zero >> big.bin"
outputs = ["big.bin"]

[stages.sum]
kind = "shell"
inputs = { b = "b.b.txt" }
command = "awk '{s+=$1} END {print s}' $PIPELINE_IN_B > total.txt"
outputs = ["total.txt"]
"#;

#[test]
fn twenty_sigkills_at_spread_moments_leave_a_store_that_is_whole_and_resumes() {
    let p = Project::trusting_shell();
    p.write("exp.toml", WORK);
    for i in 0..20u64 {
        // New keys on odd rounds; on even ones --no-cache, which replaces existing entries.
        let seed = format!("a.command=seq 1 {} > a.txt; sleep 0.03", 20000 + i);
        let args: Vec<&str> = if i % 2 == 0 {
            vec!["run", "exp.toml", "--no-cache"]
        } else {
            vec!["run", "exp.toml", "--set", &seed]
        };
        let mut child = spawn(&p, &args);
        std::thread::sleep(Duration::from_millis(20 + (i * 37) % 400));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        assert_store_whole(&p, &format!("after kill {i}"));
    }
    let gc = p.ok(&["gc"]);
    assert!(gc.contains("; kept "), "{gc}");
    assert!(
        tmp_dirs(&p).is_empty(),
        "gc removed every leftover: {:?}",
        tmp_dirs(&p)
    );
    p.ok(&["run", "exp.toml"]);
    let record = p.latest();
    assert_eq!(record["status"].as_str(), Some("succeeded"));
    assert_eq!(
        fs::read_to_string(run_dir(&p, &record).join("total.txt")).expect("total"),
        format!("{}\n", 3 * 20000 * 20001 / 2)
    );
    assert_store_whole(&p, "after the final run");
    let verify = p.ok(&["verify", "latest"]);
    assert!(verify.contains("reproduces bit for bit"), "{verify}");
}

/// Runs, gcs and a verify started together, three rounds. Every run and gc must succeed;
/// verify must either reproduce the finished run it names, or not find it because a gc pruned
/// it first: never report a difference that is not there.
#[test]
fn runs_gcs_and_verifies_racing_never_fail_a_run_nor_leave_anything_half_made() {
    let p = Project::trusting_shell();
    p.write("exp.toml", WORK);
    for round in 0..3u64 {
        let name = format!("r{round}");
        p.ok(&["run", "exp.toml", "--name", &name]);
        let set = format!(
            "sum.command=awk '{{s+=$1}} END {{print s + {round}}}' $PIPELINE_IN_B > total.txt"
        );
        let mut children = Vec::new();
        for i in 0..4u64 {
            let mut args = vec!["run", "exp.toml"];
            if i % 2 == 1 {
                args.extend(["--set", set.as_str()]);
            }
            children.push(("run", spawn(&p, &args)));
            std::thread::sleep(Duration::from_millis(15 * i));
        }
        children.push(("gc", spawn(&p, &["gc", "--keep-last", "0", "--prune-runs"])));
        std::thread::sleep(Duration::from_millis(40));
        children.push(("gc", spawn(&p, &["gc"])));
        let verify = spawn(&p, &["verify", &name]);
        for (what, child) in children {
            let out = finish(child, Duration::from_secs(60), what);
            assert!(
                out.status.success(),
                "round {round}: {what} failed:\n{}",
                text(&out)
            );
        }
        let out = finish(verify, Duration::from_secs(60), "verify");
        let all = text(&out);
        let reproduced = out.status.success() && all.contains("reproduces bit for bit");
        let pruned_first = out.status.code() == Some(USAGE)
            && all.trim_end().ends_with(&format!(
                "error: no run matches `{name}` (try `pipeline runs`)"
            ));
        assert!(reproduced || pruned_first, "round {round}: verify:\n{all}");
        assert_store_whole(&p, &format!("after round {round}"));
    }
}

#[test]
fn verify_refuses_a_running_run_and_compares_only_what_an_interrupted_one_recorded() {
    let p = Project::trusting_shell();
    let (mut run, hold) = start_held_run(&p);
    let record = p.latest();
    let id = record["id"].as_str().expect("id");
    // Bounded: re-executing this run would wait on `hold` like the run itself. By id:
    // `latest` names the newest run that succeeded.
    let out = bounded(&p, &["verify", id]);
    assert_eq!(out.status.code(), Some(FAILURE), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "error: run {id} is still running (pid {}): verify it when it has finished",
            run.id()
        )
    );
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    fs::remove_file(&hold).expect("release");
    let out = p.ok(&["verify", id]);
    assert!(out.contains("a            same"), "{out}");
    assert!(
        out.contains("b            not recorded (the run was interrupted before it)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "run {id} reproduces bit for bit in the 1 stage(s) it recorded (it was interrupted before the other 1)"
        )),
        "{out}"
    );
}

/// Large published files stay hard links into the cache (a copy would double the store), so
/// an edit in place, once their read-only mode is overridden, reaches the cache entry too:
/// the next run finds the entry damaged by its digest and recomputes it, and verify names the
/// run's altered file.
#[test]
fn an_in_place_edit_of_a_linked_published_file_is_caught_by_the_next_run_and_by_verify() {
    let p = Project::trusting_shell();
    p.write("exp.toml", &big("a"));
    p.ok(&["run", "exp.toml"]);
    let record = p.latest();
    let published = run_dir(&p, &record).join("big.bin");
    let cached = entry_dir(&p, &key_of(&record, "big")).join("big.bin");
    assert_eq!(
        fs::metadata(&published).expect("published").ino(),
        fs::metadata(&cached).expect("cached").ino(),
        "a large published file is a link into the cache"
    );
    assert!(
        fs::OpenOptions::new().write(true).open(&published).is_err() || running_as_root(),
        "read-only: a plain write is refused"
    );
    make_writable(&published);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(&published)
        .expect("open for writing");
    std::io::Write::write_all(&mut file, b"b").expect("edit in place");
    drop(file);

    let out = p.ok(&["run", "exp.toml"]);
    assert!(
        out.contains("cache entry damaged: big.bin does not match its digest"),
        "{out}"
    );
    assert_eq!(cache_uses(&p.latest()), ["big=damaged"]);
    let id = record["id"].as_str().expect("id");
    let err = String::from_utf8_lossy(&bounded(&p, &["verify", id]).stderr).into_owned();
    assert!(
        err.contains(&format!(
            "error: run {id}: big.bin does not match the digest recorded in run.toml"
        )),
        "{err}"
    );
}

/// Whether this process ignores file modes (root), where a read-only mode refuses nothing.
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
