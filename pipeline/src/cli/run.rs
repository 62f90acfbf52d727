//! `pipeline run`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use pipeline_engine::execute::{self, RunOptions};
use pipeline_engine::kind::Registry;
use pipeline_engine::record::CacheUse;

use pipeline_engine::human::format_seconds;

use super::display::Terminal;
use super::{
    load_experiment, open_store, resolved_data_root, with_data_root_hint, ExperimentArgs, ShellArgs,
};
use crate::headline::{value_text, Headline};

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
    let root = resolved_data_root(args.experiment.data_root.as_deref(), project);
    let opts = RunOptions {
        data_root: root.value.clone(),
        project_root: project.to_path_buf(),
        name: args.name.clone(),
        no_cache: args.no_cache,
    };
    eprintln!("running {} ({} stages)", exp.name, exp.stages.len());
    let terminal = Terminal::new();
    let record = execute::run(&exp, registry, &store, &opts, &terminal)
        .map_err(|e| with_data_root_hint(e.into(), &root))?;
    let reused = record
        .stages
        .iter()
        .filter(|s| s.cache == CacheUse::Hit)
        .count();
    let ran = record.stages.len() - reused;
    eprintln!(
        "done: {ran} ran, {reused} reused from cache, {}",
        format_seconds(record.duration_s.unwrap_or(0.0))
    );
    // The headline first (weights, caveats, each evaluation set side by side, warnings),
    // then every other metric.
    let headline = Headline::of(&record);
    for line in headline.lines() {
        eprintln!("{line}");
    }
    for (name, value) in record.metrics() {
        if !headline.shows(&name) {
            eprintln!("  {name} = {}", value_text(&name, value));
        }
    }
    println!("{}", store.runs.dir_of(&record.id).display());
    Ok(ExitCode::SUCCESS)
}
