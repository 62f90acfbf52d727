//! The `pipeline` command line. `main` only maps the outcome to an exit code: 0 success,
//! 1 a failed run or any other error, 2 a usage error (from clap).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
