//! `pipeline status`: which stages have a cached result, and for the others, why not,
//! explained against the cache: the closest cached result of each stage, whatever run made
//! it ([`super::plan`]). Nothing in the store changes.

use std::path::Path;

use super::error::RunError;
use super::plan::{Planner, StagePlan};
use super::store::Store;
use crate::experiment::kind::Registry;
use crate::experiment::Experiment;

pub use super::plan::PlanState;

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
