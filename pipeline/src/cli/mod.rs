//! Command-line parsing and the commands' glue: each command lives in its own module.

mod diff;
mod display;
mod predict;
mod remote;
mod run;
mod runs;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use pipeline_engine::execute::Store;
use pipeline_engine::experiment::{self, Experiment, Override};
use pipeline_engine::kind::Registry;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Runs deep-learning experiments reproducibly"
)]
struct Cli {
    /// The artifacts store: cache and runs [default: artifacts/ at the project root]
    #[arg(long, global = true, value_name = "DIR", env = "PIPELINE_ARTIFACTS")]
    artifacts: Option<PathBuf>,
    /// A remote cache shared with other machines: s3://bucket/prefix (endpoint, region and
    /// credentials from the AWS variables) or file:///path [default: `remote` in pipeline.toml]
    #[arg(long, global = true, value_name = "URL", env = "PIPELINE_REMOTE")]
    remote: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment, reusing cached stage results
    Run(run::RunArgs),
    /// Show which stages are cached, and why the others are not
    Status(ExperimentArgs),
    /// List recorded runs, newest first
    Runs,
    /// Show one run in full (RUN: id, unique prefix, name, latest or latest~N)
    Show {
        run: String,
        /// Open the run's report.html in the browser (xdg-open on Linux, open on macOS)
        #[arg(long)]
        open: bool,
    },
    /// What differs between two runs, and why
    Diff(diff::DiffArgs),
    /// Re-execute a run (or an experiment's lock file) from scratch and compare outputs
    Verify {
        #[command(flatten)]
        args: verify::VerifyArgs,
        #[command(flatten)]
        shell: ShellArgs,
    },
    /// Run an experiment and write EXP.lock (stage keys, output digests, metrics) to commit
    Lock {
        #[command(flatten)]
        args: ExperimentArgs,
        #[command(flatten)]
        shell: ShellArgs,
    },
    /// Predict images with a run's trained model, preprocessed as in that run
    Predict(predict::PredictArgs),
    /// Remove cache entries that no kept run refers to, and leftovers of killed work
    Gc {
        /// Keep only what the newest N runs refer to
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Also remove the directories of runs older than the newest N (needs --keep-last)
        #[arg(long, requires = "keep_last")]
        prune_runs: bool,
        /// Show what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Fail at once if a run is using the store, instead of waiting for it to end
        #[arg(long)]
        no_wait: bool,
        /// Collect the remote cache instead: remove entries no recorded run used (of any
        /// machine), and blobs no kept entry uses, older than --grace
        #[arg(long)]
        remote_cache: bool,
        /// With --remote-cache: keep whatever was pushed in the last HOURS (a push in progress)
        #[arg(
            long,
            value_name = "HOURS",
            default_value_t = 24.0,
            requires = "remote_cache"
        )]
        grace: f64,
    },
    /// Upload local cache entries to the remote cache (all, or what one run used)
    Push(remote::PushArgs),
    /// Download what the remote cache holds for a run or an experiment file, checked
    Pull(remote::PullArgs),
    /// List the stage kinds and their parameters
    Kinds,
}

/// Selects an experiment and what it reads.
#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML)
    pub experiment: PathBuf,
    /// Override a parameter: `--set train.epochs=20` (repeatable; `--set seed=7` for the seed)
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub set: Vec<String>,
    /// Where data paths are resolved [default: data/ at the project root]
    #[arg(long, value_name = "DIR", env = "PIPELINE_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
}

/// Permission to run the commands an experiment file writes (its `shell` stages).
#[derive(Args)]
pub struct ShellArgs {
    /// Run the experiment's `shell` stages, commands written in the file: only for files you
    /// trust (`pipeline status EXP` shows them)
    #[arg(long, env = "PIPELINE_ALLOW_SHELL", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_shell: bool,
}

pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let project = project_root()?;
    let artifacts = cli
        .artifacts
        .clone()
        .unwrap_or_else(|| project.join("artifacts"));
    remote::resolve(cli.remote.as_deref(), &project)?;
    let mut registry = crate::registry::registry();
    registry.allow_commands(match &cli.command {
        Command::Run(args) => args.shell.allow_shell,
        Command::Verify { shell, .. } | Command::Lock { shell, .. } => shell.allow_shell,
        // Status only reads: it runs no stage, and shows each shell stage's command.
        Command::Status(_) => true,
        // Pull only downloads: it computes keys as status does and runs no stage.
        Command::Pull(_) => true,
        _ => false,
    });
    match cli.command {
        Command::Run(args) => run::run(&args, &registry, &project, &artifacts),
        Command::Status(args) => run::status(&args, &registry, &project, &artifacts),
        Command::Runs => runs::list(&open_store(&artifacts)?),
        Command::Show { run, open } => runs::show(&open_store(&artifacts)?, &run, open),
        Command::Diff(args) => diff::diff(&open_store(&artifacts)?, &args),
        Command::Verify { args, .. } => verify::verify(&args, &registry, &project, &artifacts),
        Command::Lock { args, .. } => verify::lock(&args, &registry, &project, &artifacts),
        Command::Predict(args) => predict::predict(&open_store(&artifacts)?, &args),
        Command::Gc {
            keep_last,
            prune_runs,
            dry_run,
            no_wait,
            remote_cache,
            grace,
        } => {
            if remote_cache {
                return remote::gc(&open_store(&artifacts)?, grace, dry_run);
            }
            let opts = pipeline_engine::gc::GcOptions {
                keep_last,
                prune_runs,
                dry_run,
            };
            runs::gc(&open_store(&artifacts)?, &opts, no_wait)
        }
        Command::Push(args) => remote::push(&open_store(&artifacts)?, &args),
        Command::Pull(args) => remote::pull(&open_store(&artifacts)?, &args, &registry, &project),
        Command::Kinds => {
            runs::kinds(&registry);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The root of the git work tree holding the current directory, or the current directory.
fn project_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(cwd
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&cwd)
        .to_path_buf())
}

pub fn open_store(artifacts: &Path) -> anyhow::Result<Store> {
    let store = Store::open(artifacts)
        .with_context(|| format!("cannot open the store {}", artifacts.display()))?;
    Ok(store.with_remote(remote::open()?))
}

pub fn load_experiment(args: &ExperimentArgs, registry: &Registry) -> anyhow::Result<Experiment> {
    let overrides = args
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::exit::UsageError)?;
    Ok(experiment::load(&args.experiment, &overrides, registry)?)
}

pub fn data_root(args: &ExperimentArgs, project: &Path) -> PathBuf {
    args.data_root
        .clone()
        .unwrap_or_else(|| project.join("data"))
}
