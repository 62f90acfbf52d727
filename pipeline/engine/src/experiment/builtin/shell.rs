//! The `shell` stage kind: runs a command that reads its inputs and writes declared files,
//! as DVC's `cmd` does, so any script can take part in a cached, recorded pipeline.
//!
//! The command runs under `sh -c` in the stage's output directory, with
//! `PIPELINE_OUT` (that directory), `PIPELINE_DATA_ROOT` and one `PIPELINE_IN_<SLOT>` per input
//! (slot name upper-cased) in its environment. A declared output named `metrics.toml` holding
//! `name = number` lines is read as the stage's metrics (shown by `runs`, compared by `diff`
//! and by sweeps), as DVC reads its metrics files.
//!
//! The command is code from the experiment file: an experiment with shell stages validates,
//! and so runs, only when the user allowed it (`--allow-shell`, see [`StageKind::command`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::experiment::kind::{
    is_under_data_root, InputSlots, OutputSpec, ParamDefault, ParamProblem, ParamSpec, ParamType,
    Params, StageContext, StageError, StageKind, StageReport,
};

pub struct Shell;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "command",
        ty: ParamType::Str,
        default: ParamDefault::Required,
        help: "the shell command to run",
    },
    ParamSpec {
        name: "outputs",
        ty: ParamType::StrList,
        default: ParamDefault::Required,
        help: "the files the command writes; each is an output named by its file name",
    },
    ParamSpec {
        name: "data",
        ty: ParamType::StrList,
        default: ParamDefault::Optional,
        help: "files or folders under the data root that the command reads (relative, no `..`)",
    },
];

impl StageKind for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn version(&self) -> u32 {
        1
    }

    fn summary(&self) -> &'static str {
        "runs a shell command that writes the declared output files"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> InputSlots {
        InputSlots::Any
    }

    fn outputs(&self, params: &Params) -> Vec<OutputSpec> {
        params
            .str_list("outputs")
            .unwrap_or_default()
            .iter()
            .map(|f| OutputSpec::new(f, f, true))
            .collect()
    }

    fn check(&self, params: &Params) -> Result<(), ParamProblem> {
        let outputs = params.str_list("outputs").unwrap_or_default();
        for file in &outputs {
            if file.is_empty() || file.contains('/') || file.starts_with('.') {
                return Err(ParamProblem {
                    param: "outputs".into(),
                    message: format!("`{file}` must be a plain file name"),
                });
            }
        }
        if outputs.is_empty() {
            return Err(ParamProblem {
                param: "outputs".into(),
                message: "declare at least one output file".into(),
            });
        }
        let data = params.str_list("data").unwrap_or_default();
        if let Some(outside) = data.iter().find(|d| !is_under_data_root(d)) {
            return Err(ParamProblem {
                param: "data".into(),
                message: format!(
                    "`{outside}` must be a path relative to the data root without `..`"
                ),
            });
        }
        Ok(())
    }

    fn command(&self, params: &Params) -> Option<String> {
        params.str("command").ok().map(str::to_string)
    }

    fn external_files(
        &self,
        params: &Params,
        data_root: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        let mut files = Vec::new();
        for entry in params.str_list("data").unwrap_or_default() {
            let path = data_root.join(&entry);
            if path.is_dir() {
                walk(&path, &mut files)?;
            } else if path.is_file() {
                files.push(path);
            } else {
                return Err(StageError::msg(format!(
                    "data `{entry}` not found at {}",
                    path.display()
                )));
            }
        }
        files.sort();
        Ok(files)
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let command = ctx.params.str("command")?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(ctx.out_dir)
            .env("PIPELINE_OUT", ctx.out_dir)
            // Absolute: the command runs in its output directory, not where `--data-root`
            // was given relative to.
            .env(
                "PIPELINE_DATA_ROOT",
                std::path::absolute(ctx.data_root).unwrap_or_else(|_| ctx.data_root.to_path_buf()),
            );
        for (slot, path) in ctx.inputs {
            cmd.env(format!("PIPELINE_IN_{}", slot.to_uppercase()), path);
        }
        ctx.progress.message(command);
        let output = cmd
            .output()
            .map_err(|e| StageError::msg(format!("cannot start `sh`: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(StageError::msg(format!(
                "command `{command}` {}{}",
                output
                    .status
                    .code()
                    .map_or("was killed by a signal".to_string(), |c| format!(
                        "exited with status {c}"
                    )),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            )));
        }
        let mut report = StageReport::default();
        let declared = ctx.params.str_list("outputs").unwrap_or_default();
        if declared.iter().any(|f| f == METRICS_FILE) {
            report.metrics = read_metrics(&ctx.out_dir.join(METRICS_FILE))?;
        }
        Ok(report)
    }
}

/// The output a command writes its metrics to.
const METRICS_FILE: &str = "metrics.toml";

/// `name = number` lines; anything else is refused, naming the file and the key.
fn read_metrics(path: &Path) -> Result<std::collections::BTreeMap<String, f64>, StageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StageError::msg(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        StageError::msg(format!("{METRICS_FILE} is not `name = number` lines: {e}"))
    })?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::Float(f) => Ok((k, f)),
            toml::Value::Integer(i) => Ok((k, i as f64)),
            other => Err(StageError::msg(format!(
                "{METRICS_FILE}: `{k}` should be a number, not {}",
                other.type_str()
            ))),
        })
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), StageError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| StageError::msg(format!("cannot read folder {}: {e}", dir.display())))?;
    for entry in read {
        let path = entry
            .map_err(|e| StageError::msg(format!("cannot read folder {}: {e}", dir.display())))?
            .path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
