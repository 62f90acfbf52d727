//! The exit codes of `pipeline`: a contract scripts and CI can rely on, as cargo-nextest's
//! are. The README lists them and the end-to-end tests pin them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a difference: `diff --fail-on-diff` found one, or `verify` found that a run does not reproduce (or that its files were altered) |
//! | 2 | usage: the command line, a run reference or an experiment file is wrong; nothing ran |
//! | 3 | failure: something went wrong while running (a stage, the store, a file) |
//!
//! Which errors exit 2 is one `match` over [`Expected`], the kinds of error whose code the
//! contract fixes: a new kind is a new variant, and [`Expected::exit_code`] does not compile
//! until it says which code the kind exits with (as nextest's `ExpectedError` does).

use std::process::ExitCode;

use pipeline_engine::diagnostic::ExperimentError;
use pipeline_engine::runs::record::RecordError;

use crate::config::ConfigError;
use crate::usage::{UnusableRemote, UsageError};

/// A comparison found a difference (`diff --fail-on-diff`, `verify`).
pub const DIFFERENCE: u8 = 1;
/// What was asked cannot be done as asked; nothing ran. clap's own errors use 2 as well.
pub const USAGE: u8 = 2;
/// Something failed while running.
pub const FAILURE: u8 = 3;

/// The kinds of error whose exit code the contract fixes, found in an error's chain.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// A flag, an argument or a value the user gave ([`UsageError`]).
    Usage,
    /// A `pipeline.toml` that does not read ([`ConfigError`]).
    Settings,
    /// A remote cache setting that cannot be opened ([`UnusableRemote`]).
    Remote,
    /// An experiment file that does not load ([`ExperimentError`]).
    Experiment,
    /// A run reference that matches no run or several, or the run store failing.
    Record(&'a RecordError),
}

impl<'a> Expected<'a> {
    /// The expected kind `cause` is, if it is one.
    pub fn of(cause: &'a (dyn std::error::Error + 'static)) -> Option<Expected<'a>> {
        if cause.is::<UsageError>() {
            Some(Expected::Usage)
        } else if cause.is::<ConfigError>() {
            Some(Expected::Settings)
        } else if cause.is::<UnusableRemote>() {
            Some(Expected::Remote)
        } else if cause.is::<ExperimentError>() {
            Some(Expected::Experiment)
        } else {
            cause.downcast_ref::<RecordError>().map(Expected::Record)
        }
    }

    /// The documented exit code of this kind of error.
    pub fn exit_code(self) -> u8 {
        match self {
            Expected::Usage | Expected::Settings | Expected::Remote | Expected::Experiment => USAGE,
            Expected::Record(e) => match e {
                RecordError::NotFound(_)
                | RecordError::Ambiguous { .. }
                | RecordError::NoMatch { .. }
                | RecordError::NotAnId(_) => USAGE,
                RecordError::Io { .. } | RecordError::Parse { .. } => FAILURE,
            },
        }
    }
}

/// The exit code for a failed command: [`USAGE`] when any cause is the user's request (an
/// experiment file, a run reference, an argument, a setting), [`FAILURE`] otherwise.
pub fn code_of(error: &anyhow::Error) -> u8 {
    let usage = error
        .chain()
        .filter_map(Expected::of)
        .any(|kind| kind.exit_code() == USAGE);
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

    #[test]
    fn settings_and_remote_errors_are_usage_and_keep_their_source() {
        let settings = anyhow::Error::new(ConfigError {
            file: "/p/pipeline.toml".into(),
            message: "invalid TOML".into(),
        });
        assert_eq!(code_of(&settings), USAGE);
        let remote = UnusableRemote {
            source: pipeline_engine::store::remote::Remote::open("ftp://nowhere")
                .err()
                .expect("ftp is not a remote this build can use"),
        };
        let text = remote.to_string();
        let remote = anyhow::Error::new(remote);
        assert_eq!(code_of(&remote), USAGE);
        assert!(
            remote.chain().nth(1).is_some_and(|c| c.to_string() == text),
            "the remote's own error is the source"
        );
        // An unreadable run store is a failure, though it is a record error too.
        let store = anyhow::Error::new(RecordError::Parse {
            path: "/s/run.toml".into(),
            message: "bad".into(),
        });
        assert_eq!(code_of(&store), FAILURE);
    }
}
