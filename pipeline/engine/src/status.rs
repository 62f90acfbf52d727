//! `pipeline status`: which stages have a cached result, and for the others, why not,
//! explained against the cache: the closest cached result of each stage, whatever run made
//! it ([`crate::plan`]). Nothing in the store changes.

use std::path::Path;

use crate::execute::{RunError, Store};
use crate::experiment::Experiment;
use crate::kind::Registry;
use crate::plan::{Planner, StagePlan};

pub use crate::plan::PlanState;

/// The plan of every stage of `exp`, with cached files checked byte for byte (as a run would
/// check them before reusing them).
pub fn status(
    exp: &Experiment,
    registry: &Registry,
    store: &Store,
    data_root: &Path,
) -> Result<Vec<StagePlan>, RunError> {
    let runs = store.runs.summaries()?;
    Planner::new(registry, store, data_root, &runs, true).plan(exp)
}
