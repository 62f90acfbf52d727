//! What network a backend is asked to build: input size, head pooling, convolution
//! algorithm, and the head's width and dropout. Plain values, the same for every backend.

use super::error::ModelError;
use super::size::{ImageSize, Pooling};

/// How the base's 3x3 convolutions are computed, forward and backward. Both compute the same
/// function; they differ in speed and in rounding. Recorded in checkpoints, so a model is
/// always run the way it was trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgorithm {
    /// im2col + gemm: every product of the sum, as PyTorch's and Keras' CPU convolutions do.
    #[default]
    Direct,
    /// Winograd F(4x4, 3x3) on layers wide enough for it (narrower ones run direct): 2.25
    /// multiplications per output instead of 9. Rounding error about ten times the direct
    /// kernel's (a few 1e-6 of the output scale). The backward pass (input and weight
    /// gradients) uses it too where both sides are wide enough.
    Winograd,
}

impl ConvAlgorithm {
    /// Names as written in experiment files and checkpoint metadata.
    pub const NAMES: [&'static str; 2] = ["direct", "winograd"];

    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Direct => "direct",
            ConvAlgorithm::Winograd => "winograd",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(ConvAlgorithm::Direct),
            "winograd" => Some(ConvAlgorithm::Winograd),
            _ => None,
        }
    }
}

/// The VGG16 base as one input size, pooling and convolution algorithm: everything but its
/// weights. Only combinations that fit can be made ([`NetworkSpec::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetworkSpec {
    size: ImageSize,
    pooling: Pooling,
    conv: ConvAlgorithm,
}

impl NetworkSpec {
    /// Checks that `pooling` fits `size`'s base output.
    pub fn new(size: ImageSize, pooling: Pooling, conv: ConvAlgorithm) -> Result<Self, ModelError> {
        pooling.pooled_side(size)?;
        Ok(Self {
            size,
            pooling,
            conv,
        })
    }

    pub fn size(&self) -> ImageSize {
        self.size
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn conv(&self) -> ConvAlgorithm {
        self.conv
    }

    /// The same network computed with another convolution algorithm.
    pub fn with_conv(self, conv: ConvAlgorithm) -> Self {
        Self { conv, ..self }
    }

    /// Values per input image (NHWC, `size x size x 3`).
    pub fn image_len(&self) -> usize {
        self.size.pixels() * self.size.pixels() * 3
    }
}

/// Checks that `got` values are `n` NHWC images of `side x side x 3`: the one check of an
/// image batch's length, made by every backend before it runs one.
pub fn check_image_len(got: usize, n: usize, side: usize) -> Result<(), ModelError> {
    let expected = n * side * side * 3;
    if got != expected {
        return Err(ModelError::InputLength {
            what: "images",
            got,
            expected,
            detail: format!("{n} NHWC images of {side}x{side}x3"),
        });
    }
    Ok(())
}

/// Hidden widths of the head that every backend provides (the CPU backend compiles one
/// head per width, since dfdx parameter tensors need constant shapes).
pub const SUPPORTED_UNITS: [usize; 6] = [16, 32, 64, 128, 256, 512];

/// The classification head: dense `units` + ReLU, dropout, dense 1 (a logit). Only supported
/// widths and dropout rates in [0, 1) can be made ([`HeadSpec::new`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadSpec {
    units: usize,
    dropout: f32,
}

impl HeadSpec {
    pub fn new(units: usize, dropout: f32) -> Result<Self, ModelError> {
        if !SUPPORTED_UNITS.contains(&units) {
            return Err(ModelError::UnsupportedUnits {
                units,
                supported: SUPPORTED_UNITS.map(|u| u.to_string()).join(", "),
            });
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelError::InvalidDropout(dropout));
        }
        Ok(Self { units, dropout })
    }

    pub fn units(&self) -> usize {
        self.units
    }

    /// Dropout rate after the hidden layer, active in training only.
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// Number of parameters (all trainable): `512 U + U + U + 1`.
    pub fn num_params(&self) -> usize {
        HEAD_INPUTS * self.units + 2 * self.units + 1
    }
}

/// Input width of the head: the pooled, flattened base output.
pub const HEAD_INPUTS: usize = super::vgg16::VGG16_OUT_CHANNELS;

/// Adam's settings for a trainer (Keras' names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamSettings {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Keras' default is 1e-7 (PyTorch's 1e-8).
    pub epsilon: f64,
}

impl Default for AdamSettings {
    /// Keras' defaults.
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}
