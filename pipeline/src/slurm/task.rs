//! The task wrapper, `pipeline slurm-task DIR`: what a Slurm job runs on its node. It picks
//! its point by `$SLURM_ARRAY_TASK_ID` (0 for the first point's plain job), runs it with the
//! same binary as an ordinary local `pipeline run`, retries it when it fails, and writes the
//! point's status file before and after each attempt, since without a Slurm database
//! nothing else would remember how a task ended.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use super::job::{JobDir, PointStatus, TaskState, FORMAT};

/// `pipeline run`'s exit code for a request that is wrong (a bad experiment file): running
/// it again cannot help, so it is not retried.
const USAGE: i32 = crate::exit::USAGE as i32;

pub fn run_task(dir: &Path) -> anyhow::Result<ExitCode> {
    let dir = JobDir::open(dir);
    let spec = dir.read_spec()?;
    let index = match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(id) => id
            .trim()
            .parse::<usize>()
            .with_context(|| format!("SLURM_ARRAY_TASK_ID is not a number: {id:?}"))?,
        Err(_) => 0,
    };
    let point = spec
        .points
        .get(index)
        .with_context(|| format!("{} has no point {index}", dir.spec_file().display()))?;
    let exe = std::env::current_exe().context("cannot find the pipeline binary")?;
    let host = hostname();
    let slurm_job = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_JOB_ID"),
    ) {
        (Ok(array), _) => Some(format!("{array}_{index}")),
        (_, Ok(job)) => Some(job),
        _ => None,
    };
    let allowed = spec.retries + 1;
    // A requeued job (preempted, or its node failed) goes on counting where it was.
    let done_before = match dir.read_status(index) {
        Some(s) if s.state != TaskState::Succeeded => s.attempt,
        _ => 0,
    };
    let mut status = PointStatus {
        format: FORMAT,
        index,
        state: TaskState::Running,
        attempt: done_before,
        attempts_allowed: allowed,
        exit_code: None,
        run_dir: None,
        error: None,
        log: dir.log(index),
        host,
        slurm_job,
    };
    if done_before >= allowed {
        status.state = TaskState::Failed;
        status.error.get_or_insert_with(|| {
            format!("no attempt left: {done_before} of {allowed} already made")
        });
        dir.write_status(&status)?;
        return Ok(ExitCode::from(crate::exit::FAILURE));
    }
    for attempt in done_before + 1..=allowed {
        status.attempt = attempt;
        status.state = TaskState::Running;
        status.exit_code = None;
        dir.write_status(&status)?;
        eprintln!(
            "pipeline: point {index}, attempt {attempt} of {allowed}, on {}",
            status.host
        );
        let outcome = run_point(&exe, &spec.project, &spec.run_args(point))?;
        status.exit_code = Some(outcome.code);
        status.run_dir = outcome.run_dir.map(Into::into).or(status.run_dir.take());
        if outcome.code == 0 {
            status.state = TaskState::Succeeded;
            status.error = None;
            dir.write_status(&status)?;
            return Ok(ExitCode::SUCCESS);
        }
        status.error = Some(
            outcome
                .error
                .unwrap_or_else(|| format!("pipeline run exited with code {}", outcome.code)),
        );
        if outcome.code == USAGE {
            eprintln!("pipeline: point {index} is refused as asked: not retried");
            break;
        }
    }
    status.state = TaskState::Failed;
    dir.write_status(&status)?;
    Ok(ExitCode::from(
        u8::try_from(status.exit_code.unwrap_or(3)).unwrap_or(crate::exit::FAILURE),
    ))
}

struct Outcome {
    code: i32,
    /// The last line `pipeline run` printed on stdout: the run's directory.
    run_dir: Option<String>,
    /// The last `error:` line it printed on stderr.
    error: Option<String>,
}

/// Runs `pipeline ARGS`, passing its output through to the job's log.
fn run_point(exe: &Path, cwd: &Path, args: &[std::ffi::OsString]) -> anyhow::Result<Outcome> {
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let errors = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(e) = line.strip_prefix("error: ") {
                last = Some(e.to_string());
            }
        }
        last
    });
    let mut run_dir = None;
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            if !line.trim().is_empty() {
                run_dir = Some(line.trim().to_string());
            }
        }
    }
    let status = child.wait().context("cannot wait for pipeline run")?;
    let error = errors.join().unwrap_or(None);
    // Killed by a signal: report it as a shell would, 128 + the signal.
    #[cfg(unix)]
    let code = {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    };
    #[cfg(not(unix))]
    let code = status.code().unwrap_or(1);
    let error = error.or_else(|| {
        (code > 128).then(|| format!("pipeline run was killed by signal {}", code - 128))
    });
    Ok(Outcome {
        code,
        run_dir: if code == 0 { run_dir } else { None },
        error,
    })
}

fn hostname() -> String {
    std::env::var("SLURMD_NODENAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}
