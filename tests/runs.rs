//! End-to-end tests of the commands that read recorded runs and the project's settings:
//! `runs` (columns, filters, sort, formats), run references (`latest`, `latest~N`, names, id
//! suffixes), `show` and `diff` on a failed run, `status` explained against the cache,
//! `pipeline.toml` (`config`), and where `lock` writes. Shell stages stand in for the model:
//! they report metrics through `metrics.toml`.

mod common;

use std::fs;

use common::Project;

/// `evaluate` reports metrics in alphabetical order different from the headline order.
fn experiment(auc: f64) -> String {
    format!(
        r#"
name = "chain"
seed = 3
[stages.a]
kind = "shell"
command = "seq 1 10 > numbers.txt"
outputs = ["numbers.txt"]

[stages.evaluate]
kind = "shell"
inputs = {{ numbers = "a.numbers.txt" }}
command = "printf 'aaa = 1\nroc_auc = {auc}\nsensitivity = 0.5\ntest_accuracy = 0.7\n' > metrics.toml"
outputs = ["metrics.toml"]
"#
    )
}

fn set_auc(auc: f64) -> String {
    format!(
        "evaluate.command=printf 'aaa = 1\\nroc_auc = {auc}\\nsensitivity = 0.5\\ntest_accuracy = 0.7\\n' > metrics.toml"
    )
}

/// Three runs: `base` (auc 0.8), one with seed 5 and auc 0.95, and a failed one (`broken`).
fn three_runs() -> Project {
    let p = Project::trusting_shell();
    p.write("exp.toml", &experiment(0.8));
    p.ok(&["run", "exp.toml", "--name", "base"]);
    p.ok(&[
        "run",
        "exp.toml",
        "--set",
        "seed=5",
        "--set",
        &set_auc(0.95),
    ]);
    p.fails(&[
        "run",
        "exp.toml",
        "--set",
        "evaluate.command=exit 3",
        "--name",
        "broken",
    ]);
    p
}

fn ids(p: &Project) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(p.runs_dir())
        .expect("runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn runs_shows_differing_parameters_and_headline_metrics_in_order() {
    let p = three_runs();
    let out = p.ok(&["runs"]);
    let header = out.lines().next().expect("header");
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "ID",
            "NAME",
            "EXPERIMENT",
            "STATUS",
            "DURATION",
            "seed",
            "command",
            "test_accuracy",
            "sensitivity",
            "roc_auc",
            "aaa"
        ],
        "only the parameters that differ; headline metrics first: {out}"
    );
    assert!(out.contains("failed (evaluate)"), "{out}");
}

#[test]
fn runs_filters_sorts_limits_and_formats() {
    let p = three_runs();
    let csv = p.ok(&["runs", "--where", "evaluate.roc_auc>0.9", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",chain,succeeded,") && lines[1].contains(",0.95"),
        "{csv}"
    );

    let md = p.ok(&[
        "runs",
        "--status",
        "succeeded",
        "--sort",
        "evaluate.roc_auc:asc",
        "--format",
        "markdown",
    ]);
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2")).collect();
    assert_eq!(rows.len(), 2, "{md}");
    assert!(
        rows[0].contains("0.8000") && rows[1].contains("0.9500"),
        "{md}"
    );

    let limited = p.ok(&[
        "runs",
        "--sort",
        "evaluate.roc_auc:desc",
        "--limit",
        "1",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&limited).expect("json");
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["metrics"]["evaluate.roc_auc"], 0.95);

    let failed = p.ok(&["runs", "--status", "failed", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&failed).expect("json");
    assert_eq!(json[0]["name"], "broken");
    assert_eq!(json[0]["failed_stage"], "evaluate");

    let err = p.rejects(&["runs", "--where", "evaluate.roc_aux>0.9"]);
    assert!(
        err.contains("evaluate.roc_auc"),
        "a did-you-mean names the key: {err}"
    );
    let err = p.rejects(&["runs", "--experiment", "chian"]);
    assert!(err.contains("chain"), "{err}");
}

#[test]
fn references_by_suffix_name_and_latest_and_failed_runs_say_where() {
    let p = three_runs();
    let ids = ids(&p);
    // `latest` is the newest run that succeeded, not the failed one after it.
    let latest = p.ok(&["show", "latest"]);
    assert!(latest.contains(&ids[1]), "{latest}");
    let before = p.ok(&["show", "latest~1"]);
    assert!(
        before.contains(&ids[0]) && before.contains("base"),
        "{before}"
    );
    let suffix = &ids[0][ids[0].len() - 4..];
    assert!(p.ok(&["show", suffix]).contains(&ids[0]));
    let err = p.rejects(&["show", "latest~2"]);
    assert!(err.contains("only 2 successful runs"), "{err}");

    let shown = p.ok(&["show", "broken"]);
    assert!(shown.contains("failed at stage `evaluate`"), "{shown}");
    assert!(
        shown.contains("command `exit 3` exited with status 3"),
        "{shown}"
    );
    let diff = p.ok(&["diff", "base", "broken"]);
    assert!(diff.contains("failed at stage `evaluate`"), "{diff}");
    assert!(!diff.contains("stages removed"), "{diff}");

    p.write(
        "other.toml",
        &experiment(0.8).replace("name = \"chain\"", "name = \"other\""),
    );
    p.ok(&["run", "other.toml", "--name", "elsewhere"]);
    let diff = p.ok(&["diff", "base", "elsewhere"]);
    assert!(diff.contains("different experiments"), "{diff}");
}

#[test]
fn status_explains_against_the_cache_not_the_last_run() {
    let p = three_runs();
    // The newest successful run has auc 0.95; asking for 0.8 finds base's cached result.
    let out = p.ok(&["status", "exp.toml"]);
    assert!(out.contains("everything is cached"), "{out}");
    let out = p.ok(&["status", "exp.toml", "--set", &set_auc(0.5)]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("a ") && l.ends_with("cached")),
        "{out}"
    );
    assert!(
        out.contains("evaluate  will run: parameter `command` changed"),
        "{out}"
    );
}

#[test]
fn the_data_root_is_remembered_in_pipeline_toml_and_errors_say_how_to_set_it() {
    let p = Project::trusting_shell();
    p.write(
        "d.toml",
        "name = \"d\"\n[stages.a]\nkind = \"shell\"\ncommand = \"cat $PIPELINE_DATA_ROOT/x.txt > y.txt\"\noutputs = [\"y.txt\"]\ndata = [\"x.txt\"]\n",
    );
    let err = p.fails(&["run", "d.toml"]);
    assert!(err.contains("x.txt"), "{err}");
    assert!(err.contains("`pipeline config data_root DIR`"), "{err}");
    assert!(err.contains("--data-root"), "{err}");
    fs::create_dir(p.path().join("mydata")).expect("mkdir");
    p.write("mydata/x.txt", "hi\n");
    p.ok(&["config", "data_root", "mydata"]);
    assert!(fs::read_to_string(p.path().join("pipeline.toml"))
        .expect("pipeline.toml")
        .contains("data_root = \"mydata\""));
    p.ok(&["run", "d.toml"]);
    let shown = p.ok(&["config"]);
    assert!(shown.contains("(from pipeline.toml)"), "{shown}");
    p.ok(&["config", "--unset", "data_root"]);
    p.fails(&[
        "run",
        "d.toml",
        "--set",
        "a.command=cat $PIPELINE_DATA_ROOT/x.txt > y.txt; true",
    ]);
}

#[test]
fn lock_writes_beside_the_experiment_with_a_header_path_from_the_project_root() {
    let p = Project::trusting_shell();
    fs::create_dir(p.path().join("experiments")).expect("mkdir");
    p.write("experiments/q.toml", &experiment(0.8));
    p.ok(&["lock", "experiments/q.toml"]);
    let lock = fs::read_to_string(p.path().join("experiments/q.lock")).expect("EXP.lock");
    assert!(
        lock.contains("`pipeline verify --lock experiments/q.lock` (from the\n# project root)"),
        "{lock}"
    );
}

#[test]
fn kinds_list_slots_and_help_describes_arguments() {
    let p = Project::new();
    let kinds = p.ok(&["kinds"]);
    assert!(
        kinds.contains("inputs:") && kinds.contains("outputs:"),
        "{kinds}"
    );
    for key in ["limit", "filters", "exclude_extensions", "count_per_class"] {
        assert!(
            kinds.contains(key),
            "kinds names load's source key `{key}`: {kinds}"
        );
    }
    let show = p.ok(&["show", "--help"]);
    assert!(show.contains("latest") && show.contains("suffix"), "{show}");
    let diff = p.ok(&["diff", "--help"]);
    assert!(diff.contains("--format"), "{diff}");
}

#[test]
fn diff_names_the_data_files_that_changed() {
    let p = Project::trusting_shell();
    fs::create_dir(p.path().join("mydata")).expect("mkdir");
    p.write("mydata/x.txt", "one\n");
    p.write("mydata/y.txt", "same\n");
    p.write(
        "d.toml",
        "name = \"d\"\n[stages.a]\nkind = \"shell\"\ncommand = \"cat $PIPELINE_DATA_ROOT/x.txt > out.txt\"\noutputs = [\"out.txt\"]\ndata = [\"x.txt\", \"y.txt\"]\n",
    );
    // A relative --data-root: the command runs elsewhere, and still finds the data.
    p.ok(&["run", "d.toml", "--data-root", "mydata"]);
    p.write("mydata/x.txt", "two\n");
    p.ok(&["run", "d.toml", "--data-root", "mydata"]);
    let diff = p.ok(&["diff", "latest~1", "latest"]);
    assert!(
        diff.contains("a: its data files changed: 1 modified (x.txt)"),
        "{diff}"
    );
}

#[test]
fn data_root_is_accepted_before_the_command_as_artifacts_is() {
    let p = Project::trusting_shell();
    fs::create_dir(p.path().join("mydata")).expect("mkdir");
    p.write("mydata/x.txt", "one\n");
    p.write(
        "d.toml",
        "name = \"d\"\n[stages.a]\nkind = \"shell\"\ncommand = \"cat $PIPELINE_DATA_ROOT/x.txt > out.txt\"\noutputs = [\"out.txt\"]\ndata = [\"x.txt\"]\n",
    );
    p.ok(&[
        "--artifacts",
        "store",
        "--data-root",
        "mydata",
        "run",
        "d.toml",
    ]);
    assert!(p.path().join("store/runs").is_dir());
    let status = p.ok(&[
        "--artifacts",
        "store",
        "--data-root",
        "mydata",
        "status",
        "d.toml",
    ]);
    assert!(status.contains("everything is cached"), "{status}");
    // After the command, as before.
    p.ok(&[
        "run",
        "d.toml",
        "--artifacts",
        "store",
        "--data-root",
        "mydata",
    ]);
    let shown = p.ok(&["--data-root", "mydata", "config", "data_root"]);
    assert_eq!(shown.trim(), "mydata", "{shown}");
    let help = p.ok(&["--help"]);
    assert!(help.contains("--data-root <DIR>"), "{help}");
}
