//! Run records that cannot be read: what a listing reports of each, and what a reference
//! that would match one says instead of "no run matches".

use std::path::PathBuf;

use crate::runs::record::RecordError;

/// A run directory whose `run.toml` is there but cannot be read (truncated, garbled, not a
/// regular file, too large).
#[derive(Debug, Clone, PartialEq)]
pub struct DamagedRecord {
    /// The run directory's name: the id the record should have.
    pub id: String,
    pub path: PathBuf,
    /// Why it cannot be read, in one line.
    pub why: String,
}

impl DamagedRecord {
    pub(super) fn of(id: String, path: PathBuf, error: &RecordError) -> DamagedRecord {
        let why = match error {
            RecordError::Parse { message, .. } => message.clone(),
            RecordError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        DamagedRecord {
            id,
            path,
            // A parser's message may span lines; the warning is one line per record.
            why: why.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// Whether a reference by id, prefix or suffix (as [`super::resolve_in`] matches them)
    /// would have matched this run.
    pub(super) fn matches(&self, spec: &str) -> bool {
        self.id == spec
            || (!spec.is_empty() && (self.id.starts_with(spec) || self.id.ends_with(spec)))
    }

    /// The error for a reference to this run: an unreadable record, naming its file (the
    /// binary maps it to the exit code of a failure, not of a mistyped reference).
    pub(super) fn referred_to_as(&self, spec: &str) -> RecordError {
        RecordError::Parse {
            path: self.path.clone(),
            message: format!(
                "{} (`{spec}` refers to run {}, whose record is damaged)",
                self.why, self.id
            ),
        }
    }
}

/// The error for `spec` when it refers to a damaged record rather than a readable run:
/// always for its exact id, and for a prefix or suffix that no readable run has. `found` is
/// what resolving among the readable runs gave.
pub(super) fn refers_to_damaged(
    damaged: &[DamagedRecord],
    spec: &str,
    found: &Result<String, RecordError>,
) -> Option<RecordError> {
    if let Some(exact) = damaged.iter().find(|d| d.id == spec) {
        return Some(exact.referred_to_as(spec));
    }
    if !matches!(found, Err(RecordError::NotFound(_))) {
        return None;
    }
    match damaged
        .iter()
        .filter(|d| d.matches(spec))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => None,
        [one] => Some(one.referred_to_as(spec)),
        many => Some(RecordError::Ambiguous {
            spec: spec.to_string(),
            candidates: many.iter().map(|d| d.id.clone()).collect(),
        }),
    }
}
