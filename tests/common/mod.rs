//! Helpers shared by the end-to-end tests: a throwaway project and readers of its records.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The exit codes `pipeline` documents (README, `pipeline/src/exit.rs`).
pub const DIFFERENCE: i32 = 1;
pub const USAGE: i32 = 2;
pub const FAILURE: i32 = 3;

/// A throwaway project directory with its own store.
pub struct Project {
    dir: tempfile::TempDir,
    /// Whether every command may run the experiments' `shell` stages (`PIPELINE_ALLOW_SHELL`).
    allow_shell: bool,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("tempdir"),
            allow_shell: false,
        }
    }

    /// A project whose commands all run with shell stages allowed, for tests of other things
    /// (the store, say) that use `shell` stages as their workload.
    pub fn trusting_shell() -> Project {
        Project {
            allow_shell: true,
            ..Project::new()
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, text).expect("write");
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        cmd.current_dir(self.path())
            .args(args)
            .env_remove("PIPELINE_ARTIFACTS")
            .env_remove("PIPELINE_DATA_ROOT")
            .env_remove("PIPELINE_ALLOW_SHELL")
            .env_remove("PIPELINE_REMOTE");
        if self.allow_shell {
            cmd.env("PIPELINE_ALLOW_SHELL", "1");
        }
        cmd
    }

    pub fn pipeline(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("pipeline runs")
    }

    /// Runs and insists on success; returns stderr + stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pipeline(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.status.success(), "pipeline {args:?} failed:\n{text}");
        text
    }

    /// Runs and insists on a failure while running (exit 3); returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.exits(args, FAILURE)
    }

    /// Runs and insists on a usage error (exit 2: a bad flag, run reference or experiment
    /// file; nothing ran); returns stderr.
    pub fn rejects(&self, args: &[&str]) -> String {
        self.exits(args, USAGE)
    }

    /// Runs and insists on exit code `code`; returns stderr.
    pub fn exits(&self, args: &[&str], code: i32) -> String {
        let out = self.pipeline(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "pipeline {args:?}:\n{text}");
        text
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.path().join("artifacts/runs")
    }

    /// The newest run's record.
    pub fn latest(&self) -> toml::Table {
        let mut ids: Vec<String> = fs::read_dir(self.runs_dir())
            .expect("runs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        let id = ids.last().expect("a run");
        let text = fs::read_to_string(self.runs_dir().join(id).join("run.toml")).expect("record");
        toml::from_str(&text).expect("record parses")
    }

    pub fn cache_entries(&self) -> usize {
        let root = self.path().join("artifacts/cache/entries");
        fs::read_dir(root)
            .map(|shards| {
                shards
                    .map(|s| {
                        fs::read_dir(s.expect("shard").path())
                            .expect("shard")
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Each stage's cache use in the newest run, as "name=use".
pub fn cache_uses(record: &toml::Table) -> Vec<String> {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["name"].as_str().expect("name"),
                s["cache"].as_str().expect("cache")
            )
        })
        .collect()
}

/// The workspace root (the checkout), where `experiments/` lives.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The real chest X-rays, when present beside the checkout (`../shared/data`, or
/// `PIPELINE_TEST_DATA`). When absent, records the calling test as skipped ([`skip`]) and
/// returns `None`, so that the test returns.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    if dir.join("covid-chestxray-dataset/metadata.csv").is_file() {
        Some(dir)
    } else {
        skip(&format!(
            "no real chest X-ray data at {} (set PIPELINE_TEST_DATA)",
            dir.display()
        ));
        None
    }
}

/// Records that the calling test is skipped because of `reason` (the test then returns), so
/// that a skip does not look like a pass. libtest cannot mark a running test ignored, so this
/// says why on stderr and, when `PIPELINE_SKIP_LOG` names a file (`.ci/run` sets it), appends
/// `binary: test<TAB>reason` to it; `.ci/run` lists those lines at the end, pass or fail.
/// The same lines as `stages`' own `test_skip::skip` writes for its unit tests.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    eprintln!("skipping {test}: {reason}");
    let Some(log) = std::env::var_os("PIPELINE_SKIP_LOG") else {
        return;
    };
    // The test binary's name without cargo's hash suffix (`predict-0123abcd` -> `predict`).
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let binary = stem.rsplit_once('-').map_or(&stem[..], |(name, _)| name);
    let line = format!("{binary}: {test}\t{}\n", reason.replace(['\t', '\n'], " "));
    // One `write_all` on a file opened for appending: lines from tests running at the same
    // time, in one binary or several, do not interleave.
    let written = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        // Unrecorded, the skip would look like a pass.
        panic!(
            "cannot record a skipped test in {}: {e}",
            Path::new(&log).display()
        );
    }
}

/// `--set` arguments that shrink `experiments/model1.toml` (the seed recipe) to 32 x 32 and 5
/// epochs, so tests on the real images stay quick; the full size is a benchmark.
pub const MODEL1_AT_32: [&str; 12] = [
    "--set",
    "load.image_size=32",
    "--set",
    "external_load.image_size=32",
    "--set",
    "model.image_size=32",
    "--set",
    "model.pooling=global",
    "--set",
    "model.weights=random-he",
    "--set",
    "train.epochs=5",
];

/// Rows of a CSV file the stages write, as `header -> cell` maps.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("csv opens");
    let headers = reader.headers().expect("header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The stage `name`'s entry in a run record.
pub fn stage_record<'a>(record: &'a toml::Table, name: &str) -> &'a toml::Value {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .expect("stage")
}
