//! The VGG16 model on dfdx (issue 4).

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod head;
pub mod init;
pub mod layers;
pub mod network;
pub mod ops;
pub mod size;
pub mod stage;
pub mod summary;
pub mod vgg16;

pub use error::ModelError;

#[cfg(test)]
mod tests;
