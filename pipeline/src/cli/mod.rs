//! Command-line parsing and the commands' glue: each command lives in its own module.

mod compare;
mod config;
mod diff;
mod export;
mod gc;
mod kinds;
mod predict;
mod remote;
mod run;
mod runs;
mod show;
mod status;
mod sweep;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use pipeline_engine::experiment::Experiment;

use crate::device::Need;
use crate::session::{Flags, Session};

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
    /// Where experiment data paths are resolved, for the commands that read data (run, status,
    /// lock, sweep, verify, pull) [default: `data_root` in pipeline.toml, else data/ at the
    /// project root; for `verify RUN`, the run's own data root]
    #[arg(long, global = true, value_name = "DIR", env = "PIPELINE_DATA_ROOT")]
    data_root: Option<PathBuf>,
    /// Where the model computes: cpu, cuda (an NVIDIA GPU), or auto (the GPU when usable)
    /// [env: PIPELINE_DEVICE; default: cpu]
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<crate::device::DeviceChoice>,
    /// The GPU's fp32 math: fp32 (strict, the default) or tf32 (tensor cores, its own device
    /// class) [env: PIPELINE_GPU_MATH]
    #[arg(long, global = true, value_name = "MATH")]
    gpu_math: Option<crate::device::MathChoice>,
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
    /// List recorded runs, newest first: the parameters that differ, the headline metrics
    Runs(runs::RunsArgs),
    /// Show one run in full: parameters, stages, metrics, files, and where a failed run failed
    Show {
        /// The run: a run id, a unique prefix or suffix of one (`7c1e`), a run name, `latest`
        /// (the newest run that succeeded) or `latest~N` (the Nth successful run before it)
        run: String,
        /// Open the run's report.html in the browser (xdg-open on Linux, open on macOS)
        #[arg(long)]
        open: bool,
    },
    /// Runs side by side: differing parameters, metrics, learning and ROC curves overlaid
    Compare(compare::CompareArgs),
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
    /// Run an experiment at every point of a grid or random search; resumable, one run per point
    Sweep(sweep::SweepArgs),
    /// Predict images with a run's trained model, preprocessed as in that run
    Predict(predict::PredictArgs),
    /// Write a run's whole trained checkpoint (PyTorch-loadable), from its head and base
    Export(export::ExportArgs),
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
    /// List the stage kinds: their inputs, outputs and parameters
    Kinds,
    /// Show the project's settings (pipeline.toml), or set one: `pipeline config data_root DIR`
    Config(config::ConfigArgs),
    /// Run one point of a Slurm submission: what its job script runs on a node
    #[command(hide = true)]
    SlurmTask {
        /// The submission's directory (holding job.json)
        dir: PathBuf,
    },
}

/// Selects an experiment and what it reads.
#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML)
    pub experiment: PathBuf,
    /// Override a parameter: `--set train.epochs=20` (repeatable; `--set seed=7` for the seed)
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub set: Vec<String>,
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
    if matches!(
        cli.command,
        Command::Runs(_)
            | Command::Show { .. }
            | Command::Diff(_)
            | Command::Compare(_)
            | Command::Kinds
            | Command::Config(_)
            | Command::Export(_)
    ) {
        // Still one thread here, as the signal disposition needs.
        crate::restore_sigpipe();
    }
    // The device is opened only by the commands that compute; `status` only needs its class.
    let need = match &cli.command {
        Command::Run(_) | Command::Verify { .. } | Command::Lock { .. } | Command::Predict(_) => {
            Need::Open
        }
        Command::Status(_) | Command::Sweep(_) => Need::ClassOnly,
        _ => Need::Nothing,
    };
    let allow_commands = match &cli.command {
        Command::Run(args) => args.shell.allow_shell,
        Command::Verify { shell, .. } | Command::Lock { shell, .. } => shell.allow_shell,
        // A dry run only plans, and shows each shell stage's command, as status does.
        Command::Sweep(args) => args.shell.allow_shell || args.dry_run,
        // Status only reads: it runs no stage, and shows each shell stage's command.
        Command::Status(_) => true,
        // Pull only downloads: it computes keys as status does and runs no stage.
        Command::Pull(_) => true,
        _ => false,
    };
    if let Command::Config(config::ConfigArgs {
        trust: Some(dir), ..
    }) = &cli.command
    {
        return config::trust(dir);
    }
    let flags = Flags {
        artifacts: cli.artifacts,
        data_root: cli.data_root,
        device: cli.device,
        gpu_math: cli.gpu_math,
        remote: cli.remote,
    };
    let session = Session::new(flags, need, allow_commands)?;
    match cli.command {
        Command::Run(args) => run::run(&args, &session),
        Command::Status(args) => status::status(&args, &session),
        Command::Runs(args) => runs::list(&session.open_store()?, &args),
        Command::Show { run, open } => show::show(&session.open_store()?, &run, open),
        Command::Compare(args) => compare::compare(&session.open_store()?, &args),
        Command::Diff(args) => diff::diff(&session.open_store()?, &args),
        Command::Verify { args, .. } => verify::verify(&args, &session),
        Command::Lock { args, .. } => verify::lock(&args, &session),
        Command::Sweep(args) => sweep::sweep(&args, &session),
        Command::Predict(args) => {
            predict::predict(&session.open_store()?, &args, &*session.device.backend)
        }
        Command::Gc {
            keep_last,
            prune_runs,
            dry_run,
            no_wait,
            remote_cache,
            grace,
        } => {
            if remote_cache {
                return remote::gc(&session, grace, dry_run);
            }
            let opts = pipeline_engine::run::gc::GcOptions {
                keep_last,
                prune_runs,
                dry_run,
            };
            gc::gc(&session.open_store()?, &opts, no_wait)
        }
        Command::Export(args) => export::export(&session.open_store()?, &args),
        Command::Push(args) => remote::push(&session, &args),
        Command::Pull(args) => remote::pull(&session, &args),
        Command::Kinds => {
            kinds::kinds(&session.registry);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => config::show_or_set(&args, &session),
        Command::SlurmTask { dir } => crate::slurm::task::run_task(&dir),
    }
}

impl ExperimentArgs {
    /// The experiment, with its `--set` overrides.
    pub fn load(&self, session: &Session) -> anyhow::Result<Experiment> {
        session.load_experiment(&self.experiment, &self.set)
    }
}
