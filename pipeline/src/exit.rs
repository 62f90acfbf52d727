//! The exit codes of `pipeline`: a contract scripts and CI can rely on, as cargo-nextest's
//! are. The README lists them and the end-to-end tests pin them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a difference: `diff --fail-on-diff` found one, or `verify` found that a run does not reproduce (or that its files were altered) |
//! | 2 | usage: the command line, a run reference or an experiment file is wrong; nothing ran |
//! | 3 | failure: something went wrong while running (a stage, the store, a file) |

use std::process::ExitCode;

use pipeline_engine::diagnostic::ExperimentError;
use pipeline_engine::runs::record::RecordError;

/// A comparison found a difference (`diff --fail-on-diff`, `verify`).
pub const DIFFERENCE: u8 = 1;
/// What was asked cannot be done as asked; nothing ran. clap's own errors use 2 as well.
pub const USAGE: u8 = 2;
/// Something failed while running.
pub const FAILURE: u8 = 3;

/// An error in what the user asked for (a flag's value, an argument): exit [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for a failed command: [`USAGE`] when the error is the user's request (an
/// experiment file, a run reference, an argument), [`FAILURE`] otherwise.
pub fn code_of(error: &anyhow::Error) -> u8 {
    let usage = error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<ExperimentError>()
            || matches!(
                cause.downcast_ref::<RecordError>(),
                Some(
                    RecordError::NotFound(_)
                        | RecordError::Ambiguous { .. }
                        | RecordError::NoMatch { .. }
                )
            )
    });
    if usage {
        USAGE
    } else {
        FAILURE
    }
}

/// A difference was found: [`DIFFERENCE`].
pub fn difference() -> ExitCode {
    ExitCode::from(DIFFERENCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones_and_causes_map_to_them() {
        assert_eq!((DIFFERENCE, USAGE, FAILURE), (1, 2, 3));
        let usage = anyhow::Error::new(UsageError("bad flag".into()));
        assert_eq!(code_of(&usage), USAGE);
        let wrapped = anyhow::Error::new(RecordError::NotFound("x".into())).context("show");
        assert_eq!(code_of(&wrapped), USAGE);
        let io = anyhow::Error::new(std::io::Error::other("disk full")).context("run");
        assert_eq!(code_of(&io), FAILURE);
    }
}
