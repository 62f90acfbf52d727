//! The VGG16 model on dfdx (issue 4).

pub mod error;
pub mod head;
pub mod init;
pub mod layers;
pub mod ops;
pub mod size;
pub mod vgg16;
