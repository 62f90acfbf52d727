//! The domain of the pipeline: loading chest X-ray data, the VGG16 model, training,
//! metrics and figures. Plain functions and types; this crate knows nothing of the engine
//! that schedules and caches them.

pub mod arrays;
pub mod data;
pub mod evaluate;
pub mod features;
pub mod figures;
pub mod fit;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod predict;
pub mod progress;
#[cfg(test)]
pub(crate) mod test_skip;
pub mod train;
pub mod validate;
