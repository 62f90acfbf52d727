//! Slurm's own commands, the only way we talk to the cluster: `sbatch` to submit, `squeue`
//! (and `scontrol show job` for a job `squeue` no longer lists) to follow, `scancel` to cancel.
//! There is no `sacct` without a Slurm database, so none is used. The parsers are pure
//! functions so that they are tested on captured output, without a cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context};

/// A job id as Slurm prints it: `123` for a job, `123_4` for task 4 of array job 123.
pub type JobId = String;

/// Where a job stands, as `squeue`/`scontrol` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, ...
    pub state: String,
    /// Why it waits or ended (`Priority`, `Dependency`, `DependencyNeverSatisfied`, ...).
    pub reason: String,
    /// The node it runs or ran on, when it has one.
    pub node: String,
}

impl JobState {
    /// Waiting for resources, a dependency or its turn.
    pub fn is_queued(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
        )
    }

    /// Started and not yet over (a suspended job will go on).
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "STAGE_OUT" | "SIGNALING"
        )
    }
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
pub fn parse_submitted(stdout: &str) -> Option<JobId> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

/// The `squeue` output format [`query`] asks for: id, state, reason, node, `|`-separated.
pub const SQUEUE_FORMAT: &str = "%i|%T|%r|%N";

/// Parses `squeue --noheader --array --format=SQUEUE_FORMAT` output.
pub fn parse_squeue(stdout: &str) -> BTreeMap<JobId, JobState> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(4, '|');
            let id = fields.next()?.trim();
            let state = fields.next()?.trim();
            if id.is_empty() || state.is_empty() {
                return None;
            }
            Some((
                id.to_string(),
                JobState {
                    state: state.to_string(),
                    reason: fields.next().unwrap_or("").trim().to_string(),
                    node: fields.next().unwrap_or("").trim().to_string(),
                },
            ))
        })
        .collect()
}

/// Parses `scontrol show job ID` (`Key=Value` pairs over several lines).
pub fn parse_scontrol_job(stdout: &str) -> Option<JobState> {
    let mut pairs = BTreeMap::new();
    for word in stdout.split_whitespace() {
        if let Some((k, v)) = word.split_once('=') {
            pairs.entry(k).or_insert(v);
        }
    }
    let state = pairs.get("JobState")?.to_string();
    let node = match pairs.get("NodeList").copied() {
        Some("(null)") | None => String::new(),
        Some(n) => n.to_string(),
    };
    Some(JobState {
        state,
        reason: pairs.get("Reason").unwrap_or(&"").to_string(),
        node,
    })
}

/// Slurm's client commands, found on `PATH`.
pub struct Scheduler;

impl Scheduler {
    /// Checks that Slurm's commands are there, so that a machine without them fails before
    /// anything is written.
    pub fn find() -> anyhow::Result<Scheduler> {
        match Command::new("sbatch").arg("--version").output() {
            Ok(out) if out.status.success() => Ok(Scheduler),
            Ok(out) => bail!(
                "`sbatch --version` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(crate::usage::UsageError(
                "--executor slurm needs Slurm's commands (sbatch, squeue, scancel) on PATH: \
                     run it on the cluster's login node"
                    .into(),
            )
            .into()),
            Err(e) => Err(e).context("cannot run sbatch"),
        }
    }

    /// Submits `script` with `args`; returns the job id.
    pub fn submit(&self, args: &[String], script: &Path) -> anyhow::Result<JobId> {
        let out = run(Command::new("sbatch")
            .arg("--parsable")
            .args(args)
            .arg(script))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "sbatch refused the job: {}",
                one_line(&String::from_utf8_lossy(&out.stderr))
            );
        }
        parse_submitted(&stdout)
            .with_context(|| format!("sbatch printed no job id: {:?}", stdout.trim()))
    }

    /// The jobs of `ids` (and every task of an array among them) that Slurm still knows.
    pub fn query(&self, ids: &[JobId]) -> anyhow::Result<BTreeMap<JobId, JobState>> {
        let out = run(Command::new("squeue")
            .args(["--noheader", "--array", "--states=all"])
            .arg(format!("--jobs={}", ids.join(",")))
            .arg(format!("--format={SQUEUE_FORMAT}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // Jobs that have ended and been purged are an error to squeue: none is left.
            if err.contains("Invalid job id") {
                return Ok(BTreeMap::new());
            }
            bail!("squeue failed: {}", one_line(&err));
        }
        Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
    }

    /// What `scontrol` still knows of one job; `None` once Slurm has forgotten it.
    pub fn show(&self, id: &str) -> Option<JobState> {
        let out = run(Command::new("scontrol").args(["show", "job", id])).ok()?;
        out.status
            .success()
            .then(|| parse_scontrol_job(&String::from_utf8_lossy(&out.stdout)))
            .flatten()
    }

    /// Cancels `ids` (an array id cancels all its tasks).
    pub fn cancel(&self, ids: &[JobId]) -> anyhow::Result<()> {
        let out = run(Command::new("scancel").args(ids))?;
        if !out.status.success() {
            bail!(
                "scancel failed: {}",
                one_line(&String::from_utf8_lossy(&out.stderr))
            );
        }
        Ok(())
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // In a process group of its own, so that Ctrl-C reaches us and not `sbatch` half-way
    // through a submission (we then decide what to cancel).
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd.stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_parsable_output_gives_the_job_id() {
        assert_eq!(parse_submitted("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_submitted("77;cluster-a\n").as_deref(), Some("77"));
        assert_eq!(parse_submitted(""), None);
        assert_eq!(
            parse_submitted("sbatch: error: Batch job submission failed"),
            None
        );
    }

    #[test]
    fn squeue_lines_give_each_job_and_array_task() {
        // Captured from Slurm 22.05 (`squeue --noheader --array --states=all`).
        let out = "12|COMPLETED|None|vm\n13_1|RUNNING|None|vm\n13_2|PENDING|Resources|\n\
                   13_3|PENDING|Dependency|\n14|CANCELLED|DependencyNeverSatisfied|\n\n";
        let jobs = parse_squeue(out);
        assert_eq!(jobs.len(), 5);
        assert!(jobs["13_1"].is_running());
        assert_eq!(jobs["13_1"].node, "vm");
        assert!(jobs["13_2"].is_queued());
        assert_eq!(jobs["13_3"].reason, "Dependency");
        let cancelled = &jobs["14"];
        assert!(!cancelled.is_queued() && !cancelled.is_running());
        assert_eq!(cancelled.reason, "DependencyNeverSatisfied");
        assert_eq!(jobs["12"].state, "COMPLETED");
    }

    #[test]
    fn scontrol_show_job_gives_state_reason_and_node() {
        // Captured from Slurm 22.05, shortened.
        let out = "JobId=2 ArrayJobId=1 ArrayTaskId=1 JobName=j.sh\n   \
                   UserId=root(0) GroupId=root(0) MCS_label=N/A\n   \
                   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)\n   \
                   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0\n   \
                   ReqNodeList=(null) ExcNodeList=(null)\n   NodeList=vm\n";
        let job = parse_scontrol_job(out).expect("a job");
        assert_eq!(
            job,
            JobState {
                state: "FAILED".into(),
                reason: "NonZeroExitCode".into(),
                node: "vm".into()
            }
        );
        let pending =
            parse_scontrol_job("JobId=3 JobState=PENDING Reason=Priority NodeList=(null)")
                .expect("a job");
        assert!(pending.is_queued());
        assert_eq!(pending.node, "");
        assert_eq!(
            parse_scontrol_job("slurm_load_jobs error: Invalid job id"),
            None
        );
    }
}
