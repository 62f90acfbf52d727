//! The remote cache on the command line: `pipeline push`, `pipeline pull` and remote gc.
//! Where the remote is (`--remote`, `PIPELINE_REMOTE`, `remote = "..."` in `pipeline.toml`)
//! the session decides ([`crate::config::remote`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use pipeline_engine::human::format_bytes;
use pipeline_engine::run::status::PlanState;
use pipeline_engine::store::manifest::describe_entry;
use pipeline_engine::store::remote::{Fetched, Pushed, Remote};

use crate::session::Session;

/// The remote cache, which push, pull and remote gc cannot do without.
fn required(session: &Session) -> anyhow::Result<Remote> {
    session.open_remote()?.ok_or_else(|| {
        crate::usage::UsageError(
            "no remote cache configured: give --remote s3://bucket/prefix (or file:///path), set PIPELINE_REMOTE, or add `remote = \"...\"` to pipeline.toml".into(),
        )
        .into()
    })
}

#[derive(Args)]
pub struct PushArgs {
    /// Push only what this run used (id, prefix, name, latest, latest~N) [default: every
    /// local cache entry]
    pub run: Option<String>,
}

/// `pipeline push`: uploads local entries the remote lacks, blobs first, manifest last.
pub fn push(session: &Session, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let store = &session.open_store()?;
    let remote = required(session)?;
    let keys: Vec<String> = match &args.run {
        Some(spec) => {
            let record = store.runs.resolve(spec)?;
            let keys: Vec<String> = record.stages.iter().map(|s| s.key.clone()).collect();
            remote
                .record_run(&record.id, &record.experiment.name, &keys)
                .context("cannot record the run on the remote")?;
            keys
        }
        None => store.cache.keys()?,
    };
    let (mut pushed, mut present, mut bytes, mut failed) = (0, 0, 0u64, 0);
    for key in &keys {
        let Some(entry) = store.cache.read_entry(key)? else {
            eprintln!("not pushed: entry {} is not in the local store", &key[..12]);
            failed += 1;
            continue;
        };
        let what = describe_entry(key, Some(&entry.manifest));
        match remote.push(&entry) {
            Ok(Pushed::Committed { bytes: b, .. }) => {
                pushed += 1;
                bytes += b;
                println!("pushed {what}: {}", format_bytes(b));
            }
            Ok(Pushed::Present { bytes: b, .. }) => {
                present += 1;
                bytes += b;
            }
            Ok(Pushed::Differs(finding)) => {
                present += 1;
                eprintln!("warning: {finding}");
            }
            Err(e) => {
                eprintln!("not pushed: {what}: {e}");
                failed += 1;
                if matches!(
                    e,
                    pipeline_engine::store::remote::RemoteError::Backend { .. }
                ) {
                    break;
                }
            }
        }
    }
    println!(
        "{pushed} pushed, {present} already on {}, {} uploaded",
        remote.url,
        format_bytes(bytes)
    );
    if failed > 0 {
        anyhow::bail!("{failed} entries were not pushed; run `pipeline push` again to finish");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PullArgs {
    /// A run of this store (id, prefix, name, latest), or an experiment file: every stage
    /// result the remote has for it is downloaded
    pub target: String,
    #[command(flatten)]
    pub experiment: PullExperimentArgs,
}

#[derive(Args)]
pub struct PullExperimentArgs {
    /// With an experiment file: override a parameter, as for `pipeline run`
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub set: Vec<String>,
}

/// `pipeline pull RUN|EXP`: downloads, checks and publishes locally what the remote holds.
pub fn pull(session: &Session, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let store = &session.open_store()?;
    let remote = required(session)?;
    let keys: Vec<String> = if Path::new(&args.target).is_file() {
        let exp = session.load_experiment(Path::new(&args.target), &args.experiment.set)?;
        let data_root = &session.data_root;
        let states =
            pipeline_engine::run::status::status(&exp, &session.registry, store, &data_root.value)?;
        let mut keys = Vec::new();
        for s in states {
            match (&s.state, s.key) {
                (PlanState::Cached, _) => println!("{}: already local", s.name),
                (PlanState::Remote, Some(key)) => keys.push(key),
                _ => println!("{}: not on the remote (`pipeline run` computes it)", s.name),
            }
        }
        keys
    } else {
        let record = store.runs.resolve(&args.target)?;
        record.stages.iter().map(|s| s.key.clone()).collect()
    };
    let (mut fetched, mut failed) = (0, 0);
    for key in &keys {
        if store.cache.read_entry(key)?.is_some() {
            continue;
        }
        let lock = store.cache.lock(key)?;
        match remote.fetch(&store.cache, key, &lock) {
            Ok(Fetched::Entry(entry)) => {
                fetched += 1;
                println!("pulled {}", describe_entry(key, Some(&entry.manifest)));
            }
            Ok(Fetched::Absent) => {
                println!("not on the remote: entry {}", &key[..12]);
            }
            Err(e) => {
                eprintln!("not pulled: entry {}: {e}", &key[..12]);
                failed += 1;
            }
        }
    }
    println!("{fetched} pulled from {}", remote.url);
    if failed > 0 {
        anyhow::bail!("{failed} entries could not be pulled");
    }
    Ok(ExitCode::SUCCESS)
}

/// `pipeline gc --remote-cache`: removes what no recorded run (of any machine that pushed,
/// and of this store) used, past the grace period.
pub fn gc(session: &Session, grace_hours: f64, dry_run: bool) -> anyhow::Result<ExitCode> {
    let store = &session.open_store()?;
    let remote = required(session)?;
    let mut roots: BTreeSet<String> = remote.recorded_keys()?;
    for run in store.runs.list()? {
        roots.extend(run.stages.iter().map(|s| s.key.clone()));
    }
    let grace_s = (grace_hours * 3600.0) as i64;
    let collected = remote.collect(&roots, grace_s, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for what in &collected.entries {
        println!("{verb} {what}");
    }
    println!(
        "{verb} {} entries and {} blobs ({}) from {}; kept {} entries (recorded runs, or pushed in the last {grace_hours} hours)",
        collected.entries.len(),
        collected.blobs,
        format_bytes(collected.bytes),
        remote.url,
        collected.kept
    );
    Ok(ExitCode::SUCCESS)
}
