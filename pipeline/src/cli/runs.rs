//! `pipeline runs`, `pipeline show` and `pipeline kinds`: reading what is recorded.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::report;
use pipeline_engine::execute::Store;
use pipeline_engine::gc::GcOptions;
use pipeline_engine::kind::{ParamDefault, Registry};

use pipeline_engine::human::{format_bytes, format_seconds};

/// How many metric columns `pipeline runs` shows.
const METRIC_COLUMNS: usize = 4;

pub fn list(store: &Store) -> anyhow::Result<ExitCode> {
    let runs = store.runs.list()?;
    if runs.is_empty() {
        println!("no runs yet in {}", store.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let metric_names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.metrics().into_keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(METRIC_COLUMNS)
        .collect();
    let mut rows = vec![{
        let mut h: Vec<String> = ["ID", "NAME", "EXPERIMENT", "STATUS", "DURATION"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        h.extend(metric_names.iter().cloned());
        h
    }];
    for r in &runs {
        let metrics = r.metrics();
        let mut row = vec![
            r.id.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.experiment.name.clone(),
            r.status_label().to_string(),
            r.duration_s.map_or("-".into(), format_seconds),
        ];
        row.extend(
            metric_names
                .iter()
                .map(|m| metrics.get(m).map_or("-".into(), |v| format!("{v:.4}"))),
        );
        rows.push(row);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

pub fn show(store: &Store, spec: &str, open: bool) -> anyhow::Result<ExitCode> {
    let r = store.runs.resolve(spec)?;
    println!("run         {}", r.id);
    if let Some(name) = &r.name {
        println!("name        {name}");
    }
    println!("experiment  {} ({})", r.experiment.name, r.experiment.path);
    if !r.experiment.description.is_empty() {
        println!("            {}", r.experiment.description.trim());
    }
    println!("status      {}", r.status_label());
    if let Some(e) = &r.error {
        println!("error       {e}");
    }
    println!(
        "started     {}{}",
        r.started,
        r.duration_s
            .map_or(String::new(), |d| format!(" (took {})", format_seconds(d)))
    );
    if let Some(commit) = &r.git_commit {
        let dirty = if r.git_dirty == Some(true) {
            " with uncommitted changes"
        } else {
            ""
        };
        println!("git         {commit}{dirty}");
    }
    println!(
        "host        {} ({} threads, {}-{})",
        r.host.cpu, r.host.threads, r.host.os, r.host.arch
    );
    println!("data root   {}", r.data_root);
    if !r.experiment.overrides.is_empty() {
        println!("overrides   {}", r.experiment.overrides.join(" "));
    }
    println!("\nstages");
    for s in &r.stages {
        println!(
            "  {:<12} {:<10} {:<26} {:>9}  {}",
            s.name,
            s.kind,
            s.cache.label(),
            format_seconds(s.duration_s),
            &s.key[..12.min(s.key.len())]
        );
    }
    let metrics = r.metrics();
    if !metrics.is_empty() {
        println!("\nmetrics");
        for (name, value) in metrics {
            println!("  {name:<32} {value:.6}");
        }
    }
    let dir = store.runs.dir_of(&r.id);
    let published: Vec<&String> = r
        .stages
        .iter()
        .flat_map(|s| s.outputs.values().filter_map(|o| o.published.as_ref()))
        .collect();
    if !published.is_empty() {
        println!("\nfiles in {}", dir.display());
        for p in published {
            println!("  {p}");
        }
    }
    println!("\nparameters");
    let params = toml::to_string(&r.params).unwrap_or_default();
    for line in params.lines() {
        println!("  {line}");
    }
    // A run killed before it ended, or recorded before reports existed, gets its report now.
    let report = match report::ensure(&r, &dir) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("warning: {e}");
            report::path_in(&dir)
        }
    };
    if open {
        open_in_browser(&report);
    }
    println!("\nreport: {}", report.display());
    Ok(ExitCode::SUCCESS)
}

/// Hands the file to the desktop's opener. Not finding or starting one is only a warning: the
/// path is printed either way, and `show` is often run where there is no desktop (ssh, CI).
fn open_in_browser(path: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let child = Command::new(opener)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("warning: cannot start `{opener}` to open the report: {e}");
            return;
        }
    };
    // Openers usually hand over to the browser and exit at once; one that keeps running is
    // left to itself rather than holding up the terminal.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                eprintln!("warning: `{opener}` could not open the report ({status})");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                eprintln!("warning: lost track of `{opener}`: {e}");
                return;
            }
        }
    }
}

pub fn kinds(registry: &Registry) {
    for kind in registry.kinds() {
        println!(
            "{} (version {}): {}",
            kind.name(),
            kind.version(),
            kind.summary()
        );
        for p in kind.params() {
            let default = match p.default {
                ParamDefault::Required => "required".to_string(),
                ParamDefault::Optional => "optional".to_string(),
                ParamDefault::Int(i) => format!("default {i}"),
                ParamDefault::Float(f) => format!("default {f}"),
                ParamDefault::Bool(b) => format!("default {b}"),
                ParamDefault::Str(s) => format!("default \"{s}\""),
                ParamDefault::ExperimentSeed => "default: the experiment's seed".to_string(),
            };
            println!(
                "    {:<18} {} ({default}): {}",
                p.name,
                p.ty.describe(),
                p.help
            );
        }
    }
}

pub fn gc(store: &Store, opts: &GcOptions, no_wait: bool) -> anyhow::Result<ExitCode> {
    let lease = match store.cache.try_lease_exclusive()? {
        Some(lease) => lease,
        None => {
            let (who, verb) = store_users(store);
            if no_wait {
                anyhow::bail!(
                    "the store is in use by {who}: gc removed nothing; run it again when it has finished, or without --no-wait to wait"
                );
            }
            eprintln!(
                "waiting: {who} {verb} using the store; gc starts once it is free (--no-wait fails instead)"
            );
            store.cache.lease_exclusive()?
        }
    };
    let collected = pipeline_engine::gc::collect(store, opts, &lease)?;
    drop(lease);
    let verb = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for what in &collected.described {
        println!("{verb} {what}");
    }
    for id in &collected.runs {
        println!("{verb} run {id}");
    }
    for dir in &collected.tmp {
        println!("{verb} stale {dir}");
    }
    let freed = format_bytes(collected.freed);
    println!(
        "{verb} {} cache entries, {} and {}; {}; kept {} cache entries",
        collected.entries.len(),
        count(collected.runs.len(), "run directory", "run directories"),
        count(
            collected.tmp.len(),
            "stale temporary directory",
            "stale temporary directories"
        ),
        if opts.dry_run {
            format!("{freed} would be freed")
        } else {
            format!("{freed} freed")
        },
        collected.kept
    );
    if collected.blobs > 0 {
        println!(
            "{verb} {} that no kept entry uses",
            count(collected.blobs, "stored blob", "stored blobs")
        );
    }
    if collected.still_linked > 0 {
        let held = format_bytes(collected.still_linked);
        if collected.linking_runs > 0 {
            println!(
                "{held} of it stays on disk, still linked from {} (add --prune-runs to remove them)",
                count(
                    collected.linking_runs,
                    "older run directory",
                    "older run directories"
                )
            );
        } else {
            println!("{held} of it stays on disk, still linked from outside the store");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs that hold the store right now, for gc's message, with the verb that agrees.
fn store_users(store: &Store) -> (String, &'static str) {
    let running: Vec<String> = store
        .runs
        .list()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.status_label() == "running")
        .map(|r| format!("{} (pid {})", r.id, r.pid))
        .collect();
    match running.as_slice() {
        [] => (
            "another pipeline process (a run starting, or a verify)".into(),
            "is",
        ),
        [one] => (format!("run {one}"), "is"),
        many => (format!("runs {}", many.join(", ")), "are"),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
