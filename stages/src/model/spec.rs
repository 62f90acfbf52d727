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

/// The classification head: dense `units` + ReLU, dropout, then for two classes dense 1 (a
/// logit, the seed's `Dense(1, "sigmoid")`), for `C >= 3` classes dense `C` (logits, softmax).
/// Only supported widths, dropout rates in [0, 1) and at least two classes can be made
/// ([`HeadSpec::new`], [`HeadSpec::with_classes`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadSpec {
    units: usize,
    dropout: f32,
    classes: usize,
}

impl HeadSpec {
    /// A two-class head (the seed's).
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
        Ok(Self {
            units,
            dropout,
            classes: 2,
        })
    }

    /// The same head for `classes` classes (at least 2).
    pub fn with_classes(self, classes: usize) -> Result<Self, ModelError> {
        if classes < 2 {
            return Err(ModelError::TooFewClasses(classes));
        }
        Ok(Self { classes, ..self })
    }

    pub fn units(&self) -> usize {
        self.units
    }

    /// Dropout rate after the hidden layer, active in training only.
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// How many classes the head tells apart.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Width of the last dense layer: 1 (a logit) for two classes, else one logit per class.
    pub fn outputs(&self) -> usize {
        outputs_for(self.classes)
    }

    /// Whether the head is the seed's Dense(1) + sigmoid (two classes).
    pub fn is_binary(&self) -> bool {
        self.classes == 2
    }

    /// Number of parameters (all trainable): `512 U + U + O U + O` for `O` outputs.
    pub fn num_params(&self) -> usize {
        HEAD_INPUTS * self.units + self.units + self.outputs() * (self.units + 1)
    }
}

/// The classes of a model that names none: the seed's pair, class 0 first (model1's
/// `load.classes`). A checkpoint of these classes does not record them, so that the seed's
/// checkpoints keep their bytes.
pub const DEFAULT_CLASSES: [&str; 2] = ["NORMAL", "COVID"];

/// [`DEFAULT_CLASSES`] as owned names.
pub fn default_classes() -> Vec<String> {
    DEFAULT_CLASSES.map(String::from).to_vec()
}

/// Why `names` cannot name a model's classes (at least two, none empty, no two alike), or
/// `None`.
pub fn class_names_problem(names: &[String]) -> Option<String> {
    if names.len() < 2 {
        return Some(format!("needs at least 2 class names, got {}", names.len()));
    }
    if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
        return Some(format!("class {i} has an empty name"));
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|m| m == name) {
            return Some(format!("classes {j} and {i} are both named `{name}`"));
        }
    }
    None
}

/// Width of the last dense layer for `classes` classes: 1 for two, else `classes`.
pub fn outputs_for(classes: usize) -> usize {
    if classes == 2 {
        1
    } else {
        classes
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
