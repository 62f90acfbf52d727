//! `pipeline run`.

use std::process::ExitCode;

use clap::Args;

use pipeline_engine::run::execute;
use pipeline_engine::runs::record::CacheUse;

use pipeline_engine::human::format_seconds;

use anyhow::Context;
use pipeline_engine::experiment::Experiment;
use pipeline_engine::run::store::Store;
use pipeline_engine::runs::record::RunRecord;

use crate::slurm::{
    self,
    scheduler::Scheduler,
    watch::{watch, Progress, Stop},
    Executor,
};

use super::{ExperimentArgs, ShellArgs};
use crate::headline::{value_text, Headline};
use crate::session::Session;
use crate::terminal::Terminal;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Recompute every stage instead of reusing cached results
    #[arg(long)]
    pub no_cache: bool,
    /// A label for the run, usable wherever a run id is
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub shell: ShellArgs,
    #[command(flatten)]
    pub executor: crate::slurm::ExecutorArgs,
}

pub fn run(args: &RunArgs, session: &Session) -> anyhow::Result<ExitCode> {
    args.executor.check()?;
    let exp = args.experiment.load(session)?;
    if args.executor.executor == Executor::Slurm {
        return run_on_slurm(args, &exp, session);
    }
    let ws = session.workspace()?;
    let opts = ws.run_options(args.name.clone(), args.no_cache);
    eprintln!("running {} ({} stages)", exp.name, exp.stages.len());
    let terminal = Terminal::new();
    let record = execute::run(&exp, &session.registry, &ws.store, &opts, &terminal)
        .map_err(|e| ws.hint(e))?;
    print_summary(&ws.store, &record);
    Ok(ExitCode::SUCCESS)
}

/// What ran, what was reused, the metrics; the run's directory on stdout.
fn print_summary(store: &Store, record: &RunRecord) {
    let reused = record
        .stages
        .iter()
        .filter(|s| matches!(s.cache, CacheUse::Hit | CacheUse::Remote))
        .count();
    let ran = record.stages.len() - reused;
    eprintln!(
        "done: {ran} ran, {reused} reused from cache, {}",
        format_seconds(record.duration_s.unwrap_or(0.0))
    );
    // The headline first (weights, caveats, each evaluation set side by side, warnings),
    // then every other metric.
    let headline = Headline::of(record);
    for line in headline.lines() {
        eprintln!("{line}");
    }
    for (name, value) in record.metrics() {
        if !headline.shows(&name) {
            eprintln!("  {name} = {}", value_text(&name, value));
        }
    }
    println!("{}", store.runs.dir_of(&record.id).display());
}

/// `run --executor slurm`: the run as one Slurm job running this binary on a node, followed
/// until it ends; the run lands in the store as an ordinary run.
fn run_on_slurm(args: &RunArgs, exp: &Experiment, session: &Session) -> anyhow::Result<ExitCode> {
    let project = &session.project;
    let artifacts = &session.artifacts.value;
    let resources = args
        .executor
        .resources(&args.experiment.experiment, &session.settings)?;
    let scheduler = Scheduler::find()?;
    // Created here, before any node writes to it.
    let store = session.open_store()?;
    let root = &session.data_root;
    eprintln!(
        "submitting {} ({} stages) to Slurm, asking for {resources}",
        exp.name,
        exp.stages.len()
    );
    let request = slurm::Request {
        experiment: &args.experiment.experiment,
        name: &exp.name,
        project,
        artifacts,
        data_root: &root.value,
        allow_shell: args.shell.allow_shell,
        no_cache: args.no_cache,
        points: vec![(args.experiment.set.clone(), args.name.clone())],
        resources,
        throttle: None,
    };
    let (dir, spec, submitted) = slurm::submit(&scheduler, slurm::run_dir_for(artifacts), request)?;
    let (progress, stop) = watch(&scheduler, &dir, &spec, &submitted, &["the run".into()]);
    if stop == Stop::Cancelled {
        anyhow::bail!("interrupted: Slurm job {} cancelled", submitted.first);
    }
    match progress.into_iter().next() {
        Some(Progress::Done {
            run_dir: Some(run_dir),
        }) => {
            let id = run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let record = store
                .runs
                .load(&id)
                .with_context(|| format!("the job reported run {}", run_dir.display()))?;
            print_summary(&store, &record);
            Ok(ExitCode::SUCCESS)
        }
        Some(Progress::Done { run_dir: None }) => {
            anyhow::bail!(
                "the job succeeded but did not say which run it made; its log: {}",
                dir.log(0).display()
            )
        }
        Some(Progress::Failed { error, log }) => {
            anyhow::bail!(
                "the run failed on Slurm: {error}; its log: {}",
                log.display()
            )
        }
        _ if stop == Stop::Detached => anyhow::bail!(
            "interrupted; job {} goes on and its run will land in {}",
            submitted.first,
            artifacts.display()
        ),
        _ => anyhow::bail!("interrupted"),
    }
}
