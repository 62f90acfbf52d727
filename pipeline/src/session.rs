//! One invocation's context, resolved once before any command runs, as cargo-nextest's
//! `BaseApp` and ripgrep's `HiArgs` resolve their flags once: the project root, its settings
//! (`pipeline.toml`), the store, the remote cache and the device, each with where it came
//! from, and the stage-kind registry on that device. Every command takes the [`Session`]
//! instead of deciding any of these again.

use std::path::{Path, PathBuf};

use anyhow::Context;

use pipeline_engine::experiment::kind::Registry;
use pipeline_engine::experiment::{self, Experiment, Override};
use pipeline_engine::run::execute::RunOptions;
use pipeline_engine::run::store::Store;
use pipeline_engine::store::remote::Remote;

use crate::config::{self, Resolved, Settings, Source};
use crate::device::{self, Device, DeviceChoice, MathChoice, Need};
use crate::usage::{UnusableRemote, UsageError};

/// The global flags, as given (clap has folded in the variables it reads itself).
pub struct Flags {
    pub artifacts: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub device: Option<DeviceChoice>,
    pub gpu_math: Option<MathChoice>,
    pub remote: Option<String>,
}

/// What one invocation runs in, decided once.
pub struct Session {
    /// The nearest folder with a `pipeline.toml` or a git work tree's root.
    pub project: PathBuf,
    pub settings: Settings,
    /// The store: cache, runs and sweeps.
    pub artifacts: Resolved<PathBuf>,
    /// Where experiment data paths are resolved.
    pub data_root: Resolved<PathBuf>,
    /// The remote cache's URL, where one is configured.
    pub remote: Resolved<Option<String>>,
    /// The device, opened as far as the command needs it.
    pub device: Device,
    /// Every stage kind, computing on [`Session::device`].
    pub registry: Registry,
}

impl Session {
    /// Resolves the flags against the environment and `pipeline.toml`. `need` says how far
    /// the command needs the device; `allow_commands` whether `shell` stages may run.
    pub fn new(flags: Flags, need: Need, allow_commands: bool) -> anyhow::Result<Session> {
        let project = project_root()?;
        let settings = Settings::load(&project)?;
        let artifacts = config::artifacts(flags.artifacts.as_deref(), &project, &settings);
        let data_root = config::data_root(flags.data_root.as_deref(), &project, &settings);
        let request = device::resolve(
            flags.device,
            std::env::var(device::DEVICE_ENV).ok().as_deref(),
            settings.device.as_deref(),
            flags.gpu_math,
            std::env::var(device::GPU_MATH_ENV).ok().as_deref(),
        )?;
        request.export_to_children();
        let remote = config::remote(flags.remote.as_deref(), &settings);
        if remote.source == Source::Flag {
            // The points of a sweep and the nodes of a Slurm job are `pipeline` processes
            // too: the flag wins over pipeline.toml there as well.
            std::env::set_var(config::REMOTE_ENV, remote.value.as_deref().unwrap_or(""));
        }
        let device = Device::new(request, need)?;
        let mut registry = crate::registry::on_device(&device);
        registry.allow_commands(allow_commands);
        Ok(Session {
            project,
            settings,
            artifacts,
            data_root,
            remote,
            device,
            registry,
        })
    }

    /// The store, with the remote cache attached where one is configured.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let artifacts = &self.artifacts.value;
        let store = Store::open(artifacts)
            .with_context(|| format!("cannot open the store {}", artifacts.display()))?;
        Ok(store.with_remote(self.open_remote()?))
    }

    /// The remote cache, opened; `None` where none is configured. An unusable one is a usage
    /// error naming where it was set (pipeline.toml and its key, or the flag or variable).
    pub fn open_remote(&self) -> anyhow::Result<Option<Remote>> {
        let Some(url) = &self.remote.value else {
            return Ok(None);
        };
        let opened = config::check_remote(url)
            .map_err(|message| anyhow::Error::new(UsageError(message)))
            .and_then(|()| Remote::open(url).map_err(|source| UnusableRemote { source }.into()));
        let opened = match (self.remote.source, &self.settings.file) {
            (Source::File, Some(file)) => {
                opened.with_context(|| format!("{}: `remote`", file.display()))
            }
            (Source::Flag, _) => opened.context("--remote"),
            (Source::Environment(var), _) => opened.context(var),
            _ => opened,
        };
        opened.map(Some)
    }

    /// The data root given on the command line or in `PIPELINE_DATA_ROOT`, if it was: what
    /// overrides a recorded run's own (`verify RUN`).
    pub fn given_data_root(&self) -> Option<&Path> {
        match self.data_root.source {
            Source::Flag | Source::Environment(_) => Some(&self.data_root.value),
            Source::File | Source::Default => None,
        }
    }

    /// The experiment file with `--set` overrides applied, checked against the registry.
    pub fn load_experiment(&self, file: &Path, set: &[String]) -> anyhow::Result<Experiment> {
        let overrides = parse_overrides(set)?;
        Ok(experiment::load(file, &overrides, &self.registry)?)
    }

    /// The store opened and the data root resolved: what a command that plans or runs an
    /// experiment works in.
    pub fn workspace(&self) -> anyhow::Result<Workspace> {
        Ok(Workspace {
            store: self.open_store()?,
            data_root: self.data_root.clone(),
            project: self.project.clone(),
        })
    }
}

/// The store and the data root of a command on an experiment (run, status, lock, sweep,
/// verify --lock).
pub struct Workspace {
    pub store: Store,
    pub data_root: Resolved<PathBuf>,
    project: PathBuf,
}

impl Workspace {
    /// How a run in this workspace runs.
    pub fn run_options(&self, name: Option<String>, no_cache: bool) -> RunOptions {
        RunOptions {
            data_root: self.data_root.value.clone(),
            project_root: self.project.clone(),
            name,
            no_cache,
        }
    }

    /// `error`, with how to set the data root when it is about data not found.
    pub fn hint(&self, error: impl Into<anyhow::Error>) -> anyhow::Error {
        config::with_data_root_hint(error.into(), &self.data_root)
    }
}

/// `--set STAGE.PARAM=VALUE` flags, parsed; a malformed one is a usage error.
pub fn parse_overrides(set: &[String]) -> Result<Vec<Override>, UsageError> {
    set.iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(UsageError)
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
