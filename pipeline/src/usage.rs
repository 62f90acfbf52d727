//! The errors that are the user's: what was asked for cannot be done as asked, and nothing
//! ran. `exit` maps each to the usage exit code; they live apart from it so that any module
//! can raise them without importing the exit-code table.

use pipeline_engine::store::remote::RemoteError;

/// An error in what the user asked for (a flag's value, an argument): exit [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A remote cache named by `--remote`, `PIPELINE_REMOTE` or `pipeline.toml` that cannot be
/// opened (a URL this build cannot use): the user's setting, so exit [`USAGE`]. The remote's
/// error is kept as the source; its text is this error's text.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct UnusableRemote {
    #[source]
    pub source: RemoteError,
}
