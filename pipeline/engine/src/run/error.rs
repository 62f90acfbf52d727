//! What can go wrong running, planning or collecting: one error type for the run layer, each
//! variant naming the stage or file at fault.

use std::path::PathBuf;

use crate::experiment::kind::StageError;
use crate::runs::record::RecordError;
use crate::store::cache::CacheError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage `{stage}` failed: {source}")]
    Stage { stage: String, source: StageError },
    #[error("stage `{stage}`: cannot read data file {path}: {source}")]
    External {
        stage: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stage `{stage}` did not write its output `{output}` ({file})")]
    MissingOutput {
        stage: String,
        output: String,
        file: String,
    },
    #[error(
        "stage `{stage}`: output {file} must be a regular file, not {what} (write the bytes, or copy them with `cp -L`)"
    )]
    NotRegularOutput {
        stage: String,
        file: String,
        what: &'static str,
    },
    #[error("stage `{stage}`: input `{slot}` comes from `{from}`, which has no result")]
    MissingInput {
        stage: String,
        slot: String,
        from: String,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Record(#[from] RecordError),
    /// What the caller adds to a finished run's directory (the binary's HTML report) failed.
    #[error(transparent)]
    Finish(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot publish {path} into the run directory: {source}")]
    Publish {
        path: PathBuf,
        source: std::io::Error,
    },
}
