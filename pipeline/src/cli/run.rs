//! `pipeline run` and `pipeline status`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use pipeline_engine::execute::{self, RunOptions};
use pipeline_engine::kind::Registry;
use pipeline_engine::record::CacheUse;
use pipeline_engine::status::{self, StageState};

use pipeline_engine::human::format_seconds;

use super::display::Terminal;
use super::{data_root, load_experiment, open_store, ExperimentArgs, ShellArgs};

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
}

pub fn run(
    args: &RunArgs,
    registry: &Registry,
    project: &Path,
    artifacts: &Path,
) -> anyhow::Result<ExitCode> {
    let exp = load_experiment(&args.experiment, registry)?;
    let store = open_store(artifacts)?;
    let opts = RunOptions {
        data_root: data_root(&args.experiment, project),
        project_root: project.to_path_buf(),
        name: args.name.clone(),
        no_cache: args.no_cache,
    };
    eprintln!("running {} ({} stages)", exp.name, exp.stages.len());
    let terminal = Terminal::new();
    let record = execute::run(&exp, registry, &store, &opts, &terminal)?;
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
    for (name, value) in record.metrics() {
        eprintln!("  {name} = {value:.4}");
    }
    println!("{}", store.runs.dir_of(&record.id).display());
    Ok(ExitCode::SUCCESS)
}

pub fn status(
    args: &ExperimentArgs,
    registry: &Registry,
    project: &Path,
    artifacts: &Path,
) -> anyhow::Result<ExitCode> {
    let exp = load_experiment(args, registry)?;
    let store = open_store(artifacts)?;
    let states = status::status(&exp, registry, &store, &data_root(args, project))?;
    let width = states.iter().map(|s| s.name.len()).max().unwrap_or(5);
    let mut stale = 0;
    for s in &states {
        match &s.state {
            StageState::Cached => println!("{:<width$}  cached", s.name),
            StageState::Remote => println!(
                "{:<width$}  on the remote cache: the next run downloads it",
                s.name
            ),
            StageState::Stale(reasons) => {
                stale += 1;
                println!("{:<width$}  will run: {}", s.name, reasons.join("; "));
            }
        }
        if let Some(command) = &s.command {
            println!("{:<width$}  runs the shell command {command:?}", "");
        }
    }
    if states.iter().any(|s| s.command.is_some()) {
        println!(
            "these shell commands come from {}: `pipeline run` runs them only with --allow-shell",
            exp.path.display()
        );
    }
    if stale == 0 {
        println!("everything is cached: `pipeline run` would recompute nothing");
    }
    Ok(ExitCode::SUCCESS)
}
