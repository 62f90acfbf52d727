//! The local executor: a sweep's points as `pipeline run` child processes of this one, `-j N`
//! at a time. Each point is an ordinary run (the point's values as `--set` flags, its
//! stderr in `artifacts/sweeps/ID/logs/NN.log`), so a point that fails or crashes leaves the
//! others going, and points that share a stage compute it once: the cache's per-key locks
//! make a second point wait for the first one's result, then reuse it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use pipeline_engine::experiment::sweep_spec::Point;
use pipeline_engine::human::format_seconds;
use pipeline_engine::run::store::Store;
use pipeline_engine::sweep;
use pipeline_engine::sweep::table::{PointStatus, SweepTable};

use super::{default_goal, Ended, PointExecutor};

/// This machine's pool: `jobs` points at a time, each a child `pipeline run`.
pub struct LocalPool<'a> {
    pub child: ChildRun,
    pub jobs: usize,
    /// The sweep's id: point NN's run is named `ID.NN`.
    pub id: &'a str,
    /// The sweep's directory, which the rows' log paths are relative to.
    pub dir: &'a Path,
    pub store: &'a Store,
}

impl PointExecutor for LocalPool<'_> {
    fn run_points(&self, table: &mut SweepTable, todo: &[usize]) -> anyhow::Result<Ended> {
        let table = Mutex::new(table);
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let total = todo.len();
        // Ctrl-C reaches the running points too (one process group), which stop; the table then
        // says which were interrupted and which never started, and a rerun resumes.
        crate::interrupt::install();
        let interrupted = || crate::interrupt::received() != 0;
        sweep::run_queue(todo, self.jobs, interrupted, |&i| {
            let (point, log) = {
                let t = table.lock().unwrap_or_else(|e| e.into_inner());
                (t.points[i].point.clone(), self.dir.join(&t.points[i].log))
            };
            let name = format!("{}.{:02}", self.id, point.index);
            let outcome = self.child.run(&point, &name, &log);
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            let n = finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let row = &mut t.points[i];
            row.duration_s = Some(outcome.seconds);
            row.run = outcome.run.clone();
            match &outcome.error {
                None => {
                    row.status = PointStatus::Succeeded;
                    row.error = None;
                }
                Some(e) => {
                    row.status = PointStatus::Failed;
                    row.error = Some(if interrupted() {
                        format!("interrupted ({e})")
                    } else {
                        e.clone()
                    });
                    row.metrics.clear();
                }
            }
            if let Some(run) = &outcome.run {
                if let Ok(record) = self.store.runs.load(run) {
                    row.metrics = record.metrics();
                }
            }
            // Before the line: the default goal is known once the first point has metrics.
            default_goal(&mut t);
            let line = match &outcome.error {
                None => {
                    let shown = t
                        .goal
                        .as_ref()
                        .and_then(|g| t.points[i].metrics.get(&g.metric).map(|v| (g, v)))
                        .map_or(String::new(), |(g, v)| format!(", {} = {v:.4}", g.metric));
                    format!("ok in {}{shown}", format_seconds(outcome.seconds))
                }
                Some(e) => format!("FAILED: {e} (log: {})", log.display()),
            };
            eprintln!(
                "[{n}/{total}] point {:02} {}: {line}",
                point.index,
                point.label()
            );
            if let Err(e) = t.write(self.dir) {
                eprintln!(
                    "warning: cannot write the sweep's table in {}: {e}",
                    self.dir.display()
                );
            }
        });
        Ok(if interrupted() {
            Ended::Interrupted
        } else {
            Ended::Done
        })
    }

    fn logs_hint(&self, dir: &Path) -> String {
        format!("their logs in {}", dir.join("logs").display())
    }
}

/// How to start one point's run.
pub struct ChildRun {
    pub exe: PathBuf,
    pub experiment: PathBuf,
    /// The sweep's own `--set` overrides, before the point's values.
    pub base: Vec<String>,
    pub data_root: PathBuf,
    pub artifacts: PathBuf,
    pub allow_shell: bool,
    pub project: PathBuf,
    /// Worker threads for each point, when the user has not chosen (`RAYON_NUM_THREADS`).
    pub threads: Option<usize>,
}

/// Each point's share of the cores when `jobs` points run at once: without it every point
/// starts a thread per core, and `-j 2` on 2 cores runs 4 busy threads that take turns (the
/// 24-point bench took 17 % more CPU time that way). `None` when the user has set
/// `RAYON_NUM_THREADS`, which the points then inherit.
pub fn threads_per_point(
    jobs: usize,
    cores: usize,
    user_choice: Option<&std::ffi::OsStr>,
) -> Option<usize> {
    if user_choice.is_some() {
        return None;
    }
    Some((cores / jobs.max(1)).max(1))
}

struct Outcome {
    run: Option<String>,
    error: Option<String>,
    seconds: f64,
}

impl ChildRun {
    /// Runs `pipeline run` for the point, its stderr into `log`; the run's id is the last
    /// line of its stdout (its directory), or, when it failed, the newest run named `name`.
    fn run(&self, point: &Point, name: &str, log: &Path) -> Outcome {
        let started = Instant::now();
        let log_file = match fs::File::create(log) {
            Ok(f) => f,
            Err(e) => {
                return Outcome {
                    run: None,
                    error: Some(format!("cannot create the log {}: {e}", log.display())),
                    seconds: 0.0,
                }
            }
        };
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(&self.project)
            .arg("--artifacts")
            .arg(&self.artifacts)
            .arg("run")
            .arg(&self.experiment)
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--name")
            .arg(name);
        for s in &self.base {
            cmd.arg("--set").arg(s);
        }
        for v in &point.values {
            cmd.arg("--set").arg(format!("{}={}", v.key, v.value));
        }
        if self.allow_shell {
            cmd.arg("--allow-shell");
        }
        if let Some(threads) = self.threads {
            cmd.env("RAYON_NUM_THREADS", threads.to_string());
        }
        cmd.env_remove("PIPELINE_ALLOW_SHELL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let output = cmd.output();
        let seconds = started.elapsed().as_secs_f64();
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                return Outcome {
                    run: None,
                    error: Some(format!("cannot start {}: {e}", self.exe.display())),
                    seconds,
                }
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let run_id = dir.and_then(|d| {
            Path::new(d.trim())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        if output.status.success() {
            return Outcome {
                run: run_id,
                error: None,
                seconds,
            };
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        let error = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            .map(str::to_string)
            .unwrap_or_else(|| match output.status.code() {
                Some(c) => format!("`pipeline run` exited with {c}"),
                None => "`pipeline run` was killed by a signal".into(),
            });
        let failed_run =
            pipeline_engine::runs::record::RunStore::open(&self.artifacts.join("runs"))
                .ok()
                .and_then(|runs| runs.summaries().ok())
                .and_then(|all| all.into_iter().find(|r| r.name.as_deref() == Some(name)))
                .map(|r| r.id);
        Outcome {
            run: failed_run,
            error: Some(error),
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::threads_per_point;

    #[test]
    fn points_share_the_cores_unless_the_user_chose() {
        assert_eq!(threads_per_point(2, 2, None), Some(1));
        assert_eq!(threads_per_point(4, 16, None), Some(4));
        assert_eq!(threads_per_point(3, 16, None), Some(5));
        assert_eq!(threads_per_point(8, 2, None), Some(1));
        assert_eq!(threads_per_point(1, 16, None), Some(16));
        assert_eq!(threads_per_point(2, 2, Some("3".as_ref())), None);
    }
}
