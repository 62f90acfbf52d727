//! The VGG16 model on dfdx (issue 4).

pub mod ops;
