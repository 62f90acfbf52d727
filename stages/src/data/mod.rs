//! Data stages: loading images into arrays, normalising pixels, splitting train and test.

mod decode;
mod image_error;
mod image_file;
pub mod load;
pub mod memory_budget;
pub mod normalize;
pub mod resize;
pub mod split;
mod truncation;

pub use decode::{load_image, load_image_with, DecodeOptions};
pub use image_error::{DecodeError, MAX_DECODED_BYTES, MAX_IMAGE_PIXELS};
pub use image_file::{read_image_file, MAX_FILE_BYTES};
