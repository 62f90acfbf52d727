//! The Slurm executor: `pipeline run --executor slurm` (and sweeps) submit the same
//! `pipeline` binary as Slurm jobs that run each point as an ordinary local run on a node,
//! against the same store on a filesystem every node sees. Nothing of ours runs on the
//! cluster but that binary: no daemon, no service.
//!
//! A submission is a directory ([`job`]): the first point runs alone and computes the stages
//! every point shares; the other points follow as one job array once it has succeeded, each
//! task picking its point by `$SLURM_ARRAY_TASK_ID` ([`task`]). The submitter follows them
//! through `squeue` and the tasks' status files and offers to cancel them on Ctrl-C
//! ([`watch`]); [`resources`] checks what the jobs ask for; [`sweep`] is a sweep's executor
//! on Slurm.

pub mod job;
pub mod resources;
pub mod scheduler;
pub mod sweep;
pub mod task;
pub mod watch;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::Settings;
use crate::usage::UsageError;
use job::{JobDir, JobSpec, PointSpec, Submitted, FORMAT};
use resources::{Cpus, Gres, Memory, Partition, Resources, Retries, TimeLimit};
use scheduler::Scheduler;

/// Where runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Executor {
    /// On this machine
    #[default]
    Local,
    /// As Slurm jobs on a cluster (the binary, the experiment, the data and the store must be
    /// on a filesystem every node sees)
    Slurm,
}

/// `--executor` and the resources a Slurm job asks for.
#[derive(Args, Debug, Clone, Default)]
pub struct ExecutorArgs {
    /// Where to execute: here, or as Slurm jobs (`sbatch`) that run this same binary on the
    /// cluster's nodes against the same store
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// Slurm partition(s) to submit to [default: `[slurm] partition` in the experiment or
    /// pipeline.toml, else the cluster's default]
    #[arg(long, value_name = "NAME", help_heading = "Slurm")]
    pub slurm_partition: Option<Partition>,
    /// Generic resources per job, e.g. `gpu:1` or `gpu:a100:2`
    #[arg(long, value_name = "GRES", help_heading = "Slurm")]
    pub slurm_gres: Option<Gres>,
    /// Time limit per job: MINUTES, HH:MM:SS or DAYS-HH[:MM[:SS]]
    #[arg(long, value_name = "TIME", help_heading = "Slurm")]
    pub slurm_time: Option<TimeLimit>,
    /// CPUs per job
    #[arg(long, value_name = "N", help_heading = "Slurm")]
    pub slurm_cpus: Option<Cpus>,
    /// Memory per job: a number with an optional unit K, M, G, T (e.g. `16G`)
    #[arg(long, value_name = "SIZE", help_heading = "Slurm")]
    pub slurm_mem: Option<Memory>,
    /// Times a failed point is run again before it is recorded as failed [default: 1]
    #[arg(long, value_name = "N", help_heading = "Slurm")]
    pub slurm_retries: Option<Retries>,
}

impl ExecutorArgs {
    fn flags(&self) -> Resources {
        Resources {
            partition: self.slurm_partition.clone(),
            gres: self.slurm_gres.clone(),
            time: self.slurm_time.clone(),
            cpus: self.slurm_cpus,
            mem: self.slurm_mem.clone(),
            retries: self.slurm_retries,
        }
    }

    /// Refuses `--slurm-*` flags with the local executor, where they would do nothing.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.executor == Executor::Slurm {
            return Ok(());
        }
        let given = [
            ("--slurm-partition", self.slurm_partition.is_some()),
            ("--slurm-gres", self.slurm_gres.is_some()),
            ("--slurm-time", self.slurm_time.is_some()),
            ("--slurm-cpus", self.slurm_cpus.is_some()),
            ("--slurm-mem", self.slurm_mem.is_some()),
            ("--slurm-retries", self.slurm_retries.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(UsageError(format!(
                "{flag} applies to Slurm jobs only: add --executor slurm"
            ))),
            None => Ok(()),
        }
    }

    /// The resources: flags, then the experiment's `[slurm]` table, then `pipeline.toml`'s
    /// (from the session's `settings`, which read the file once).
    pub fn resources(
        &self,
        experiment: &Path,
        settings: &Settings,
    ) -> Result<Resources, UsageError> {
        let from_exp = Resources::from_file(experiment).map_err(UsageError)?;
        let from_project = match (&settings.slurm, &settings.file) {
            (Some(table), Some(file)) => {
                Resources::from_table(table, &format!("{}: [slurm]", file.display()))
                    .map_err(UsageError)?
            }
            _ => Resources::default(),
        };
        Ok(self.flags().over(from_exp).over(from_project))
    }
}

/// What to submit: one experiment, its points, and how to run them.
pub struct Request<'a> {
    pub experiment: &'a Path,
    /// The experiment's name, for the jobs' names.
    pub name: &'a str,
    pub project: &'a Path,
    pub artifacts: &'a Path,
    pub data_root: &'a Path,
    pub allow_shell: bool,
    pub no_cache: bool,
    /// Each point's `--set` overrides and run name; the first computes the shared stages.
    pub points: Vec<(Vec<String>, Option<String>)>,
    pub resources: Resources,
    /// At most this many points' jobs at a time (`-j N`), where given.
    pub throttle: Option<usize>,
}

/// Writes the submission into `dir` and submits it: the first point as one job, the others
/// as one array that starts once the first has succeeded.
pub fn submit(
    scheduler: &Scheduler,
    dir: PathBuf,
    request: Request<'_>,
) -> anyhow::Result<(JobDir, JobSpec, Submitted)> {
    anyhow::ensure!(!request.points.is_empty(), "nothing to submit");
    let absolute = |p: &Path| {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let spec = JobSpec {
        format: FORMAT,
        exe: std::env::current_exe().context("cannot find the pipeline binary")?,
        project: absolute(request.project)?,
        artifacts: absolute(request.artifacts)?,
        experiment: absolute(request.experiment)?,
        data_root: absolute(request.data_root)?,
        allow_shell: request.allow_shell,
        no_cache: request.no_cache,
        retries: request.resources.retries(),
        points: request
            .points
            .into_iter()
            .enumerate()
            .map(|(index, (set, name))| PointSpec { index, set, name })
            .collect(),
    };
    let dir = JobDir::create(absolute(&dir)?)?;
    dir.write_spec(&spec)?;
    dir.write_script(&spec)?;
    let job_name = format!("pipeline-{}", request.name);
    let first = scheduler.submit(
        &dir.sbatch_args(&job_name, &spec, &request.resources, None, None),
        &dir.script(),
    )?;
    let array = if spec.points.len() > 1 {
        let args = dir.sbatch_args(
            &job_name,
            &spec,
            &request.resources,
            Some(&first),
            request.throttle,
        );
        match scheduler.submit(&args, &dir.script()) {
            Ok(id) => Some(id),
            Err(e) => {
                // Half a submission would compute the first point alone: take it back.
                let _ = scheduler.cancel(std::slice::from_ref(&first));
                return Err(e);
            }
        }
    } else {
        None
    };
    let submitted = Submitted { first, array };
    dir.write_submitted(&submitted)?;
    Ok((dir, spec, submitted))
}

/// A new submission directory for a single run: `STORE/slurm/TIMESTAMP-PID`.
pub fn run_dir_for(artifacts: &Path) -> PathBuf {
    new_submission_in(&artifacts.join("slurm"))
}

/// A new submission directory in `parent`: `TIMESTAMP-PID`.
pub fn new_submission_in(parent: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    parent.join(format!("{stamp}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(slurm: &str) -> Settings {
        Settings {
            file: Some(PathBuf::from("/p/pipeline.toml")),
            slurm: Some(toml::from_str(slurm).expect("toml")),
            ..Settings::default()
        }
    }

    #[test]
    fn resources_come_from_the_flags_then_the_settings_slurm_table_named_in_errors() {
        let no_experiment = Path::new("/nonexistent/experiment.toml");
        let args = ExecutorArgs {
            executor: Executor::Slurm,
            slurm_cpus: Some("2".parse().expect("cpus")),
            ..ExecutorArgs::default()
        };
        let r = args
            .resources(no_experiment, &settings("partition = \"gpu\"\ncpus = 8\n"))
            .expect("resources");
        assert_eq!(r.to_string(), "--partition=gpu --cpus-per-task=2");
        let e = args
            .resources(no_experiment, &settings("mem = \"lots\"\n"))
            .unwrap_err();
        assert!(
            e.0.starts_with("/p/pipeline.toml: [slurm] `mem`"),
            "{}",
            e.0
        );
        let none = ExecutorArgs::default()
            .resources(no_experiment, &Settings::default())
            .expect("resources");
        assert_eq!(none.to_string(), "the cluster's defaults");
    }
}
