//! The run layer: running an experiment against an artifacts directory, and the questions and
//! chores that need the same view of it. Read bottom-up: [`error`] and [`store`] (the
//! artifacts directory: cache, runs and remote), [`reporter`] (what a run tells as it goes),
//! [`fingerprint`] and `inputs` (what a stage's key is made of), `pushes` (uploads to the
//! remote), [`execute`] (the run loop), [`plan`] and [`status`] (what a run would do, without
//! running), [`gc`] (what no kept run needs any more, removed).

pub mod error;
pub mod execute;
pub mod fingerprint;
pub mod gc;
pub(crate) mod inputs;
pub mod plan;
mod pushes;
pub mod reporter;
pub mod status;
pub mod store;
