//! The `pipeline` command line. `main` only maps the outcome to an exit code: 0 success,
//! 1 a failed run or any other error, 2 a usage error (from clap).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    restore_sigpipe();
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Rust ignores SIGPIPE, so `pipeline runs | head` would panic on a closed pipe; a command
/// line tool should end quietly there instead, as `ls` or `git log` do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
