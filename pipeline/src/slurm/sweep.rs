//! The Slurm executor of a sweep (`pipeline sweep --executor slurm`): the sweep's points that
//! are still to run, submitted as Slurm jobs (the first point alone, computing the stages all
//! points share, then the others as one array), followed until they end, and written into
//! the sweep's rows as the local executor writes them.

use std::path::Path;

use pipeline_engine::run::store::Store;
use pipeline_engine::sweep::table::{PointStatus, SweepTable};

use super::scheduler::Scheduler;
use super::watch::{watch, Progress, Stop};
use super::{ExecutorArgs, Request};
use crate::config::Settings;
use crate::executor::{Ended, PointExecutor};

/// A resolved sweep, to run on Slurm.
pub struct SweepOnSlurm<'a> {
    /// `--executor slurm` and the `--slurm-*` resources.
    pub executor: &'a ExecutorArgs,
    /// The experiment file.
    pub experiment: &'a Path,
    /// The experiment's name, for the jobs' names.
    pub name: &'a str,
    /// The sweep's own `--set` overrides, before each point's values.
    pub base: &'a [String],
    pub allow_shell: bool,
    /// At most this many points' jobs at a time (`-j N`), where given.
    pub throttle: Option<usize>,
    pub id: &'a str,
    pub project: &'a Path,
    /// The project's settings, with `pipeline.toml`'s `[slurm]` table.
    pub settings: &'a Settings,
    pub store: &'a Store,
    pub data_root: &'a Path,
    /// The sweep's directory.
    pub dir: &'a Path,
}

impl PointExecutor for SweepOnSlurm<'_> {
    fn run_points(&self, table: &mut SweepTable, todo: &[usize]) -> anyhow::Result<Ended> {
        if !todo.is_empty() {
            self.submit_and_follow(table, todo)?;
        }
        // Interrupted points are left running or cancelled: their rows stay pending, and the
        // sweep's closing error counts them as not finished.
        Ok(Ended::Done)
    }

    fn logs_hint(&self, _dir: &Path) -> String {
        "their logs beside it".into()
    }
}

impl SweepOnSlurm<'_> {
    fn submit_and_follow(&self, table: &mut SweepTable, todo: &[usize]) -> anyhow::Result<()> {
        let resources = self.executor.resources(self.experiment, self.settings)?;
        let scheduler = Scheduler::find()?;
        let points = todo
            .iter()
            .map(|&i| {
                let point = &table.points[i].point;
                let mut set = self.base.to_vec();
                set.extend(
                    point
                        .values
                        .iter()
                        .map(|v| format!("{}={}", v.key, v.value)),
                );
                (set, Some(format!("{}.{:02}", self.id, point.index)))
            })
            .collect();
        let labels: Vec<String> = todo
            .iter()
            .map(|&i| {
                let point = &table.points[i].point;
                format!("point {:02} {}", point.index, point.label())
            })
            .collect();
        eprintln!(
            "submitting {} point(s) to Slurm, asking for {resources}; point {:02} first, with \
             the stages all points share",
            todo.len(),
            table.points[todo[0]].point.index
        );
        let request = Request {
            experiment: self.experiment,
            name: self.name,
            project: self.project,
            artifacts: &self.store.root,
            data_root: self.data_root,
            allow_shell: self.allow_shell,
            no_cache: false,
            points,
            resources,
            throttle: self.throttle,
        };
        let submission = super::new_submission_in(&self.dir.join("slurm"));
        let (job_dir, spec, submitted) = super::submit(&scheduler, submission, request)?;
        let (progress, stop) = watch(&scheduler, &job_dir, &spec, &submitted, &labels);
        for (k, (&i, p)) in todo.iter().zip(&progress).enumerate() {
            let row = &mut table.points[i];
            // The log, relative to the sweep's directory as the table keeps it.
            let log = job_dir.log(k);
            row.log = log
                .strip_prefix(self.dir)
                .unwrap_or(&log)
                .display()
                .to_string();
            match p {
                Progress::Done { run_dir } => {
                    let id = run_dir
                        .as_ref()
                        .and_then(|d| d.file_name())
                        .map(|n| n.to_string_lossy().into_owned());
                    let record = id.as_ref().and_then(|id| self.store.runs.load(id).ok());
                    row.status = PointStatus::Succeeded;
                    row.error = None;
                    row.metrics = record.as_ref().map(|r| r.metrics()).unwrap_or_default();
                    row.duration_s = record.as_ref().and_then(|r| r.duration_s);
                    row.run = id;
                }
                Progress::Failed { error, .. } => {
                    row.status = PointStatus::Failed;
                    row.error = Some(error.clone());
                    row.metrics.clear();
                    // The failed run, when the point got as far as starting one.
                    let name = format!("{}.{:02}", self.id, row.point.index);
                    row.run = self
                        .store
                        .runs
                        .summaries()
                        .ok()
                        .and_then(|all| all.into_iter().find(|r| r.name.as_deref() == Some(&name)))
                        .map(|r| r.id);
                }
                // Interrupted and left running: the table says so; a rerun picks them up.
                _ => {}
            }
        }
        if stop == Stop::Detached {
            eprintln!(
                "the points still running will land in the store; run the sweep again once \
                 they have finished to fill in its table (their stages come from the cache)"
            );
        }
        Ok(())
    }
}
