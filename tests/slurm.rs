//! The Slurm executor against a real one-node Slurm started by the test ([`slurm_harness`]):
//! a run through Slurm equals the local run bit for bit, a failing point is retried and then
//! recorded with its error and log, Ctrl-C cancels the jobs; and bad resource values are
//! refused before anything is submitted (no cluster needed for those).

mod common;
mod slurm_harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, Project, FAILURE};
use slurm_harness::Cluster;

/// A command of `p`'s aimed at `cluster`.
fn on(cluster: &Cluster, p: &Project, args: &[&str]) -> Command {
    let mut cmd = p.command(args);
    cmd.env("SLURM_CONF", cluster.conf());
    cmd
}

fn output_of(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("pipeline runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_record(run_dir: &Path) -> toml::Table {
    let text = fs::read_to_string(run_dir.join("run.toml")).expect("run.toml");
    toml::from_str(&text).expect("run.toml parses")
}

/// What must be the same wherever a run executes, by `pipeline verify`'s rule: every
/// output's digest but the volatile ones (train's history records seconds per epoch), each
/// stage's key where its inputs are the same (a stage fed a volatile output gets a new key),
/// and the metrics.
fn computed(record: &toml::Table) -> Vec<String> {
    let mut lines = Vec::new();
    for s in record["stages"].as_array().expect("stages") {
        let name = s["name"].as_str().expect("name");
        let volatile_input = s
            .get("inputs")
            .and_then(|i| i.as_table())
            .is_some_and(|inputs| {
                inputs.values().any(|i| {
                    let from = i["from"].as_str().expect("from");
                    let (stage, output) = from.split_once('.').expect("stage.output");
                    volatile(record, stage, output)
                })
            });
        if !volatile_input {
            lines.push(format!("{name} key {}", s["key"]));
        }
        if let Some(metrics) = s.get("metrics") {
            lines.push(format!("{name} metrics {metrics}"));
        }
        if let Some(outputs) = s.get("outputs").and_then(|o| o.as_table()) {
            for (output, o) in outputs {
                if !volatile(record, name, output) {
                    lines.push(format!("{name}.{output} {}", o["blake3"]));
                }
            }
        }
    }
    lines
}

fn volatile(record: &toml::Table, stage: &str, output: &str) -> bool {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some(stage))
        .and_then(|s| s.get("outputs")?.get(output)?.get("volatile")?.as_bool())
        .unwrap_or(false)
}

/// The bytes of every file a run published, but its record, its HTML page (which name the
/// run's id, host and times) and the files of volatile outputs.
fn published(run_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let record = read_record(run_dir);
    let volatile_files: Vec<String> = record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s.get("outputs")?.as_table())
        .flat_map(|outputs| outputs.values())
        .filter(|o| o.get("volatile").and_then(|v| v.as_bool()) == Some(true))
        .filter_map(|o| Some(o.get("published")?.as_str()?.to_string()))
        .collect();
    fs::read_dir(run_dir)
        .expect("run dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                p,
            )
        })
        .filter(|(name, _)| {
            !matches!(name.as_str(), "run.toml" | "report.html") && !volatile_files.contains(name)
        })
        .map(|(name, p)| (name, fs::read(&p).expect("read")))
        .collect()
}

/// A child's output, line by line as it comes, read on a thread of its own (so that the
/// test can wait for a line while the child runs); the channel closes when the child does.
fn lines_of(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(output)) {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// The one submission directory of a store (`artifacts/slurm/*`).
fn submission(p: &Project) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(p.path().join("artifacts/slurm"))
        .expect("artifacts/slurm")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn status_of(dir: &Path, point: usize) -> serde_json::Value {
    let text = fs::read_to_string(dir.join(format!("status/point-{point}.json"))).expect("status");
    serde_json::from_str(&text).expect("status parses")
}

#[test]
fn a_quickstart_run_through_slurm_equals_the_local_run_bit_for_bit() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let quickstart = repo().join("experiments/quickstart.toml");
    let exp = quickstart.to_str().expect("utf-8 path");

    let local = Project::new();
    let local_dir = PathBuf::from(
        local
            .ok(&["run", exp])
            .trim()
            .lines()
            .last()
            .expect("run dir"),
    );

    let remote = Project::new();
    let (code, stdout, stderr) =
        output_of(on(&cluster, &remote, &["run", exp, "--executor", "slurm"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("submitted job"), "{stderr}");
    assert!(stderr.contains("the run: running on"), "{stderr}");
    assert!(stderr.contains("done: 8 ran, 0 reused"), "{stderr}");
    let remote_dir = PathBuf::from(stdout.trim().lines().last().expect("run dir"));
    assert!(remote_dir.starts_with(remote.path()), "{remote_dir:?}");

    // The node computed every stage itself, and got the same bytes.
    let (local_rec, remote_rec) = (read_record(&local_dir), read_record(&remote_dir));
    assert_eq!(remote_rec["status"].as_str(), Some("succeeded"));
    assert!(common::cache_uses(&remote_rec)
        .iter()
        .all(|u| u.ends_with("=miss")));
    assert_eq!(computed(&local_rec), computed(&remote_rec));
    let (local_files, remote_files) = (published(&local_dir), published(&remote_dir));
    for expected in [
        "head.safetensors",
        "metrics.csv",
        "predictions.csv",
        "roc.png",
    ] {
        assert!(
            local_files.contains_key(expected),
            "{:?}",
            local_files.keys()
        );
    }
    assert!(
        !local_files.contains_key("history.csv"),
        "volatile: seconds per epoch"
    );
    assert_eq!(
        local_files.keys().collect::<Vec<_>>(),
        remote_files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &local_files {
        assert!(remote_files[name] == *bytes, "{name} differs");
    }

    // The task said how it went, and Slurm saw the job complete.
    let dir = submission(&remote);
    let status = status_of(&dir, 0);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["attempt"], 1);
    assert_eq!(status["run_dir"].as_str(), remote_dir.to_str());
    let job = status["slurm_job"].as_str().expect("job id").to_string();
    assert!(
        cluster
            .jobs()
            .lines()
            .any(|l| l == format!("{job} COMPLETED")),
        "{}",
        cluster.jobs()
    );
}

/// A stage that fails until a marker file exists, and one that always fails.
fn flaky_experiment(p: &Project, always: bool) -> PathBuf {
    let counter = p.path().join("attempts.txt");
    let marker = p.path().join("second-time");
    let command = if always {
        format!(
            "echo x >> '{}'; echo 'the data is bad' >&2; exit 7",
            counter.display()
        )
    } else {
        format!(
            "echo x >> '{c}'; if [ -e '{m}' ]; then echo ok > out.txt; else touch '{m}'; exit 7; fi",
            c = counter.display(),
            m = marker.display()
        )
    };
    p.write(
        "exp.toml",
        &format!(
            "name = \"flaky\"\ndescription = \"fails the first time\"\nseed = 1\n\n\
             [stages.work]\nkind = \"shell\"\ncommand = {command:?}\noutputs = [\"out.txt\"]\n"
        ),
    )
}

fn attempts(p: &Project) -> usize {
    fs::read_to_string(p.path().join("attempts.txt"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_failing_point_is_retried_then_recorded_with_its_error_and_log() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // Fails once, then succeeds on the retry (the default: one).
    // Its resources from the three places: the experiment, pipeline.toml and a flag.
    let flaky = Project::trusting_shell();
    let exp = flaky_experiment(&flaky, false);
    let text = fs::read_to_string(&exp).expect("exp");
    fs::write(&exp, text + "\n[slurm]\npartition = \"debug\"\ntime = 30\n").expect("write");
    flaky.write("pipeline.toml", "[slurm]\ntime = \"1:00:00\"\ncpus = 2\n");
    let (code, stdout, stderr) = output_of(on(
        &cluster,
        &flaky,
        &[
            "run",
            "exp.toml",
            "--executor",
            "slurm",
            "--slurm-cpus",
            "1",
        ],
    ));
    assert!(
        stderr.contains("asking for --partition=debug --time=30 --cpus-per-task=1"),
        "{stderr}"
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(attempts(&flaky), 2);
    let run_dir = PathBuf::from(stdout.trim());
    assert_eq!(read_record(&run_dir)["status"].as_str(), Some("succeeded"));
    let status = status_of(&submission(&flaky), 0);
    assert_eq!(status["attempt"], 2);
    let job = status["slurm_job"].as_str().expect("job id");
    let shown = cluster
        .command("scontrol")
        .args(["show", "job", job])
        .output()
        .expect("scontrol");
    let shown = String::from_utf8_lossy(&shown.stdout);
    for field in ["Partition=debug", "TimeLimit=00:30:00", "NumCPUs=1"] {
        assert!(shown.contains(field), "{field}: {shown}");
    }

    // Always fails: three attempts with --slurm-retries 2, then the error and the log.
    let broken = Project::trusting_shell();
    flaky_experiment(&broken, true);
    let (code, _, stderr) = output_of(on(
        &cluster,
        &broken,
        &[
            "run",
            "exp.toml",
            "--executor",
            "slurm",
            "--slurm-retries",
            "2",
        ],
    ));
    assert_eq!(code, Some(FAILURE), "{stderr}");
    assert_eq!(attempts(&broken), 3);
    let dir = submission(&broken);
    let log = dir.join("logs/point-0.log");
    let last = stderr.lines().last().expect("an error line");
    assert!(
        last.starts_with("error: the run failed on Slurm: "),
        "{stderr}"
    );
    assert!(last.contains("stage `work`"), "{last}");
    assert!(last.contains("(after 3 attempts)"), "{last}");
    assert!(
        last.ends_with(&format!("its log: {}", log.display())),
        "{last}"
    );
    let text = fs::read_to_string(&log).expect("log");
    for attempt in 1..=3 {
        assert!(text.contains(&format!("attempt {attempt} of 3")), "{text}");
    }
    let errors = text
        .lines()
        .filter(|l| l.starts_with("error: stage `work` failed") && l.ends_with("the data is bad"));
    assert_eq!(errors.count(), 3, "{text}");
    let status = status_of(&dir, 0);
    assert_eq!(status["state"], "failed");
    assert_eq!(status["exit_code"], common::FAILURE);
    assert_eq!(status["log"].as_str(), log.to_str());
}

#[test]
fn interrupting_cancels_the_jobs_without_asking_when_stdin_is_not_a_terminal() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let p = Project::trusting_shell();
    p.write(
        "exp.toml",
        "name = \"slow\"\ndescription = \"sleeps\"\nseed = 1\n\n[stages.nap]\nkind = \"shell\"\n\
         command = \"sleep 120; echo done > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    let child = on(&cluster, &p, &["run", "exp.toml", "--executor", "slurm"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("pipeline starts");
    // Interrupt once the point's task is running on the node.
    let start = Instant::now();
    let running = loop {
        let status = fs::read_dir(p.path().join("artifacts/slurm"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| fs::read_to_string(e.ok()?.path().join("status/point-0.json")).ok());
        if status.is_some_and(|s| s.contains("\"running\"")) {
            break true;
        }
        if start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // SAFETY: signalling a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("pipeline ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(running, "the job never ran: {stderr}");
    assert_eq!(out.status.code(), Some(FAILURE), "{stderr}");
    assert!(stderr.contains("cancelled Slurm jobs"), "{stderr}");
    let job = status_of(&submission(&p), 0)["slurm_job"]
        .as_str()
        .expect("job id")
        .to_string();
    assert_eq!(
        stderr.lines().last(),
        Some(format!("error: interrupted: Slurm job {job} cancelled").as_str()),
        "{stderr}"
    );
    let start = Instant::now();
    while !cluster.jobs().contains(&format!("{job} CANCELLED")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not cancelled: {}",
            cluster.jobs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !p.path().join("artifacts/runs").exists()
            || !fs::read_dir(p.runs_dir())
                .expect("runs")
                .any(|r| { r.expect("entry").path().join("out.txt").exists() })
    );
}

#[test]
fn bad_resource_values_are_refused_naming_the_flag_or_key() {
    // Refused before Slurm is asked anything: no cluster needed.
    let p = Project::trusting_shell();
    p.write(
        "exp.toml",
        "name = \"e\"\ndescription = \"d\"\nseed = 1\n\n[stages.a]\nkind = \"shell\"\n\
         command = \"echo 1 > a.txt\"\noutputs = [\"a.txt\"]\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "exp.toml", "--executor", "slurm"];
        args.extend_from_slice(extra);
        p.rejects(&args)
    };
    for (flag, value, says) in [
        ("--slurm-time", "1h", "is not a time limit"),
        ("--slurm-time", "0", "time limit of zero"),
        ("--slurm-gres", "gpu:0", "a count of 0 asks for nothing"),
        ("--slurm-cpus", "0", "a task needs at least one"),
        ("--slurm-mem", "16GB", "is not an amount of memory"),
        ("--slurm-partition", "gpu queue", "is not a partition name"),
        ("--slurm-retries", "1000", "at most 100"),
    ] {
        let err = run(&[flag, value]);
        // One line saying it all (clap adds its `try '--help'` hint below it).
        let line = err.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("error: invalid value '{value}' for '{flag}"))
                && line.contains(says),
            "{flag} {value}: {err}"
        );
    }
    let err = p.rejects(&["run", "exp.toml", "--slurm-gres", "gpu:1"]);
    assert!(
        err.contains("--slurm-gres applies to Slurm jobs only: add --executor slurm"),
        "{err}"
    );

    // The experiment's [slurm] table, then pipeline.toml's: the file and the key named.
    p.write(
        "exp2.toml",
        "name = \"e\"\ndescription = \"d\"\nseed = 1\n\n[slurm]\ntime = \"soon\"\n\n\
         [stages.a]\nkind = \"shell\"\ncommand = \"echo 1 > a.txt\"\noutputs = [\"a.txt\"]\n",
    );
    let err = p.rejects(&["run", "exp2.toml", "--executor", "slurm"]);
    assert!(
        err.contains("exp2.toml: [slurm] `time`: \"soon\" is not a time limit"),
        "{err}"
    );
    // The file is checked whole: a bad value is refused even where a flag would win.
    p.write("pipeline.toml", "[slurm]\ncpus = 0\n");
    let err = p.rejects(&[
        "run",
        "exp.toml",
        "--executor",
        "slurm",
        "--slurm-cpus",
        "2",
    ]);
    assert!(
        err.contains("pipeline.toml: [slurm] `cpus`: 0 CPUs"),
        "{err}"
    );
    p.write("pipeline.toml", "[slurm]\ngpus = 1\n");
    let err = p.rejects(&["run", "exp.toml", "--executor", "slurm"]);
    assert!(err.contains("unknown key `gpus`"), "{err}");
    // A local run does not read the table's resources, nor mind it.
    p.write("pipeline.toml", "[slurm]\npartition = \"gpu\"\n");
    p.ok(&["run", "exp2.toml"]);
}

/// The 12-point head sweep of the target: learning rate, units and dropout.
const HEAD_GRID: [&str; 6] = [
    "--grid",
    "train.learning_rate=0.0003,0.001,0.003",
    "--grid",
    "model.units=32,64",
    "--grid",
    "model.dropout=0.2,0.5",
];

fn sweep_table(p: &Project) -> (PathBuf, serde_json::Value) {
    let dirs: Vec<PathBuf> = fs::read_dir(p.path().join("artifacts/sweeps"))
        .expect("sweeps")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let text = fs::read_to_string(dirs[0].join("table.json")).expect("table.json");
    (
        dirs[0].clone(),
        serde_json::from_str(&text).expect("table parses"),
    )
}

#[test]
fn a_12_point_quickstart_head_sweep_through_slurm_equals_the_local_sweep_point_for_point() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let quickstart = repo().join("experiments/quickstart.toml");
    let exp = quickstart.to_str().expect("utf-8 path");
    let mut args = vec!["sweep", exp];
    args.extend_from_slice(&HEAD_GRID);

    let local = Project::new();
    let mut local_args = args.clone();
    local_args.extend_from_slice(&["-j", "2"]);
    local.ok(&local_args);

    let remote = Project::new();
    let mut remote_args = args.clone();
    remote_args.extend_from_slice(&["--executor", "slurm"]);
    let started = Instant::now();
    let (code, stdout, stderr) = output_of(on(&cluster, &remote, &remote_args));
    eprintln!(
        "12-point quickstart head sweep through the one-node Slurm: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("slurm: 0 queued, 0 running, 12 done, 0 failed"),
        "{stderr}"
    );

    let (local_dir, local_table) = sweep_table(&local);
    let (remote_dir, remote_table) = sweep_table(&remote);
    assert_eq!(stdout.trim(), remote_dir.to_str().expect("utf-8"));
    assert_eq!(
        local_dir.file_name(),
        remote_dir.file_name(),
        "the same sweep id"
    );
    assert!(remote_dir.join("sweep.html").is_file());
    let (local_points, remote_points) = (
        local_table["points"].as_array().expect("points"),
        remote_table["points"].as_array().expect("points"),
    );
    assert_eq!(local_points.len(), 12);
    assert_eq!(remote_points.len(), 12);
    let run_dir = |p: &Project, row: &serde_json::Value| {
        p.runs_dir().join(row["run"].as_str().expect("a run"))
    };
    let mut records = Vec::new();
    for (l, r) in local_points.iter().zip(remote_points) {
        assert_eq!(l["point"], r["point"]);
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(l["metrics"], r["metrics"], "{}", r["point"]);
        let record = read_record(&run_dir(&remote, r));
        assert_eq!(
            computed(&read_record(&run_dir(&local, l))),
            computed(&record),
            "point {}",
            r["point"]
        );
        assert!(r["log"].as_str().expect("log").starts_with("slurm/"), "{r}");
        records.push(record);
    }

    // Each distinct computation ran once across the points; the stages all points share
    // ran in the first point's job, before the others started.
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for record in &records {
        for s in record["stages"].as_array().expect("stages") {
            let name = s["name"].as_str().expect("name").to_string();
            keys.entry(name.clone())
                .or_default()
                .insert(s["key"].to_string());
            if s["cache"].as_str() == Some("miss") {
                *misses.entry(name).or_default() += 1;
            }
        }
    }
    for (stage, distinct) in &keys {
        assert_eq!(
            misses.get(stage).copied().unwrap_or(0),
            distinct.len(),
            "{stage}: each distinct computation once ({misses:?})"
        );
    }
    for shared in ["load", "normalize", "split", "features"] {
        assert_eq!(keys[shared].len(), 1, "{shared} is shared");
        let first = common::cache_uses(&records[0]);
        assert!(first.contains(&format!("{shared}=miss")), "{first:?}");
    }
    assert_eq!(keys["train"].len(), 12);
}

#[test]
fn a_sweep_whose_first_point_fails_runs_no_other_and_says_why() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // The first point fails: the others would fail the same way where the failure is in a
    // stage they share, so Slurm cancels them rather than run them.
    let p = Project::trusting_shell();
    p.write(
        "exp.toml",
        "name = \"grid\"\ndescription = \"d\"\nseed = 1\n\n[stages.score]\nkind = \"shell\"\n\
         command = \"echo 'score = 1' > metrics.toml\"\noutputs = [\"metrics.toml\"]\n",
    );
    let (code, _, stderr) = output_of(on(
        &cluster,
        &p,
        &[
            "sweep",
            "exp.toml",
            "--grid",
            "score.command=exit 7,echo 'score = 2' > metrics.toml,echo 'score = 3' > metrics.toml",
            "--executor",
            "slurm",
            "--slurm-retries",
            "0",
        ],
    ));
    assert_eq!(code, Some(FAILURE), "{stderr}");
    assert!(stderr.contains("3 of 3 points failed"), "{stderr}");
    let (dir, table) = sweep_table(&p);
    let rows = table["points"].as_array().expect("points");
    let first_error = rows[0]["error"].as_str().expect("error");
    assert!(
        first_error.contains("exited with status 7"),
        "{first_error}"
    );
    assert!(first_error.ends_with("(after 1 attempt)"), "{first_error}");
    assert!(dir.join(rows[0]["log"].as_str().expect("log")).is_file());
    for row in &rows[1..] {
        assert_eq!(row["status"], "failed");
        assert!(
            row["error"].as_str().expect("error").starts_with(
                "not run: the first point, which computes the stages all points share, failed"
            ),
            "{row}"
        );
    }
    assert!(dir.join("sweep.html").is_file());
}

#[test]
fn a_preempted_point_is_requeued_and_goes_on_counting_its_attempts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // The first attempt sleeps until Slurm takes its node away (as preemption or a node
    // failure would); the requeued job's second attempt finishes.
    let p = Project::trusting_shell();
    let marker = p.path().join("first-attempt-started");
    p.write(
        "exp.toml",
        &format!(
            "name = \"preempted\"\ndescription = \"d\"\nseed = 1\n\n[stages.work]\n\
             kind = \"shell\"\noutputs = [\"out.txt\"]\ncommand = {:?}\n",
            format!(
                "if [ -e '{m}' ]; then echo ok > out.txt; else touch '{m}'; sleep 120; fi",
                m = marker.display()
            )
        ),
    );
    let mut child = on(&cluster, &p, &["run", "exp.toml", "--executor", "slurm"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipeline starts");
    // Requeue only once the watcher has reported the first attempt running: it looks every
    // second, and a requeue sooner than that (the marker appears at once) would leave it
    // nothing running to see, the second attempt being over in a moment.
    let stderr_lines = lines_of(child.stderr.take().expect("stderr piped"));
    let mut stderr = String::new();
    let start = Instant::now();
    while !(marker.exists() && stderr.contains("the run: running on")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never seen running: {stderr}"
        );
        if let Ok(line) = stderr_lines.recv_timeout(Duration::from_millis(200)) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    let job = status_of(&submission(&p), 0)["slurm_job"]
        .as_str()
        .expect("job id")
        .to_string();
    let requeue = cluster
        .command("scontrol")
        .args(["requeue", &job])
        .status()
        .expect("scontrol");
    assert!(requeue.success());
    // A requeued job waits two minutes before it may start again; the test need not.
    let start = Instant::now();
    while !cluster.jobs().contains(&format!("{job} PENDING")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            cluster.jobs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let update = cluster
        .command("scontrol")
        .args(["update", &format!("JobId={job}"), "StartTime=now"])
        .status()
        .expect("scontrol");
    assert!(update.success());
    let out = child.wait_with_output().expect("pipeline ends");
    stderr.extend(stderr_lines.iter().map(|line| line + "\n"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("(attempt 1 of 2)"), "{stderr}");
    let status = status_of(&submission(&p), 0);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["attempt"], 2, "{status}");
    let log = fs::read_to_string(submission(&p).join("logs/point-0.log")).expect("log");
    assert!(
        log.contains("attempt 1 of 2") && log.contains("attempt 2 of 2"),
        "{log}"
    );
    let run_dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(
        fs::read_to_string(run_dir.join("out.txt")).ok().as_deref(),
        Some("ok\n")
    );
    assert_eq!(read_record(&run_dir)["status"].as_str(), Some("succeeded"));
}
