//! `pipeline verify` (a run, or a lock file) and `pipeline lock`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use pipeline_engine::repro::lock::{self, Check};
use pipeline_engine::repro::verify;
use pipeline_engine::run::execute::{self, RunOptions};
use pipeline_engine::run::store::Store;
use pipeline_engine::store::cache::Lease;

use super::ExperimentArgs;
use crate::session::Session;
use crate::terminal::Terminal;

#[derive(Args)]
pub struct VerifyArgs {
    /// The run to re-execute (id, prefix, name, latest, latest~N)
    #[arg(required_unless_present = "lock")]
    pub run: Option<String>,
    /// Verify an experiment against its lock file instead of a run
    #[arg(long, value_name = "EXP.lock", conflicts_with = "run")]
    pub lock: Option<PathBuf>,
}

pub fn verify(args: &VerifyArgs, session: &Session) -> anyhow::Result<ExitCode> {
    if let Some(lock_file) = &args.lock {
        return verify_lock(lock_file, session);
    }
    let registry = &session.registry;
    let store = session.open_store()?;
    // Held to the end: gc neither prunes this run nor clears the scratch store meanwhile.
    let _lease = lease(&store)?;
    let spec = args.run.as_deref().unwrap_or("latest");
    let record = store.runs.resolve(spec)?;
    if record.status_label() == "running" {
        anyhow::bail!(
            "run {} is still running (pid {}): verify it when it has finished",
            record.id,
            record.pid
        );
    }
    let run_dir = store.runs.dir_of(&record.id);
    // The run's own files first: re-executing proves nothing about a directory whose files
    // are no longer the ones recorded.
    let altered = verify::altered_files(&record, &run_dir);
    if !altered.is_empty() {
        for file in &altered {
            eprintln!("error: run {}: {file}", record.id);
        }
        eprintln!(
            "error: run {} was altered after it ran ({} file(s) above); nothing re-executed",
            record.id,
            altered.len()
        );
        return Ok(crate::exit::difference());
    }
    let exp = verify::experiment_of(&record, &run_dir, registry)?;
    let opts = RunOptions {
        data_root: session
            .given_data_root()
            .map_or_else(|| PathBuf::from(&record.data_root), Path::to_path_buf),
        project_root: session.project.clone(),
        name: Some(format!("verify {}", record.id)),
        no_cache: true,
    };
    eprintln!("re-executing {} from scratch", record.id);
    let fresh = verify::rerun_from_scratch(
        &exp,
        registry,
        &session.artifacts.value.join("tmp"),
        &opts,
        &Terminal::new(),
    )?;
    let verdicts = verify::compare(&record, &fresh);
    let comparison = verify::comparison(&record, &fresh, lock::DEFAULT_METRIC_TOLERANCE);
    println!("{comparison}");
    let mut failed = 0;
    let mut unrecorded = 0;
    let ended = match record.status_label() {
        "interrupted" => "was interrupted",
        _ => "failed",
    };
    for v in &verdicts {
        if v.not_recorded {
            unrecorded += 1;
            println!("{:<12} not recorded (the run {ended} before it)", v.stage);
        } else if v.same() {
            if v.via_metrics.is_empty() {
                println!("{:<12} same", v.stage);
            } else {
                println!(
                    "{:<12} same; float data from another device class checked via metrics: {}",
                    v.stage,
                    v.via_metrics.join(", ")
                );
            }
        } else {
            failed += 1;
            let why = if v.key_changed {
                " (its key changed too: the stage's code or inputs are not those of the run)"
            } else {
                ""
            };
            println!("{:<12} DIFFERENT: {}{why}", v.stage, v.different.join(", "));
        }
    }
    // Across device classes the float outputs are vouched for by the metrics.
    let across = matches!(comparison, verify::Comparison::AcrossDevices { .. });
    if across {
        for m in verify::compare_metrics(&record, &fresh, lock::DEFAULT_METRIC_TOLERANCE) {
            let now = m.fresh.map_or("missing".into(), |v| format!("{v:.6}"));
            let mark = if m.within {
                "ok"
            } else {
                failed += 1;
                "OUT OF TOLERANCE"
            };
            println!("{:<32} recorded {:.6}  now {now}  {mark}", m.name, m.locked);
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} stage(s) or metric(s) did not reproduce run {}",
            record.id
        );
        return Ok(crate::exit::difference());
    }
    if unrecorded > 0 {
        println!(
            "run {} reproduces bit for bit in the {} stage(s) it recorded (it {ended} before the other {unrecorded})",
            record.id,
            verdicts.len() - unrecorded,
        );
    } else if across {
        println!(
            "run {} reproduces on another device class: metrics within {}, other outputs bit for bit",
            record.id,
            lock::DEFAULT_METRIC_TOLERANCE
        );
    } else {
        println!("run {} reproduces bit for bit", record.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_lock(lock_file: &Path, session: &Session) -> anyhow::Result<ExitCode> {
    let ws = session.workspace()?;
    // Held to the end: gc does not clear the scratch store under `artifacts/tmp` meanwhile.
    let _lease = lease(&ws.store)?;
    let locked = lock::read(lock_file)?;
    let exp_path = lock_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(&locked.experiment);
    let exp = session.load_experiment(&exp_path, &[])?;
    if exp.digest.to_hex().as_str() != locked.experiment_digest {
        eprintln!(
            "note: {} changed since the lock was written; its results may differ for that reason",
            exp.path.display()
        );
    }
    let opts = ws.run_options(Some("verify --lock".into()), true);
    eprintln!("re-executing {} from scratch", exp.path.display());
    let fresh = verify::rerun_from_scratch(
        &exp,
        &session.registry,
        &session.artifacts.value.join("tmp"),
        &opts,
        &Terminal::new(),
    )?;
    let report = lock::check(&locked, &fresh);
    if report.same_isa && report.same_device {
        println!(
            "same instruction set as the lock ({}): every output compared exactly",
            locked.isa.join(", ")
        );
    } else if !report.same_isa {
        println!(
            "instruction set differs from the lock ({} here, {} there): float outputs compared through metrics within {}",
            lock::current_isa().join(", "),
            locked.isa.join(", "),
            locked.metric_tolerance
        );
    }
    if !report.same_device {
        println!(
            "device class differs from the lock ({} here, {} there): float outputs compared through metrics within {}",
            pipeline_engine::runs::record::device_class(&fresh),
            locked.device_class,
            locked.metric_tolerance
        );
    }
    for o in &report.outputs {
        let verdict = match o.check {
            Check::Exact { equal: true } => "same",
            Check::Exact { equal: false } => "DIFFERENT",
            Check::ViaMetrics => "float data: checked via metrics",
        };
        println!("{:<12} {:<16} {verdict}", o.stage, o.output);
    }
    for m in &report.metrics {
        let fresh = m.fresh.map_or("missing".into(), |v| format!("{v:.6}"));
        let mark = if m.within { "ok" } else { "OUT OF TOLERANCE" };
        println!("{:<32} locked {:.6}  now {fresh}  {mark}", m.name, m.locked);
    }
    if report.passed() {
        println!("{} matches its lock", exp.path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} does not match {}",
            exp.path.display(),
            lock_file.display()
        );
        Ok(crate::exit::difference())
    }
}

/// A shared hold on the store, as a run takes, waiting (and saying so) while gc works.
fn lease(store: &Store) -> anyhow::Result<Lease> {
    if let Some(lease) = store.cache.try_lease()? {
        return Ok(lease);
    }
    eprintln!("waiting: `pipeline gc` is cleaning the store; verify starts when it ends");
    Ok(store.cache.lease()?)
}

pub fn lock(args: &ExperimentArgs, session: &Session) -> anyhow::Result<ExitCode> {
    let exp = args.load(session)?;
    let ws = session.workspace()?;
    let opts = ws.run_options(Some("lock".into()), false);
    let record = execute::run(&exp, &session.registry, &ws.store, &opts, &Terminal::new())
        .map_err(|e| ws.hint(e))?;
    let file_name = args
        .experiment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the experiment path has no file name")?;
    // Beside the experiment, `.toml` replaced by `.lock`: experiments/quickstart.lock.
    let lock_file = lock::lock_path(&args.experiment);
    let shown = from_project_root(&lock_file, &session.project);
    lock::write_showing(
        &lock::from_run(&exp, &record, &file_name),
        &lock_file,
        &shown,
    )?;
    eprintln!(
        "wrote {shown}: commit it; `pipeline verify --lock {shown}` reruns {} from scratch and compares",
        exp.name
    );
    println!("{}", lock_file.display());
    Ok(ExitCode::SUCCESS)
}

/// `path` relative to the project root when it is under it (as people type it from there),
/// else as given.
fn from_project_root(path: &Path, project: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let canonical = |p: &Path| {
        // The file may not exist yet: canonicalize its folder.
        let dir = p.parent().and_then(|d| d.canonicalize().ok());
        match (dir, p.file_name()) {
            (Some(d), Some(n)) => d.join(n),
            _ => p.to_path_buf(),
        }
    };
    let project = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf());
    canonical(&absolute)
        .strip_prefix(&project)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}
