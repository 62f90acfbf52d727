//! How a run tells what it is doing: the [`Reporter`] the CLI draws, and [`Silent`] for tests
//! and scripted uses.

use std::path::Path;

use crate::experiment::kind::ProgressSink;
use crate::experiment::Stage;
use crate::runs::record::{CacheUse, RunRecord};

/// Shows what the run is doing, and presents it when it is done; the CLI draws it and writes
/// its report, tests stay quiet.
pub trait Reporter: Sync {
    fn stage_started(&self, stage: &Stage, index: usize, total: usize);
    /// Progress of the stage currently running.
    fn progress(&self) -> &dyn ProgressSink;
    /// The stage waits for another process computing the same result.
    fn waiting(&self, stage: &Stage);
    /// The stage's cached result failed its checks and is recomputed; each problem names the
    /// file at fault.
    fn damaged(&self, _stage: &Stage, _problems: &[String]) {}
    /// `pipeline gc` holds the store: the run waits for it before it starts.
    fn store_busy(&self) {}
    /// A remote cache problem the run goes on despite (unreachable, a damaged blob, a
    /// reproducibility finding): one line, worth reading.
    fn remote_warning(&self, _message: &str) {}
    fn stage_finished(&self, stage: &Stage, cache: CacheUse, seconds: f64);
    fn stage_failed(&self, stage: &Stage, error: &str);
    /// The run is over and its record saved (succeeded or failed): the place to add what the
    /// caller makes of a run (the binary writes `report.html`). An error fails a run that had
    /// succeeded; after a failed run it is ignored, so that the stage's error stays the one
    /// to act on.
    fn run_finished(
        &self,
        _record: &RunRecord,
        _run_dir: &Path,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// A reporter that shows nothing.
pub struct Silent;

impl ProgressSink for Silent {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _text: &str) {}
}

impl Reporter for Silent {
    fn stage_started(&self, _stage: &Stage, _index: usize, _total: usize) {}
    fn progress(&self) -> &dyn ProgressSink {
        self
    }
    fn waiting(&self, _stage: &Stage) {}
    fn stage_finished(&self, _stage: &Stage, _cache: CacheUse, _seconds: f64) {}
    fn stage_failed(&self, _stage: &Stage, _error: &str) {}
}
