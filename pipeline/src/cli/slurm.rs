//! `pipeline sweep --executor slurm`: the sweep's points that are still to run, submitted as
//! Slurm jobs (the first point alone, computing the stages all points share, then the others
//! as one array), followed until they end, and written into the sweep's table and
//! `sweep.html` exactly as the local executor writes them.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use pipeline_engine::execute::Store;
use pipeline_engine::experiment::Experiment;
use pipeline_engine::sweep::{self, PointStatus, SweepTable};

use super::sweep::{finish_goal, summarize, SweepArgs};
use crate::slurm::scheduler::Scheduler;
use crate::slurm::watch::{watch, Progress, Stop};
use crate::slurm::{self, Request};

/// A resolved sweep, to run on Slurm.
pub struct SweepOnSlurm<'a> {
    pub args: &'a SweepArgs,
    pub exp: &'a Experiment,
    pub id: &'a str,
    pub project: &'a Path,
    pub store: &'a Store,
    pub data_root: &'a Path,
    /// The sweep's directory.
    pub dir: &'a Path,
}

impl SweepOnSlurm<'_> {
    /// Runs the points `todo` (indices into `table.points`) on Slurm and records them.
    pub fn run(&self, mut table: SweepTable, todo: &[usize]) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        if !todo.is_empty() {
            self.submit_and_follow(&mut table, todo)?;
        }
        finish_goal(&mut table);
        table
            .write(self.dir)
            .with_context(|| format!("cannot write the sweep's table in {}", self.dir.display()))?;
        let html = self.dir.join("sweep.html");
        sweep::write_atomically(&html, crate::html::sweep_page::render(&table).as_bytes())
            .with_context(|| format!("cannot write {}", html.display()))?;
        summarize(&table, started.elapsed().as_secs_f64(), todo.len());
        println!("{}", self.dir.display());
        let count = |s: PointStatus| table.points.iter().filter(|p| p.status == s).count();
        let (failed, pending) = (count(PointStatus::Failed), count(PointStatus::Pending));
        if failed > 0 || pending > 0 {
            anyhow::bail!(
                "{failed} of {} points failed{} (their errors are in {}, their logs beside it); \
                 run the sweep again to retry them",
                table.points.len(),
                if pending > 0 {
                    format!(" and {pending} did not finish")
                } else {
                    String::new()
                },
                self.dir.join("table.csv").display(),
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn submit_and_follow(&self, table: &mut SweepTable, todo: &[usize]) -> anyhow::Result<()> {
        let args = self.args;
        let resources = args
            .executor
            .resources(&args.experiment.experiment, self.project)?;
        let scheduler = Scheduler::find()?;
        let points = todo
            .iter()
            .map(|&i| {
                let point = &table.points[i].point;
                let mut set = args.experiment.set.clone();
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
            experiment: &args.experiment.experiment,
            name: &self.exp.name,
            project: self.project,
            artifacts: &self.store.root,
            data_root: self.data_root,
            allow_shell: args.shell.allow_shell,
            no_cache: false,
            points,
            resources,
            throttle: args.jobs,
        };
        let submission = slurm::new_submission_in(&self.dir.join("slurm"));
        let (job_dir, spec, submitted) = slurm::submit(&scheduler, submission, request)?;
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
