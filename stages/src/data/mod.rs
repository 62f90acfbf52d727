//! Data stages: loading images into arrays, normalising pixels, splitting train and test.

mod decode;
pub mod load;
pub mod normalize;
mod resize;
pub mod split;

pub use decode::{load_image, DecodeError};
