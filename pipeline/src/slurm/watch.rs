//! Following a submission until every point has ended: each point's progress (queued,
//! running, done, failed) from `squeue` while its job is live and from the status file its
//! task writes, printed as it changes; Ctrl-C asks whether to cancel the jobs (`scancel`),
//! and cancels them without asking when nobody can answer (stdin is not a terminal).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::job::{JobDir, JobSpec, PointStatus, Submitted, TaskState};
use super::scheduler::{JobState, Scheduler};

/// Where a point stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Submitted; Slurm has not reported on it yet.
    Submitted,
    /// Waiting in the queue, and why (`Priority`, `Resources`, `Dependency`).
    Queued(String),
    Running {
        node: String,
        attempt: u32,
    },
    Done {
        run_dir: Option<PathBuf>,
    },
    Failed {
        error: String,
        log: PathBuf,
    },
}

impl Progress {
    pub fn is_final(&self) -> bool {
        matches!(self, Progress::Done { .. } | Progress::Failed { .. })
    }

    /// The column a point counts in.
    pub fn word(&self) -> &'static str {
        match self {
            Progress::Submitted | Progress::Queued(_) => "queued",
            Progress::Running { .. } => "running",
            Progress::Done { .. } => "done",
            Progress::Failed { .. } => "failed",
        }
    }

    fn describe(&self, attempts_allowed: u32) -> String {
        match self {
            Progress::Submitted => "submitted".into(),
            Progress::Queued(reason) if reason.is_empty() || reason == "None" => "queued".into(),
            Progress::Queued(reason) => format!("queued ({reason})"),
            Progress::Running { node, attempt } => {
                let on = if node.is_empty() {
                    String::new()
                } else {
                    format!(" on {node}")
                };
                format!("running{on} (attempt {attempt} of {attempts_allowed})")
            }
            Progress::Done { run_dir: Some(d) } => format!("done: {}", d.display()),
            Progress::Done { run_dir: None } => "done".into(),
            Progress::Failed { error, log } => {
                format!("failed: {error} (log: {})", log.display())
            }
        }
    }
}

/// What one look at a point shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Its state, for sure.
    Now(Progress),
    /// Its job has ended or vanished without the task saying how: failed, unless the task's
    /// status shows up in a later look (a slow shared filesystem).
    Gone(Progress),
}

/// Where a point stands, from the status its task wrote and its Slurm job (while `squeue`
/// or `scontrol` still know it).
pub fn observe(status: Option<&PointStatus>, job: Option<&JobState>, log: PathBuf) -> Seen {
    let attempt = status.map_or(1, |s| s.attempt.max(1));
    match status.map(|s| s.state) {
        Some(TaskState::Succeeded) => {
            return Seen::Now(Progress::Done {
                run_dir: status.and_then(|s| s.run_dir.clone()),
            })
        }
        Some(TaskState::Failed) => {
            let s = status.expect("a failed status");
            let error = s.error.clone().unwrap_or_else(|| "failed".into());
            return Seen::Now(Progress::Failed {
                error: format!(
                    "{error} (after {} attempt{})",
                    s.attempt,
                    if s.attempt == 1 { "" } else { "s" }
                ),
                log: s.log.clone(),
            });
        }
        Some(TaskState::Running) | None => {}
    }
    match job {
        Some(j) if j.is_queued() => Seen::Now(Progress::Queued(j.reason.clone())),
        Some(j) if j.is_running() => Seen::Now(Progress::Running {
            node: j.node.clone(),
            attempt,
        }),
        Some(j) if j.reason == "DependencyNeverSatisfied" => Seen::Now(Progress::Failed {
            error: "not run: the first point, which computes the stages all points share, \
                    failed (fix it and submit again)"
                .into(),
            log,
        }),
        Some(j) => {
            let during = match status {
                Some(s) => format!(" during attempt {}", s.attempt),
                None => " before its task started".into(),
            };
            Seen::Gone(Progress::Failed {
                error: format!(
                    "its Slurm job ended {}{}{during}",
                    j.state,
                    if j.reason.is_empty() || j.reason == "None" {
                        String::new()
                    } else {
                        format!(" ({})", j.reason)
                    }
                ),
                log,
            })
        }
        None => Seen::Gone(Progress::Failed {
            error: "Slurm no longer knows its job, and its task left no outcome".into(),
            log,
        }),
    }
}

/// Looks in a row that a vanished job must stay vanished before its point counts as failed.
const GONE_LOOKS: u32 = 3;

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Every point ended.
    Finished,
    /// Interrupted; the unfinished jobs were cancelled.
    Cancelled,
    /// Interrupted; the jobs go on without us.
    Detached,
}

/// Follows the submission until every point has ended or the user interrupts; returns each
/// point's last known progress.
pub fn watch(
    scheduler: &Scheduler,
    dir: &JobDir,
    spec: &JobSpec,
    submitted: &Submitted,
    labels: &[String],
) -> (Vec<Progress>, Stop) {
    crate::interrupt::install();
    let n = spec.points.len();
    let allowed = spec.retries + 1;
    let mut progress = vec![Progress::Submitted; n];
    let mut gone_looks = vec![0u32; n];
    let mut last_counts = String::new();
    let start = Instant::now();
    let mut failed_queries = 0;
    eprintln!(
        "submitted {} (log{}: {})",
        describe_jobs(submitted, n),
        if n == 1 { "" } else { "s" },
        if n == 1 {
            dir.log(0).display().to_string()
        } else {
            dir.root.join("logs").display().to_string()
        }
    );
    loop {
        if let Some(stop) = interrupted(scheduler, submitted, &progress) {
            for (i, p) in progress.iter_mut().enumerate() {
                if !p.is_final() && stop == Stop::Cancelled {
                    *p = Progress::Failed {
                        error: "cancelled".into(),
                        log: dir.log(i),
                    };
                }
            }
            return (progress, stop);
        }
        // The queue first, then the status files: a task writes its outcome before its job
        // ends, so a job the queue shows ended has its outcome on disk by now.
        let queue = match scheduler.query(&submitted.ids()) {
            Ok(q) => {
                failed_queries = 0;
                Some(q)
            }
            Err(e) => {
                failed_queries += 1;
                eprintln!("warning: {e:#} (try {failed_queries}; retrying)");
                None
            }
        };
        for i in 0..n {
            if progress[i].is_final() {
                continue;
            }
            let status = dir.read_status(i);
            let Some(queue) = &queue else {
                // Without the queue, only a task's own word counts.
                if let Some(Seen::Now(p)) =
                    status.as_ref().map(|s| observe(Some(s), None, dir.log(i)))
                {
                    if p.is_final() {
                        update(&mut progress[i], p, i, labels, allowed);
                    }
                }
                continue;
            };
            let job = submitted
                .job_of(i)
                .and_then(|id| queue.get(&id).cloned().or_else(|| scheduler.show(&id)));
            match observe(status.as_ref(), job.as_ref(), dir.log(i)) {
                Seen::Now(p) => {
                    gone_looks[i] = 0;
                    update(&mut progress[i], p, i, labels, allowed);
                }
                Seen::Gone(p) => {
                    gone_looks[i] += 1;
                    if gone_looks[i] >= GONE_LOOKS {
                        update(&mut progress[i], p, i, labels, allowed);
                    }
                }
            }
        }
        let counts = counts(&progress);
        if n > 1 && counts != last_counts {
            eprintln!("slurm: {counts}");
            last_counts = counts;
        }
        if progress.iter().all(Progress::is_final) {
            return (progress, Stop::Finished);
        }
        // Gentle on the controller: every second at first, every 10 s after a few minutes.
        let interval =
            (start.elapsed() / 20).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let until = Instant::now() + interval;
        while Instant::now() < until && crate::interrupt::received() == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn update(slot: &mut Progress, new: Progress, index: usize, labels: &[String], allowed: u32) {
    if *slot != new {
        let label = labels
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("point {index}"));
        eprintln!("{label}: {}", new.describe(allowed));
        *slot = new;
    }
}

/// `3 queued, 2 running, 6 done, 1 failed`.
pub fn counts(progress: &[Progress]) -> String {
    ["queued", "running", "done", "failed"]
        .map(|w| format!("{} {w}", progress.iter().filter(|p| p.word() == w).count()))
        .join(", ")
}

fn describe_jobs(s: &Submitted, points: usize) -> String {
    match &s.array {
        Some(a) => format!(
            "job {} (the first point, with the stages all points share) and array {a} (the \
             other {} points, once it has succeeded)",
            s.first,
            points - 1
        ),
        None => format!("job {}", s.first),
    }
}

/// After Ctrl-C: asks whether to cancel the unfinished jobs (or cancels them when stdin is
/// not a terminal or the signal was SIGTERM). `None` when not interrupted.
fn interrupted(
    scheduler: &Scheduler,
    submitted: &Submitted,
    progress: &[Progress],
) -> Option<Stop> {
    let signal = crate::interrupt::received();
    if signal == 0 {
        return None;
    }
    let unfinished = progress.iter().filter(|p| !p.is_final()).count();
    let ids = submitted.ids();
    let ask = signal == libc::SIGINT && std::io::stdin().is_terminal();
    let cancel = if ask {
        eprint!(
            "\ninterrupted: cancel the Slurm jobs of the {unfinished} unfinished point{} \
             (scancel {})? [y/N] ",
            if unfinished == 1 { "" } else { "s" },
            ids.join(" ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    } else {
        true
    };
    if cancel {
        match scheduler.cancel(&ids) {
            Ok(()) => eprintln!("cancelled Slurm jobs {}", ids.join(" ")),
            Err(e) => eprintln!("warning: {e:#}; cancel them with scancel {}", ids.join(" ")),
        }
        Some(Stop::Cancelled)
    } else {
        eprintln!(
            "the jobs go on: follow them with `squeue --jobs {}`; their runs land in the store \
             as ordinary runs (`pipeline runs`)",
            ids.join(",")
        );
        Some(Stop::Detached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::job::FORMAT;

    fn status(state: TaskState, attempt: u32) -> PointStatus {
        PointStatus {
            format: FORMAT,
            index: 2,
            state,
            attempt,
            attempts_allowed: 3,
            exit_code: (state != TaskState::Running).then_some(3),
            run_dir: (state == TaskState::Succeeded).then(|| "/s/runs/r1".into()),
            error: (state == TaskState::Failed).then(|| "stage `train` failed".into()),
            log: "/d/logs/point-2.log".into(),
            host: "n1".into(),
            slurm_job: Some("9_2".into()),
        }
    }

    fn job(state: &str, reason: &str) -> JobState {
        JobState {
            state: state.into(),
            reason: reason.into(),
            node: if state == "PENDING" { "" } else { "n1" }.into(),
        }
    }

    #[test]
    fn a_task_s_final_word_wins_over_the_queue() {
        let log = PathBuf::from("/d/logs/point-2.log");
        let done = status(TaskState::Succeeded, 1);
        assert_eq!(
            observe(Some(&done), Some(&job("RUNNING", "None")), log.clone()),
            Seen::Now(Progress::Done {
                run_dir: Some("/s/runs/r1".into())
            })
        );
        let failed = status(TaskState::Failed, 3);
        assert_eq!(
            observe(Some(&failed), None, log.clone()),
            Seen::Now(Progress::Failed {
                error: "stage `train` failed (after 3 attempts)".into(),
                log: log.clone()
            })
        );
    }

    #[test]
    fn the_queue_tells_queued_from_running_and_a_job_that_died_from_one_that_ran() {
        let log = PathBuf::from("/d/logs/point-2.log");
        assert_eq!(
            observe(None, Some(&job("PENDING", "Dependency")), log.clone()),
            Seen::Now(Progress::Queued("Dependency".into()))
        );
        let running = status(TaskState::Running, 2);
        assert_eq!(
            observe(Some(&running), Some(&job("RUNNING", "None")), log.clone()),
            Seen::Now(Progress::Running {
                node: "n1".into(),
                attempt: 2
            })
        );
        // Killed at its time limit mid-attempt: failed, once it stays so.
        assert_eq!(
            observe(
                Some(&running),
                Some(&job("TIMEOUT", "TimeLimit")),
                log.clone()
            ),
            Seen::Gone(Progress::Failed {
                error: "its Slurm job ended TIMEOUT (TimeLimit) during attempt 2".into(),
                log: log.clone()
            })
        );
        // The first point failed: the array's tasks are cancelled by Slurm, at once final.
        assert!(matches!(
            observe(None,
                Some(&job("CANCELLED", "DependencyNeverSatisfied")),
                log.clone()
            ),
            Seen::Now(Progress::Failed { error, .. }) if error.starts_with("not run: the first point")
        ));
        assert!(matches!(observe(None, None, log), Seen::Gone(_)));
    }

    #[test]
    fn counts_put_each_point_in_one_column() {
        let p = [
            Progress::Submitted,
            Progress::Queued("Priority".into()),
            Progress::Running {
                node: "n".into(),
                attempt: 1,
            },
            Progress::Done { run_dir: None },
            Progress::Failed {
                error: "x".into(),
                log: "l".into(),
            },
        ];
        assert_eq!(counts(&p), "2 queued, 1 running, 1 done, 1 failed");
    }
}
