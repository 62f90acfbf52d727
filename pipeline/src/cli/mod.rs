//! Command-line parsing and the commands' glue: each command lives in its own module.

mod compare;
mod diff;
mod display;
mod predict;
mod remote;
mod run;
mod runs;
mod slurm;
mod status;
mod sweep;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config;

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
    Config(ConfigArgs),
    /// Run one point of a Slurm submission: what its job script runs on a node
    #[command(hide = true)]
    SlurmTask {
        /// The submission's directory (holding job.json)
        dir: PathBuf,
    },
}

/// `pipeline config [KEY [VALUE]] [--unset KEY]`.
#[derive(Args)]
#[command(
    after_help = "Settings: data_root (where data paths are resolved), artifacts (the \
store), device (cpu, cuda or auto), remote (a remote cache's URL). Relative paths are relative to the project root. A flag or \
environment variable (--data-root, PIPELINE_DATA_ROOT, --artifacts, PIPELINE_ARTIFACTS, \
PIPELINE_DEVICE, --remote, PIPELINE_REMOTE) wins over the file."
)]
pub struct ConfigArgs {
    /// The setting to show or set
    pub key: Option<String>,
    /// Its new value, written to pipeline.toml at the project root
    pub value: Option<String>,
    /// Remove the setting from pipeline.toml
    #[arg(long, conflicts_with_all = ["key", "value"], value_name = "KEY")]
    pub unset: Option<String>,
}

/// Selects an experiment and what it reads.
#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML)
    pub experiment: PathBuf,
    /// Override a parameter: `--set train.epochs=20` (repeatable; `--set seed=7` for the seed)
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub set: Vec<String>,
    /// Where data paths are resolved [default: `data_root` in pipeline.toml, else data/ at
    /// the project root]
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
    if matches!(
        cli.command,
        Command::Runs(_)
            | Command::Show { .. }
            | Command::Diff(_)
            | Command::Compare(_)
            | Command::Kinds
            | Command::Config(_)
    ) {
        // Still one thread here, as the signal disposition needs.
        crate::restore_sigpipe();
    }
    let project = project_root()?;
    let settings =
        config::Settings::load(&project).map_err(|e| crate::exit::UsageError(e.to_string()))?;
    let artifacts = config::artifacts(cli.artifacts.as_deref(), &project, &settings).value;
    let request = crate::device::resolve(
        cli.device,
        std::env::var(crate::device::DEVICE_ENV).ok().as_deref(),
        cli.gpu_math,
        std::env::var(crate::device::GPU_MATH_ENV).ok().as_deref(),
    )?
    .or_project_default(settings.device.as_deref())?;
    request.export_to_children();
    remote::resolve(cli.remote.as_deref(), settings.remote.as_deref());
    // The device is opened only by the commands that compute; `status` only needs its class.
    let (backend, device) = match &cli.command {
        Command::Run(_) | Command::Verify { .. } | Command::Lock { .. } | Command::Predict(_) => {
            let selected = crate::device::select(request)?;
            (selected.backend, Some(selected.record))
        }
        Command::Status(_) | Command::Sweep(_) => (
            crate::registry::cpu(),
            Some(crate::device::class_only(request)?),
        ),
        _ => (crate::registry::cpu(), None),
    };
    let mut registry = crate::registry::registry_on(backend.clone());
    if let Some(device) = device {
        registry.set_device(device);
    }
    registry.allow_commands(match &cli.command {
        Command::Run(args) => args.shell.allow_shell,
        Command::Verify { shell, .. } | Command::Lock { shell, .. } => shell.allow_shell,
        // A dry run only plans, and shows each shell stage's command, as status does.
        Command::Sweep(args) => args.shell.allow_shell || args.dry_run,
        // Status only reads: it runs no stage, and shows each shell stage's command.
        Command::Status(_) => true,
        // Pull only downloads: it computes keys as status does and runs no stage.
        Command::Pull(_) => true,
        _ => false,
    });
    match cli.command {
        Command::Run(args) => run::run(&args, &registry, &project, &artifacts),
        Command::Status(args) => status::status(&args, &registry, &project, &artifacts),
        Command::Runs(args) => runs::list(&open_store(&artifacts)?, &args),
        Command::Show { run, open } => runs::show(&open_store(&artifacts)?, &run, open),
        Command::Compare(args) => compare::compare(&open_store(&artifacts)?, &args),
        Command::Diff(args) => diff::diff(&open_store(&artifacts)?, &args),
        Command::Verify { args, .. } => verify::verify(&args, &registry, &project, &artifacts),
        Command::Lock { args, .. } => verify::lock(&args, &registry, &project, &artifacts),
        Command::Sweep(args) => sweep::sweep(&args, &registry, &project, &artifacts),
        Command::Predict(args) => predict::predict(&open_store(&artifacts)?, &args, &*backend),
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
        Command::Config(args) => {
            show_or_set_config(&args, &cli.artifacts, &project, &settings, &request)
        }
        Command::SlurmTask { dir } => crate::slurm::task::run_task(&dir),
    }
}

fn show_or_set_config(
    args: &ConfigArgs,
    artifacts_flag: &Option<PathBuf>,
    project: &Path,
    settings: &config::Settings,
    request: &crate::device::Request,
) -> anyhow::Result<ExitCode> {
    if let Some(key) = &args.unset {
        let file = config::set(project, key, None)?;
        println!("removed `{key}` from {}", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(key), Some(value)) = (&args.key, &args.value) {
        let file = config::set(project, key, Some(value))?;
        println!("{key} = {value:?} in {}", file.display());
        if key == "data_root" && !project.join(value).is_dir() {
            eprintln!(
                "warning: {} is not a directory (yet); relative paths are relative to {}",
                project.join(value).display(),
                project.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let data_root = config::data_root(
        std::env::var_os("PIPELINE_DATA_ROOT")
            .map(PathBuf::from)
            .as_deref(),
        project,
        settings,
    );
    let artifacts = config::artifacts(artifacts_flag.as_deref(), project, settings);
    // The device as every computing command decides it (`device::resolve`), not a second
    // reading of the same flag, variable and setting.
    let device_source = match request.source {
        crate::device::Source::Flag => config::Source::Flag,
        crate::device::Source::Env => config::Source::Environment(crate::device::DEVICE_ENV),
        crate::device::Source::Config => config::Source::File,
        crate::device::Source::Default => config::Source::Default,
    };
    let remote = config::remote(settings);
    let rows = [
        (
            "data_root",
            data_root.value.display().to_string(),
            data_root.source,
        ),
        (
            "artifacts",
            artifacts.value.display().to_string(),
            artifacts.source,
        ),
        ("device", request.device.name().to_string(), device_source),
        ("remote", remote.value, remote.source),
    ];
    match &args.key {
        Some(key) => match rows.iter().find(|(k, _, _)| k == key) {
            Some((_, value, _)) => println!("{value}"),
            None => {
                return Err(crate::exit::UsageError(format!(
                "unknown setting `{key}`{}; the settings are data_root, artifacts, device, remote",
                pipeline_engine::diagnostic::did_you_mean(
                    key,
                    config::KEYS.iter().map(|(k, _)| *k)
                )
            ))
                .into())
            }
        },
        None => {
            println!("project root  {}", project.display());
            let file = project.join(config::FILE);
            let state = if file.is_file() { "" } else { " (none yet)" };
            println!("config file   {}{state}", file.display());
            for (key, value, source) in rows {
                println!("{key:<13} {value}  ({source})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The nearest folder holding the current directory that has a `pipeline.toml` or is a git
/// work tree's root, or else the current directory.
fn project_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(cwd
        .ancestors()
        .find(|d| d.join(config::FILE).is_file() || d.join(".git").exists())
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

/// The data root for an experiment: `--data-root`, `PIPELINE_DATA_ROOT`, `data_root` in
/// pipeline.toml, or data/ at the project root.
pub fn data_root(args: &ExperimentArgs, project: &Path) -> PathBuf {
    resolved_data_root(args.data_root.as_deref(), project).value
}

/// The data root and where it came from (for messages saying how to set it).
pub fn resolved_data_root(given: Option<&Path>, project: &Path) -> config::Resolved<PathBuf> {
    // Read again rather than passed down: `main` has already refused a bad file.
    let settings = config::Settings::load(project).unwrap_or_default();
    config::data_root(given, project, &settings)
}

/// Adds how to set the data root to an error about a missing data file or folder, or one
/// that names the data root: the usual cause is a data root that is not where the data is.
pub fn with_data_root_hint(
    error: anyhow::Error,
    root: &config::Resolved<PathBuf>,
) -> anyhow::Error {
    let text = crate::render(&error);
    let root_text = root.value.display().to_string();
    let about_data = text.contains("data root")
        || text.contains(&root_text)
        || error.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        });
    if about_data && !text.contains("--data-root") {
        // The whole message first, then the hint: `render` leaves out the causes whose text
        // this context already holds.
        let hint = config::data_root_hint(root);
        error.context(format!("{text}; {hint}"))
    } else {
        error
    }
}
