//! End-to-end tests of run records that cannot be read: `runs` lists the others and warns
//! once per damaged record, naming it; `show`, `compare` and `diff` name the damaged file
//! instead of saying that no run matches; a record that is a FIFO does not hang `runs`.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Project, FAILURE};

const EXPERIMENT: &str = r#"
name = "tiny"
[stages.a]
kind = "shell"
command = "echo 1 > one.txt"
outputs = ["one.txt"]
"#;

/// A project with two runs, named `good` and `bad`; returns it with the id of `bad`.
fn two_runs() -> (Project, String) {
    let p = Project::trusting_shell();
    p.write("exp.toml", EXPERIMENT);
    p.ok(&["run", "exp.toml", "--name", "good"]);
    p.ok(&["run", "exp.toml", "--name", "bad"]);
    let latest = p.latest();
    let id = latest["id"].as_str().expect("an id").to_string();
    (p, id)
}

#[test]
fn a_truncated_record_is_named_by_runs_show_compare_and_diff() {
    let (p, bad) = two_runs();
    let record = p.runs_dir().join(&bad).join("run.toml");
    let text = fs::read_to_string(&record).expect("record");
    fs::write(&record, &text[..text.len() / 2]).expect("truncate");
    let named = format!("{bad}/run.toml");

    let out = p.pipeline(&["runs"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("good") && !stdout.contains(&bad),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(&named)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning naming the record:\n{stderr}"
    );
    assert!(warnings[0].contains("damaged"), "{stderr}");

    let suffix = &bad[bad.len() - 4..];
    for args in [
        vec!["show", suffix],
        vec!["compare", "good", suffix],
        vec!["diff", "good", &bad],
    ] {
        let stderr = p.exits(&args, FAILURE);
        assert!(
            stderr.contains(&named) && stderr.contains("damaged"),
            "{args:?}:\n{stderr}"
        );
        assert!(!stderr.contains("no run matches"), "{args:?}:\n{stderr}");
    }
}

#[cfg(unix)]
#[test]
fn a_record_that_is_a_fifo_or_a_link_to_dev_zero_is_refused_at_once() {
    let (p, bad) = two_runs();
    let record = p.runs_dir().join(&bad).join("run.toml");
    for damage in ["fifo", "link"] {
        fs::remove_file(&record).expect("remove");
        if damage == "fifo" {
            let made = std::process::Command::new("mkfifo").arg(&record).status();
            assert!(made.expect("mkfifo").success());
        } else {
            std::os::unix::fs::symlink("/dev/zero", &record).expect("symlink");
        }
        let started = Instant::now();
        let mut child = p
            .command(&["runs"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`pipeline runs` hangs on a {damage} record");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        assert!(out.status.success(), "{damage}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{bad}/run.toml")),
            "{damage}:\n{stderr}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("good"));
    }
}
