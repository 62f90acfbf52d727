//! Data stages: loading images into arrays, normalising pixels, splitting train and test.

mod decode;
pub mod load;
pub mod memory_budget;
pub mod normalize;
pub mod resize;
pub mod split;

pub use decode::{load_image, DecodeError};
