//! End-to-end tests of `pipeline sweep` with `shell` stages (no model needed): every point is
//! a run, a stage shared by all points runs once, a failing point is recorded with its error
//! and log while the others go on, a rerun resumes, `--dry-run` plans without running, and
//! the sweep's directory holds its table and a self-contained sweep.html.

mod common;

use std::fs;
use std::path::Path;

use common::Project;

/// `data` is the same for every point and counts its executions; `score` is swept: two
/// commands that write a metric, and one that fails.
fn experiment(counter: &Path) -> String {
    format!(
        r#"
name = "grid"
[stages.data]
kind = "shell"
command = "echo run >> {counter}; seq 1 10 > numbers.txt"
outputs = ["numbers.txt"]

[stages.score]
kind = "shell"
inputs = {{ numbers = "data.numbers.txt" }}
command = "echo 'score = 0' > metrics.toml"
outputs = ["metrics.toml"]

[sweep]
metric = "score.score:max"
jobs = 2
grid.score.command = [
  "echo 'score = 1' > metrics.toml",
  "echo 'score = 3' > metrics.toml",
  "echo boom >&2; exit 7",
]
"#,
        counter = counter.display()
    )
}

fn sweep_dirs(p: &Project) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = fs::read_dir(p.path().join("artifacts/sweeps"))
        .expect("sweeps")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    dirs
}

fn run_count(p: &Project) -> usize {
    fs::read_dir(p.runs_dir()).map_or(0, |d| d.count())
}

#[test]
fn points_run_shared_stages_once_and_a_failing_point_is_recorded() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &experiment(&counter));
    let err = p.fails(&["sweep", "--allow-shell", "exp.toml"]);
    assert!(err.contains("1 of 3 points failed"), "{err}");
    assert_eq!(
        fs::read_to_string(&counter).expect("counter"),
        "run\n",
        "the stage every point shares ran once"
    );
    assert_eq!(run_count(&p), 3, "every point is a run, the failed one too");

    let dirs = sweep_dirs(&p);
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    let id = dir.file_name().expect("id").to_string_lossy().into_owned();
    assert!(id.starts_with("grid-"), "{id}");
    let csv = fs::read_to_string(dir.join("table.csv")).expect("table.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "point,score.command,status,run,duration_s,score.score,error,log"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1].starts_with("1,echo 'score = 1' > metrics.toml,succeeded,"),
        "{csv}"
    );
    assert!(lines[1].contains(",1,,logs/01.log"), "{csv}");
    assert!(lines[2].contains(",3,,logs/02.log"), "{csv}");
    assert!(
        lines[3].starts_with("3,echo boom >&2; exit 7,failed,"),
        "{csv}"
    );
    assert!(lines[3].contains("exited with status 7"), "{csv}");
    let log = fs::read_to_string(dir.join("logs/03.log")).expect("the failed point's log");
    assert!(log.contains("boom"), "{log}");

    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("table.json")).expect("table.json"))
            .expect("json");
    assert_eq!(json["points"][2]["status"], "failed");
    assert_eq!(json["points"][1]["metrics"]["score.score"], 3.0);

    let html = fs::read_to_string(dir.join("sweep.html")).expect("sweep.html");
    assert!(
        html.contains("<dt>point</dt><dd>02:"),
        "the best point is point 2"
    );
    assert!(html.contains("<svg") && html.contains("<polyline"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<link") && !html.contains("<script src"));

    // Every point is an ordinary run with a name: `show` finds the failed one and says where.
    let shown = p.ok(&["show", &format!("{id}.03")]);
    assert!(shown.contains("score"), "{shown}");
    assert!(shown.contains("exited with status 7"), "{shown}");
    let best = p.ok(&["show", &format!("{id}.02")]);
    assert!(best.contains("score.score"), "{best}");
    // `runs --sweep ID` lists exactly the sweep's points.
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let listed = p.ok(&["runs", "--sweep", &id, "--format", "csv"]);
    assert_eq!(listed.lines().count(), 1 + 3, "{listed}");
}

#[test]
fn a_rerun_resumes_running_only_the_points_that_did_not_succeed() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &experiment(&counter));
    p.fails(&["sweep", "--allow-shell", "exp.toml"]);
    assert_eq!(run_count(&p), 3);
    let err = p.fails(&["sweep", "--allow-shell", "exp.toml"]);
    assert!(
        err.contains("resuming: 2 point(s) already succeeded"),
        "{err}"
    );
    assert!(err.contains("[1/1] point 03"), "{err}");
    assert_eq!(run_count(&p), 4, "only the failed point ran again");
    assert_eq!(
        sweep_dirs(&p).len(),
        1,
        "the same sweep, the same directory"
    );
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "run\n");
}

#[test]
fn a_dry_run_shows_shared_and_new_stages_and_runs_nothing() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &experiment(&counter));
    let out = p.ok(&["sweep", "--dry-run", "exp.toml"]);
    assert!(
        out.contains("01  score.command=echo 'score = 1' > metrics.toml"),
        "{out}"
    );
    assert!(
        out.contains("data   shared by all 3 points: 1 to run"),
        "{out}"
    );
    assert!(
        out.contains("score  new for each point (3): 3 to run"),
        "{out}"
    );
    assert_eq!(run_count(&p), 0, "a dry run runs nothing");
    assert!(!counter.exists());

    // After a run of a point with one of the values, `data` is cached for every point.
    p.ok(&[
        "run",
        "--allow-shell",
        "exp.toml",
        "--set",
        "score.command=echo 'score = 1' > metrics.toml",
    ]);
    let out = p.ok(&["sweep", "--dry-run", "exp.toml"]);
    assert!(
        out.contains("data   shared by all 3 points: 1 cached"),
        "{out}"
    );
    assert!(
        out.contains("score  new for each point (3): 1 cached, 2 to run"),
        "{out}"
    );
    assert!(out.contains("2 computation(s) to run"), "{out}");
}

#[test]
fn a_command_line_grid_replaces_the_table_and_random_search_is_seeded() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &experiment(&counter));
    let out = p.ok(&[
        "sweep",
        "--allow-shell",
        "exp.toml",
        "--grid",
        "score.command=echo 'score = 2' > metrics.toml,echo 'score = 5' > metrics.toml",
        "--metric",
        "score.score:min",
    ]);
    assert!(out.contains("2 succeeded, 0 failed"), "{out}");
    assert!(
        out.contains("best (score.score:min): point 01 score.score = 2.0000"),
        "{out}"
    );

    let draw = |seed: &str| {
        p.ok(&[
            "sweep",
            "--dry-run",
            "exp.toml",
            "--random",
            "4",
            "--seed",
            seed,
            "--range",
            "seed=1..1000",
        ])
        .lines()
        .filter(|l| l.trim_start().starts_with("0") && l.contains("seed="))
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let a = draw("5");
    assert_eq!(a.len(), 4, "{a:?}");
    assert_eq!(a, draw("5"), "the same seed draws the same points");
    assert_ne!(a, draw("6"));
}

#[test]
fn bad_sweeps_are_refused_before_anything_runs() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write("exp.toml", &experiment(&counter));
    let err = p.rejects(&[
        "sweep",
        "--allow-shell",
        "exp.toml",
        "--grid",
        "score.nope=1,2",
    ]);
    assert!(
        err.contains("stage `score` (kind `shell`) has no parameter `nope`"),
        "{err}"
    );
    let err = p.rejects(&[
        "sweep",
        "--allow-shell",
        "exp.toml",
        "--grid",
        "score.command=a",
        "--metric",
        "x:best",
    ]);
    assert!(err.contains("`best` is not a goal"), "{err}");
    let err = p.rejects(&["sweep", "--allow-shell", "exp.toml", "--range", "seed=1..9"]);
    assert!(err.contains("--random"), "{err}");
    p.write("plain.toml", "name = \"plain\"\n[stages.a]\nkind = \"shell\"\ncommand = \"touch a\"\noutputs = [\"a\"]\n");
    let err = p.rejects(&["sweep", "--allow-shell", "plain.toml"]);
    assert!(err.contains("nothing to sweep"), "{err}");
    p.write(
        "typo.toml",
        &experiment(&counter).replace("grid.score.command", "grid.scor.command"),
    );
    let err = p.rejects(&["sweep", "--allow-shell", "typo.toml"]);
    assert!(
        err.contains("no stage named `scor`; did you mean `score`?"),
        "{err}"
    );
    assert_eq!(run_count(&p), 0);
}

#[test]
fn ctrl_c_records_which_points_were_interrupted_and_a_rerun_finishes_them() {
    use std::os::unix::process::CommandExt;
    let p = Project::new();
    // Each point sleeps for what `delay` says when it runs: long the first time, so that
    // Ctrl-C finds a point running, none the second.
    let delay = p.write("delay", "30");
    let score = |n: u32| {
        format!(
            "\"sleep $(cat {}); echo 'score = {n}' > metrics.toml\"",
            delay.display()
        )
    };
    p.write(
        "exp.toml",
        &format!(
            r#"
name = "slow"
[stages.score]
kind = "shell"
command = "echo 'score = 0' > metrics.toml"
outputs = ["metrics.toml"]

[sweep]
metric = "score.score:max"
jobs = 1
grid.score.command = ["echo 'score = 1' > metrics.toml", {}, {}, {}]
"#,
            score(2),
            score(3),
            score(4)
        ),
    );
    // In a process group of its own, as a terminal runs a command: Ctrl-C signals the group.
    let child = p
        .command(&["sweep", "--allow-shell", "exp.toml"])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sweep starts");
    let started = std::time::Instant::now();
    // Until the first point has succeeded and the second is running.
    let second_log = loop {
        let dirs = fs::read_dir(p.path().join("artifacts/sweeps"))
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(log) = dirs
            .first()
            .map(|d| d.join("logs/02.log"))
            .filter(|l| l.exists())
        {
            break log;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the second point never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill only sends a signal, to the sweep's own process group.
    let sent = unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().expect("sweep ends");
    assert!(
        started.elapsed().as_secs() < 25,
        "the running point was not stopped"
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interrupted: 1 of 4 points done, 1 failed or interrupted, 2 not started"),
        "{err}"
    );
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    let dir = second_log.parent().and_then(Path::parent).expect("dir");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("table.json")).expect("table.json"))
            .expect("json");
    let statuses: Vec<&str> = (0..4)
        .map(|i| json["points"][i]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "pending", "pending"]);
    let error = json["points"][1]["error"].as_str().unwrap_or("");
    assert!(error.starts_with("interrupted"), "{error}");

    fs::write(&delay, "0").expect("delay");
    let again = p.ok(&["sweep", "--allow-shell", "exp.toml"]);
    assert!(
        again.contains("1 point(s) already succeeded"),
        "only the first point is kept: {again}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("table.json")).expect("table.json"))
            .expect("json");
    assert_eq!(json["points"][3]["metrics"]["score.score"], 4.0);
}

#[test]
fn every_points_line_shows_the_default_goal_from_the_first_point_on() {
    let p = Project::new();
    p.write(
        "exp.toml",
        r#"
name = "plain"
[stages.score]
kind = "shell"
command = "echo 'score = 0' > metrics.toml"
outputs = ["metrics.toml"]
"#,
    );
    let out = p.ok(&[
        "sweep",
        "--allow-shell",
        "exp.toml",
        "--grid",
        "score.command=echo 'score = 2' > metrics.toml,echo 'score = 5' > metrics.toml",
    ]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("] point ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for line in lines {
        assert!(line.contains("score.score = "), "{line}");
    }
}

/// The rows of a sweep's `table.json`, as JSON, and the file itself.
fn table_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("table.json")).expect("table.json")).expect("json")
}

#[test]
fn a_resumed_sweep_takes_done_points_metrics_from_their_run_records_not_the_table() {
    let p = Project::new();
    p.write(
        "exp.toml",
        r#"
name = "resume"
[stages.score]
kind = "shell"
command = "echo 'score = 0' > metrics.toml"
outputs = ["metrics.toml"]
"#,
    );
    let sweep = [
        "sweep",
        "--allow-shell",
        "exp.toml",
        "--grid",
        "score.command=echo 'score = 1' > metrics.toml,echo 'score = 3' > metrics.toml",
        "--metric",
        "score.score:max",
    ];
    let first = p.ok(&sweep);
    assert!(
        first.contains("best (score.score:max): point 02 score.score = 3.0000"),
        "{first}"
    );
    let dir = sweep_dirs(&p).pop().expect("the sweep's directory");

    // Point 01's metric edited in the table so that it would be the best point.
    let mut table = table_json(&dir);
    table["points"][0]["metrics"]["score.score"] = serde_json::json!(99.0);
    fs::write(dir.join("table.json"), table.to_string()).expect("edit table.json");
    let again = p.ok(&sweep);
    assert!(
        again.contains("resuming: 2 point(s) already succeeded"),
        "{again}"
    );
    assert!(
        again.contains("best (score.score:max): point 02 score.score = 3.0000"),
        "the best point is the records' best: {again}"
    );
    assert_eq!(run_count(&p), 2, "nothing ran again");
    let table = table_json(&dir);
    assert_eq!(table["points"][0]["metrics"]["score.score"], 1.0);
    assert_eq!(table["points"][1]["metrics"]["score.score"], 3.0);
    let csv = fs::read_to_string(dir.join("table.csv")).expect("table.csv");
    assert!(!csv.contains(",99,"), "{csv}");

    // A table whose first point names the second point's run: not that point's run, so the
    // point runs again rather than taking the other point's metrics.
    let mut table = table_json(&dir);
    let second_run = table["points"][1]["run"].clone();
    table["points"][0]["run"] = second_run.clone();
    fs::write(dir.join("table.json"), table.to_string()).expect("edit table.json");
    let again = p.ok(&sweep);
    let second = second_run.as_str().expect("a run id");
    assert!(
        again.contains(&format!(
            "warning: point 01 succeeded in an earlier run of this sweep but runs again: the \
             run {second} the earlier table names is not this point's run"
        )),
        "{again}"
    );
    assert_eq!(run_count(&p), 3, "point 01 ran again");
    assert_eq!(table_json(&dir)["points"][0]["metrics"]["score.score"], 1.0);

    // A damaged record: named, and its point runs again.
    let record = p.runs_dir().join(second).join("run.toml");
    let text = fs::read_to_string(&record).expect("record");
    fs::write(&record, &text[..text.len() / 2]).expect("truncate the record");
    let again = p.ok(&sweep);
    assert!(
        again.contains(&format!(
            "warning: point 02 succeeded in an earlier run of this sweep but runs again: its \
             run record is damaged: {}",
            record.display()
        )),
        "{again}"
    );
    assert_eq!(run_count(&p), 4, "point 02 ran again");
    assert!(
        again.contains("best (score.score:max): point 02 score.score = 3.0000"),
        "{again}"
    );
}
