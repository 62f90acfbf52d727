//! The VGG16 convolutional base (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks
//! for Large-Scale Image Recognition", configuration D without its classifier), as a table.
//!
//! [`VGG16_FEATURES`] is the single layer table (torchvision `features` index, Keras name,
//! channels, tensor names): summaries, checkpoints, weight loading and every backend read it.

/// What a row of the VGG16 feature table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    /// 3x3 convolution, stride 1, padding 1, then ReLU. Tensors `weight` (OIHW
    /// `[c_out, c_in, 3, 3]`, f32) and `bias` (`[c_out]`).
    Conv {
        c_in: usize,
        c_out: usize,
        weight: &'static str,
        bias: &'static str,
    },
    /// Max-pool 2x2, stride 2, floor.
    MaxPool,
}

/// One layer of the VGG16 base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureLayer {
    /// Index in torchvision's `vgg16().features` (ReLUs sit at the odd indices in between).
    pub index: usize,
    /// Keras' layer name (`block1_conv1`), used in the summary.
    pub name: &'static str,
    pub kind: FeatureKind,
}

impl FeatureLayer {
    /// Number of parameters (weights and biases).
    pub const fn num_params(&self) -> usize {
        match self.kind {
            FeatureKind::Conv { c_in, c_out, .. } => c_out * c_in * 9 + c_out,
            FeatureKind::MaxPool => 0,
        }
    }
}

const fn conv(
    index: usize,
    name: &'static str,
    c_in: usize,
    c_out: usize,
    weight: &'static str,
    bias: &'static str,
) -> FeatureLayer {
    FeatureLayer {
        index,
        name,
        kind: FeatureKind::Conv {
            c_in,
            c_out,
            weight,
            bias,
        },
    }
}

const fn pool(index: usize, name: &'static str) -> FeatureLayer {
    FeatureLayer {
        index,
        name,
        kind: FeatureKind::MaxPool,
    }
}

/// The VGG16 base, in order.
pub const VGG16_FEATURES: [FeatureLayer; 18] = [
    conv(
        0,
        "block1_conv1",
        3,
        64,
        "features.0.weight",
        "features.0.bias",
    ),
    conv(
        2,
        "block1_conv2",
        64,
        64,
        "features.2.weight",
        "features.2.bias",
    ),
    pool(4, "block1_pool"),
    conv(
        5,
        "block2_conv1",
        64,
        128,
        "features.5.weight",
        "features.5.bias",
    ),
    conv(
        7,
        "block2_conv2",
        128,
        128,
        "features.7.weight",
        "features.7.bias",
    ),
    pool(9, "block2_pool"),
    conv(
        10,
        "block3_conv1",
        128,
        256,
        "features.10.weight",
        "features.10.bias",
    ),
    conv(
        12,
        "block3_conv2",
        256,
        256,
        "features.12.weight",
        "features.12.bias",
    ),
    conv(
        14,
        "block3_conv3",
        256,
        256,
        "features.14.weight",
        "features.14.bias",
    ),
    pool(16, "block3_pool"),
    conv(
        17,
        "block4_conv1",
        256,
        512,
        "features.17.weight",
        "features.17.bias",
    ),
    conv(
        19,
        "block4_conv2",
        512,
        512,
        "features.19.weight",
        "features.19.bias",
    ),
    conv(
        21,
        "block4_conv3",
        512,
        512,
        "features.21.weight",
        "features.21.bias",
    ),
    pool(23, "block4_pool"),
    conv(
        24,
        "block5_conv1",
        512,
        512,
        "features.24.weight",
        "features.24.bias",
    ),
    conv(
        26,
        "block5_conv2",
        512,
        512,
        "features.26.weight",
        "features.26.bias",
    ),
    conv(
        28,
        "block5_conv3",
        512,
        512,
        "features.28.weight",
        "features.28.bias",
    ),
    pool(30, "block5_pool"),
];

/// Channels of the base's output.
pub const VGG16_OUT_CHANNELS: usize = 512;

/// Parameters of the whole base: 14,714,688.
pub const VGG16_BASE_PARAMS: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < VGG16_FEATURES.len() {
        total += VGG16_FEATURES[i].num_params();
        i += 1;
    }
    total
};

/// The conv rows of [`VGG16_FEATURES`], in order.
pub fn conv_layers() -> impl Iterator<Item = &'static FeatureLayer> {
    VGG16_FEATURES
        .iter()
        .filter(|l| matches!(l.kind, FeatureKind::Conv { .. }))
}
