//! The `pipeline` binary: the engine (`pipeline-engine`) wired to the domain (`stages`).
//! `registry` maps stage kinds to domain code, `report` writes each run's HTML page (with the
//! kit in `html`, which the compare and sweep pages share), `session` resolves the project,
//! settings, store and device once, `terminal` shows a run's progress, `executor` runs a
//! sweep's points (here, or on Slurm through `slurm`), `cli` holds the commands; `main` only
//! maps the outcome to a documented exit code ([`exit`]).

mod cli;
mod comparison;
mod config;
mod desktop;
mod device;
mod executor;
mod exit;
mod headline;
mod html;
mod interrupt;
mod registry;
mod report;
mod session;
mod slurm;
mod terminal;
mod usage;

use std::process::ExitCode;

fn main() -> ExitCode {
    stages::memory::reuse_large_allocations();
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            ExitCode::from(exit::code_of(&e))
        }
    }
}

/// Rust ignores SIGPIPE, so `pipeline runs | head` would panic on a closed pipe; a command
/// line tool should end quietly there instead, as `ls` or `git log` do. Only for the commands
/// that print listings and touch no network: a remote cache server that goes away mid-upload
/// must be an I/O error the run survives, not a SIGPIPE that kills it.
pub(crate) fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes on one line. Our error types already spell out their cause in
/// their own message, so a cause whose text is already there is not repeated.
pub(crate) fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
