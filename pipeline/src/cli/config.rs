//! `pipeline config`: the project's settings and where each comes from, or one set or
//! removed in pipeline.toml, or a folder whose pipeline.toml is someone else's trusted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config;
use crate::session::Session;

/// `pipeline config [KEY [VALUE]] [--unset KEY]`.
#[derive(Args)]
#[command(
    after_help = "Settings: data_root (where data paths are resolved), artifacts (the \
store), device (cpu, cuda or auto), remote (a remote cache's URL). Relative paths are relative to the project root. A flag or \
environment variable (--data-root, PIPELINE_DATA_ROOT, --artifacts, PIPELINE_ARTIFACTS, \
PIPELINE_DEVICE, --remote, PIPELINE_REMOTE) wins over the file. A pipeline.toml that is not \
yours (owned by another user, or writable by anyone) may not set remote, data_root, \
artifacts or [slurm] until its folder is trusted with --trust DIR."
)]
pub struct ConfigArgs {
    /// The setting to show or set
    pub key: Option<String>,
    /// Its new value, written to pipeline.toml at the project root
    pub value: Option<String>,
    /// Remove the setting from pipeline.toml
    #[arg(long, conflicts_with_all = ["key", "value"], value_name = "KEY")]
    pub unset: Option<String>,
    /// Obey the pipeline.toml in DIR although it is not yours (listed in your own
    /// ~/.config/pipeline/trusted.toml, as git's safe.directory)
    #[arg(long, conflicts_with_all = ["key", "value", "unset"], value_name = "DIR")]
    pub trust: Option<PathBuf>,
}

/// `pipeline config --trust DIR`: run before the session is made, since the session refuses
/// the very file this trusts.
pub fn trust(dir: &Path) -> anyhow::Result<ExitCode> {
    let (dir, list) = config::trust::add(dir)?;
    println!(
        "trusted {}: its {} is obeyed although it is not yours (listed in {})",
        dir.display(),
        config::FILE,
        list.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn show_or_set(args: &ConfigArgs, session: &Session) -> anyhow::Result<ExitCode> {
    let project = &session.project;
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
    // Each setting as every command decides it (the session's), not a second reading of the
    // same flag, variable and file.
    let data_root = &session.data_root;
    let artifacts = &session.artifacts;
    let request = &session.device.request;
    let remote = &session.remote;
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
        ("device", request.device.name().to_string(), request.source),
        (
            "remote",
            remote.value.clone().unwrap_or_else(|| "none".into()),
            remote.source,
        ),
    ];
    match &args.key {
        Some(key) => match rows.iter().find(|(k, _, _)| k == key) {
            Some((_, value, _)) => println!("{value}"),
            None => {
                return Err(crate::usage::UsageError(format!(
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
