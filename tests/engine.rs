//! End-to-end tests of the engine through the built `pipeline` binary, with `shell` stages so
//! that no model is needed: caching, invalidation, overrides, failures, concurrency, SIGKILL.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cache_uses, Project, DIFFERENCE};

/// a -> b -> c, and d on its own. `b` scales by a factor; `c` sums.
const CHAIN: &str = r#"
name = "chain"
description = "a small chain of shell stages"
seed = 3

[stages.a]
kind = "shell"
command = "seq 1 10 > numbers.txt"
outputs = ["numbers.txt"]

[stages.b]
kind = "shell"
inputs = { numbers = "a.numbers.txt" }
command = "awk '{print $1 * 2}' $PIPELINE_IN_NUMBERS > scaled.txt"
outputs = ["scaled.txt"]

[stages.c]
kind = "shell"
inputs = { scaled = "b.scaled.txt" }
command = "awk '{s += $1} END {print s}' $PIPELINE_IN_SCALED > total.txt"
outputs = ["total.txt"]

[stages.d]
kind = "shell"
command = "echo independent > d.txt"
outputs = ["d.txt"]
"#;

#[test]
fn second_run_reuses_everything() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let first = p.latest();
    assert_eq!(cache_uses(&first), ["a=miss", "b=miss", "c=miss", "d=miss"]);
    assert_eq!(first["status"].as_str(), Some("succeeded"));
    let run_dir = p.runs_dir().join(first["id"].as_str().expect("id"));
    assert_eq!(
        fs::read_to_string(run_dir.join("total.txt")).expect("total"),
        "110\n"
    );

    let out = p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert!(out.contains("0 ran, 4 reused"), "{out}");
    let second = p.latest();
    assert_eq!(cache_uses(&second), ["a=hit", "b=hit", "c=hit", "d=hit"]);
    assert_ne!(first["id"], second["id"]);
    let keys = |r: &toml::Table| -> Vec<String> {
        r["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| s["key"].to_string())
            .collect()
    };
    assert_eq!(keys(&first), keys(&second));
    let status = p.ok(&["status", "exp.toml"]);
    assert!(status.contains("everything is cached"), "{status}");
}

#[test]
fn a_change_recomputes_exactly_the_stages_downstream() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let edited = CHAIN.replace("$1 * 2", "$1 * 3");
    p.write("exp.toml", &edited);

    let status = p.ok(&["status", "exp.toml"]);
    assert!(status.contains("a  cached"), "{status}");
    assert!(status.contains("d  cached"), "{status}");
    assert!(
        status.contains("b  will run: parameter `command` changed"),
        "{status}"
    );
    assert!(
        status.contains("c  will run: input `scaled` comes from `b`, which must run first"),
        "{status}"
    );

    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let record = p.latest();
    assert_eq!(cache_uses(&record), ["a=hit", "b=miss", "c=miss", "d=hit"]);
    let run_dir = p.runs_dir().join(record["id"].as_str().expect("id"));
    assert_eq!(
        fs::read_to_string(run_dir.join("total.txt")).expect("total"),
        "165\n"
    );
}

#[test]
fn an_upstream_change_with_identical_output_stops_there() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    // A different command with the same output: b recomputes, c sees the same bytes.
    p.write("exp.toml", &CHAIN.replace("seq 1 10", "seq 1 1 10"));
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(
        cache_uses(&p.latest()),
        ["a=miss", "b=hit", "c=hit", "d=hit"]
    );
}

#[test]
fn reformatting_the_file_changes_no_key() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let reformatted = r#"
# Same experiment, written differently: key order, inline tables, quotes, comments.
seed = 3
name = 'chain'
description = "a small chain of shell stages"

[stages]
d = { outputs = ['d.txt'], command = "echo independent > d.txt", kind = "shell" }

[stages.c]
outputs = [ "total.txt" ]   # the sum
command = "awk '{s += $1} END {print s}' $PIPELINE_IN_SCALED > total.txt"
inputs.scaled = "b.scaled.txt"
kind = "shell"

[stages.b]
outputs = ["scaled.txt"]
kind = "shell"
command = '''awk '{print $1 * 2}' $PIPELINE_IN_NUMBERS > scaled.txt'''
[stages.b.inputs]
numbers = "a.numbers.txt"

[stages.a]
kind = "shell"
outputs = ["numbers.txt",]
command = "seq 1 10 > numbers.txt"
"#;
    p.write("exp.toml", reformatted);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let mut uses = cache_uses(&p.latest());
    uses.sort();
    assert_eq!(uses, ["a=hit", "b=hit", "c=hit", "d=hit"]);
}

#[test]
fn set_overrides_and_is_recorded() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    p.ok(&[
        "run",
        "--allow-shell",
        "exp.toml",
        "--set",
        "d.command=echo changed > d.txt",
        "--name",
        "tweak",
    ]);
    let record = p.latest();
    assert_eq!(cache_uses(&record), ["a=hit", "b=hit", "c=hit", "d=miss"]);
    assert_eq!(record["name"].as_str(), Some("tweak"));
    assert_eq!(
        record["params"]["d"]["command"].as_str(),
        Some("echo changed > d.txt")
    );
    assert_eq!(
        record["experiment"]["overrides"]
            .as_array()
            .map(|a| a.len()),
        Some(1)
    );
    let show = p.ok(&["show", "tweak"]);
    assert!(
        show.contains("overrides   d.command=echo changed > d.txt"),
        "{show}"
    );
    let err = p.rejects(&["run", "--allow-shell", "exp.toml", "--set", "d.comand=x"]);
    assert!(
        err.contains("--set d.comand=x: stage `d` (kind `shell`) has no parameter `comand`; did you mean `command`?"),
        "{err}"
    );
}

#[test]
fn bad_files_get_one_clear_error() {
    let p = Project::new();
    let cases = [
        (CHAIN.replace("kind = \"shell\"\ncommand = \"seq", "kind = \"shel\"\ncommand = \"seq"),
         "exp.toml:7:8: stages.a.kind: unknown stage kind `shel`; did you mean `shell`?"),
        (CHAIN.replace("outputs = [\"d.txt\"]", "output = [\"d.txt\"]"),
         "exp.toml:26:1: stages.d.output: unknown parameter for kind `shell`; did you mean `outputs`?"),
        (CHAIN.replace("outputs = [\"d.txt\"]", "outputs = \"d.txt\""),
         "exp.toml:26:11: stages.d.outputs: must be an array of strings, not the string \"d.txt\""),
        (CHAIN.replace("command = \"echo independent > d.txt\"\n", ""),
         "exp.toml:23:9: stages.d.command: missing required parameter `command`"),
        (CHAIN.replace("\"b.scaled.txt\"", "\"bb.scaled.txt\""),
         "exp.toml:19:21: stages.c.inputs.scaled: no stage named `bb`; did you mean `b`?"),
        (CHAIN.replace("seq 1 10 > numbers.txt\"", "seq 1 10 > numbers.txt\"\ninputs = { t = \"c.total.txt\" }"),
         "stages form a cycle: a -> b -> c -> a"),
    ];
    for (text, expected) in cases {
        p.write("exp.toml", &text);
        let err = p.rejects(&["run", "--allow-shell", "exp.toml"]);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    }
    assert!(
        !p.runs_dir().exists() || fs::read_dir(p.runs_dir()).expect("runs").count() == 0,
        "a file that does not validate records no run"
    );
}

#[test]
fn a_stage_failing_midway_leaves_no_result() {
    let p = Project::new();
    let failing = CHAIN.replace(
        "awk '{print $1 * 2}' $PIPELINE_IN_NUMBERS > scaled.txt",
        "echo partial > scaled.txt; echo 'disk on fire' >&2; exit 3",
    );
    p.write("exp.toml", &failing);
    let err = p.fails(&["run", "--allow-shell", "exp.toml"]);
    assert!(err.contains("stage `b` failed"), "{err}");
    assert!(err.contains("exited with status 3: disk on fire"), "{err}");
    let record = p.latest();
    assert_eq!(record["status"].as_str(), Some("failed"));
    assert!(record["error"]
        .as_str()
        .expect("error")
        .contains("disk on fire"));
    assert_eq!(cache_uses(&record), ["a=miss"]);
    assert_eq!(p.cache_entries(), 1, "only a's result is stored");
    let tmp = p.path().join("artifacts/cache/tmp");
    assert_eq!(
        fs::read_dir(tmp).expect("tmp").count(),
        0,
        "no partial output left"
    );
    let runs = p.ok(&["runs"]);
    assert!(runs.contains("failed"), "{runs}");

    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(
        cache_uses(&p.latest()),
        ["a=hit", "b=miss", "c=miss", "d=miss"]
    );
}

/// A stage whose command counts its executions in a file outside the store.
fn counting_experiment(counter: &Path, seconds: f64) -> String {
    format!(
        r#"
name = "slow"
[stages.slow]
kind = "shell"
command = "echo run >> {counter}; sleep {seconds}; echo result > out.txt"
outputs = ["out.txt"]

[stages.after]
kind = "shell"
inputs = {{ x = "slow.out.txt" }}
command = "cat $PIPELINE_IN_X > copy.txt"
outputs = ["copy.txt"]
"#,
        counter = counter.display()
    )
}

#[test]
fn two_concurrent_runs_share_one_computation() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &counting_experiment(&counter, 1.5));
    let first = p
        .command(&["run", "--allow-shell", "exp.toml"])
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let second = p
        .command(&["run", "--allow-shell", "exp.toml"])
        .spawn()
        .expect("spawn");
    let a = first.wait_with_output().expect("wait");
    let b = second.wait_with_output().expect("wait");
    assert!(a.status.success() && b.status.success());
    assert_eq!(
        fs::read_to_string(&counter).expect("counter"),
        "run\n",
        "the slow stage ran once"
    );
    let mut uses = Vec::new();
    for entry in fs::read_dir(p.runs_dir()).expect("runs") {
        let text = fs::read_to_string(entry.expect("run").path().join("run.toml")).expect("record");
        let record: toml::Table = toml::from_str(&text).expect("parses");
        assert_eq!(record["status"].as_str(), Some("succeeded"));
        uses.extend(cache_uses(&record));
    }
    uses.sort();
    assert_eq!(uses, ["after=hit", "after=miss", "slow=hit", "slow=miss"]);
}

#[test]
fn a_killed_run_is_resumed_from_its_finished_stages() {
    let p = Project::new();
    let marker = p.path().join("hang");
    fs::write(&marker, "").expect("marker");
    let text = format!(
        r#"
name = "resumable"
[stages.first]
kind = "shell"
command = "echo one > one.txt"
outputs = ["one.txt"]

[stages.second]
kind = "shell"
inputs = {{ one = "first.one.txt" }}
command = "echo partial > two.txt; while [ -f {marker} ]; do sleep 0.1; done; cat $PIPELINE_IN_ONE > two.txt"
outputs = ["two.txt"]
"#,
        marker = marker.display()
    );
    p.write("exp.toml", &text);
    let mut child = p
        .command(&["run", "--allow-shell", "exp.toml"])
        .spawn()
        .expect("spawn");
    // Wait until the second stage is at work, then kill the run outright.
    let started = Instant::now();
    let tmp = p.path().join("artifacts/cache/tmp");
    while fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0 || p.cache_entries() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "second stage never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(p.cache_entries(), 1, "only the finished stage is stored");
    let runs = p.ok(&["runs"]);
    assert!(runs.contains("interrupted"), "{runs}");

    fs::remove_file(&marker).expect("unhang");
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let record = p.latest();
    assert_eq!(cache_uses(&record), ["first=hit", "second=miss"]);
    let run_dir = p.runs_dir().join(record["id"].as_str().expect("id"));
    assert_eq!(
        fs::read_to_string(run_dir.join("two.txt")).expect("two"),
        "one\n"
    );
    assert_eq!(
        fs::read_dir(&tmp).expect("tmp").count(),
        0,
        "leftovers cleaned"
    );
}

#[test]
fn data_files_join_the_key() {
    let p = Project::new();
    let data = p.path().join("data/set");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("x.txt"), "1\n").expect("write");
    fs::write(data.join("y.txt"), "2\n").expect("write");
    p.write(
        "exp.toml",
        r#"
name = "data"
[stages.read]
kind = "shell"
data = ["set"]
command = "cat $PIPELINE_DATA_ROOT/set/*.txt > all.txt"
outputs = ["all.txt"]
"#,
    );
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["read=hit"]);
    fs::write(data.join("y.txt"), "3\n").expect("write");
    let status = p.ok(&["status", "exp.toml"]);
    assert!(
        status.contains("its data files changed: 1 modified (set/y.txt)"),
        "{status}"
    );
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    assert_eq!(cache_uses(&p.latest()), ["read=miss"]);
    // Another data root holding the same bytes gives the same key.
    let other = p.path().join("elsewhere");
    fs::create_dir_all(other.join("set")).expect("mkdir");
    fs::copy(data.join("x.txt"), other.join("set/x.txt")).expect("copy");
    fs::copy(data.join("y.txt"), other.join("set/y.txt")).expect("copy");
    p.ok(&[
        "run",
        "--allow-shell",
        "exp.toml",
        "--data-root",
        "elsewhere",
    ]);
    assert_eq!(cache_uses(&p.latest()), ["read=hit"]);
}

#[test]
fn runs_and_show_find_runs_by_id_prefix_name_and_latest() {
    let p = Project::new();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "--allow-shell", "exp.toml", "--name", "baseline"]);
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let latest = p.latest();
    let id = latest["id"].as_str().expect("id");
    let runs = p.ok(&["runs"]);
    let lines: Vec<&str> = runs.lines().collect();
    assert!(lines[0].starts_with("ID"), "{runs}");
    assert!(lines[1].starts_with(id), "newest first:\n{runs}");
    assert!(lines[2].contains("baseline"), "{runs}");
    assert!(p.ok(&["show", "latest"]).contains(id));
    assert!(
        p.ok(&["show", &id[..id.len() - 2]]).contains(id),
        "a unique prefix"
    );
    assert!(p.ok(&["show", "latest~1"]).contains("name        baseline"));
    assert!(p.ok(&["show", "baseline"]).contains("name        baseline"));
    let err = p.rejects(&["show", "nope"]);
    assert!(err.contains("no run matches `nope`"), "{err}");
}

#[test]
fn exit_codes_are_the_documented_contract() {
    // 0 success, 1 a difference, 2 usage (nothing ran), 3 a failure while running: scripts
    // and CI tell "the outputs differ" from "the tool failed" by these (README, exit.rs).
    let p = Project::trusting_shell();
    p.write("exp.toml", CHAIN);
    p.ok(&["run", "exp.toml", "--name", "first"]);
    p.ok(&[
        "run",
        "exp.toml",
        "--name",
        "second",
        "--set",
        "d.command=echo other > d.txt",
    ]);
    p.exits(&["diff", "first", "first", "--fail-on-diff"], 0);
    p.exits(&["diff", "first", "second", "--fail-on-diff"], DIFFERENCE);

    // Usage: a flag clap refuses, an experiment file that does not validate, a bad --set,
    // a run reference that matches nothing. None of them records a run.
    let runs = || fs::read_dir(p.runs_dir()).expect("runs").count();
    let before = runs();
    p.rejects(&["run", "exp.toml", "--no-such-flag"]);
    p.write(
        "bad.toml",
        &CHAIN.replace("kind = \"shell\"", "kind = \"shel\""),
    );
    p.rejects(&["run", "bad.toml"]);
    p.rejects(&["run", "exp.toml", "--set", "novalue"]);
    p.rejects(&["show", "no-such-run"]);
    p.rejects(&["diff", "first", "no-such-run"]);
    assert_eq!(runs(), before, "a usage error runs nothing");

    // Failure: a stage that fails while running.
    p.write(
        "fail.toml",
        &CHAIN.replace("echo independent > d.txt", "exit 7"),
    );
    let err = p.fails(&["run", "fail.toml"]);
    assert!(err.contains("stage `d` failed"), "{err}");
}
