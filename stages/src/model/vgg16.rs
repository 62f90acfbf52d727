//! The VGG16 convolutional base (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks
//! for Large-Scale Image Recognition", configuration D without its classifier).
//!
//! [`VGG16_FEATURES`] is the single layer table (torchvision `features` index, Keras name,
//! channels, tensor names): summaries, checkpoints and weight loading all read it, and a
//! second backend can too. [`Vgg16Features`] holds the 13 convolutions' parameters;
//! [`Vgg16Base`] runs them for one input size named by its pooled sizes `S1..S5`, every
//! intermediate shape checked at build time.

use super::layers::{Conv3x3Relu, MaxPool2x2};
use super::ops::{Conv3x3Kernel, ConvAlgorithm, Nhwc, Pool2dKernel};
use dfdx::nn::modules::*;
use dfdx::prelude::*;

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

/// Object-safe access to one convolution's parameters as flat f32 slices (OIHW weight,
/// bias), for loading, saving and initialising by table row.
pub trait ConvParams {
    fn shape(&self) -> (usize, usize);
    fn weight_vec(&self) -> Vec<f32>;
    fn bias_vec(&self) -> Vec<f32>;
    fn set(&mut self, weight: &[f32], bias: &[f32]);
}

impl<const CI: usize, const CO: usize> ConvParams for Conv3x3Relu<CI, CO, f32, Cpu> {
    fn shape(&self) -> (usize, usize) {
        (CI, CO)
    }
    fn weight_vec(&self) -> Vec<f32> {
        let mut v = vec![0.0; CO * CI * 9];
        self.weight.copy_into(&mut v);
        v
    }
    fn bias_vec(&self) -> Vec<f32> {
        let mut v = vec![0.0; CO];
        self.bias.copy_into(&mut v);
        v
    }
    fn set(&mut self, weight: &[f32], bias: &[f32]) {
        self.weight.copy_from(weight);
        self.bias.copy_from(bias);
    }
}

/// The 13 convolutions of the VGG16 base (field names follow Keras' blocks).
#[derive(Debug, Clone)]
pub struct Vgg16Features<E: Dtype, D: Storage<E>> {
    pub conv1_1: Conv3x3Relu<3, 64, E, D>,
    pub conv1_2: Conv3x3Relu<64, 64, E, D>,
    pub conv2_1: Conv3x3Relu<64, 128, E, D>,
    pub conv2_2: Conv3x3Relu<128, 128, E, D>,
    pub conv3_1: Conv3x3Relu<128, 256, E, D>,
    pub conv3_2: Conv3x3Relu<256, 256, E, D>,
    pub conv3_3: Conv3x3Relu<256, 256, E, D>,
    pub conv4_1: Conv3x3Relu<256, 512, E, D>,
    pub conv4_2: Conv3x3Relu<512, 512, E, D>,
    pub conv4_3: Conv3x3Relu<512, 512, E, D>,
    pub conv5_1: Conv3x3Relu<512, 512, E, D>,
    pub conv5_2: Conv3x3Relu<512, 512, E, D>,
    pub conv5_3: Conv3x3Relu<512, 512, E, D>,
}

impl Vgg16Features<f32, Cpu> {
    /// Keras-default initialisation from `seed`: Glorot-uniform kernels, zero biases
    /// (see [`super::init`]).
    pub fn glorot(dev: &Cpu, seed: u64) -> Self {
        Self::random(dev, seed, super::init::conv_kernel)
    }

    /// He-uniform kernels, zero biases (see [`super::init::conv_kernel_he`]).
    pub fn he(dev: &Cpu, seed: u64) -> Self {
        Self::random(dev, seed, super::init::conv_kernel_he)
    }

    fn random(dev: &Cpu, seed: u64, kernel: fn(u64, &str, usize, usize) -> Vec<f32>) -> Self {
        let mut f: Self = BuildModule::build(dev);
        for (layer, conv) in conv_layers().zip(f.convs_mut()) {
            if let FeatureKind::Conv {
                c_in,
                c_out,
                weight,
                ..
            } = layer.kind
            {
                conv.set(&kernel(seed, weight, c_in, c_out), &vec![0.0; c_out]);
            }
        }
        f
    }

    /// The convolutions in table order ([`conv_layers`]).
    pub fn convs(&self) -> [&dyn ConvParams; 13] {
        [
            &self.conv1_1,
            &self.conv1_2,
            &self.conv2_1,
            &self.conv2_2,
            &self.conv3_1,
            &self.conv3_2,
            &self.conv3_3,
            &self.conv4_1,
            &self.conv4_2,
            &self.conv4_3,
            &self.conv5_1,
            &self.conv5_2,
            &self.conv5_3,
        ]
    }

    /// The convolutions in table order, mutable.
    pub fn convs_mut(&mut self) -> [&mut dyn ConvParams; 13] {
        [
            &mut self.conv1_1,
            &mut self.conv1_2,
            &mut self.conv2_1,
            &mut self.conv2_2,
            &mut self.conv3_1,
            &mut self.conv3_2,
            &mut self.conv3_3,
            &mut self.conv4_1,
            &mut self.conv4_2,
            &mut self.conv4_3,
            &mut self.conv5_1,
            &mut self.conv5_2,
            &mut self.conv5_3,
        ]
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for Vgg16Features<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Vgg16Features<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // Module names are torchvision's, so dfdx's own visitors see `features.0.weight`...
        visitor.visit_fields(
            (
                (
                    Self::module("features.0", |s| &s.conv1_1, |s| &mut s.conv1_1),
                    Self::module("features.2", |s| &s.conv1_2, |s| &mut s.conv1_2),
                    Self::module("features.5", |s| &s.conv2_1, |s| &mut s.conv2_1),
                    Self::module("features.7", |s| &s.conv2_2, |s| &mut s.conv2_2),
                ),
                (
                    Self::module("features.10", |s| &s.conv3_1, |s| &mut s.conv3_1),
                    Self::module("features.12", |s| &s.conv3_2, |s| &mut s.conv3_2),
                    Self::module("features.14", |s| &s.conv3_3, |s| &mut s.conv3_3),
                ),
                (
                    Self::module("features.17", |s| &s.conv4_1, |s| &mut s.conv4_1),
                    Self::module("features.19", |s| &s.conv4_2, |s| &mut s.conv4_2),
                    Self::module("features.21", |s| &s.conv4_3, |s| &mut s.conv4_3),
                ),
                (
                    Self::module("features.24", |s| &s.conv5_1, |s| &mut s.conv5_1),
                    Self::module("features.26", |s| &s.conv5_2, |s| &mut s.conv5_2),
                    Self::module("features.28", |s| &s.conv5_3, |s| &mut s.conv5_3),
                ),
            ),
            |(
                (conv1_1, conv1_2, conv2_1, conv2_2),
                (conv3_1, conv3_2, conv3_3),
                (conv4_1, conv4_2, conv4_3),
                (conv5_1, conv5_2, conv5_3),
            )| {
                Vgg16Features {
                    conv1_1,
                    conv1_2,
                    conv2_1,
                    conv2_2,
                    conv3_1,
                    conv3_2,
                    conv3_3,
                    conv4_1,
                    conv4_2,
                    conv4_3,
                    conv5_1,
                    conv5_2,
                    conv5_3,
                }
            },
        )
    }
}

/// The VGG16 base for one input size: `S0 -> S1 -> .. -> S5` after each max-pool. Each pool
/// checks `S(i+1) = S(i) / 2` at build time, so a wrong size list does not compile.
#[derive(Debug, Clone)]
pub struct Vgg16Base<
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    E: Dtype,
    D: Storage<E>,
> {
    pub features: Vgg16Features<E, D>,
    /// How the forward pass computes the convolutions. Not a parameter: rebuilding the base
    /// through dfdx's visitors (`to_device` and the like) resets it to the default.
    pub conv: ConvAlgorithm,
}

impl<
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        E: Dtype,
        D: Device<E>,
    > TensorCollection<E, D> for Vgg16Base<S1, S2, S3, S4, S5, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Vgg16Base<S1, S2, S3, S4, S5, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::module("", |s| &s.features, |s| &mut s.features),
            |features| Vgg16Base {
                features,
                conv: ConvAlgorithm::default(),
            },
        )
    }
}

impl<
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        E: Dtype,
        D: Storage<E>,
    > NonMutableModule for Vgg16Base<S1, S2, S3, S4, S5, E, D>
{
}

impl<
        B: Dim,
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        D,
        T,
    > Module<Nhwc<B, S0, S0, 3, D, T>> for Vgg16Base<S1, S2, S3, S4, S5, f32, D>
where
    D: Device<f32> + Conv3x3Kernel<f32> + Pool2dKernel<f32>,
    T: Tape<f32, D> + Merge<T>,
{
    type Output = Nhwc<B, S5, S5, VGG16_OUT_CHANNELS, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Nhwc<B, S0, S0, 3, D, T>) -> Result<Self::Output, D::Err> {
        let (f, a) = (&self.features, self.conv);
        let x = f.conv1_1.try_forward_with(x, a)?;
        let x = f.conv1_2.try_forward_with(x, a)?;
        let x = MaxPool2x2::<S1, S1>.try_forward(x)?;
        let x = f.conv2_1.try_forward_with(x, a)?;
        let x = f.conv2_2.try_forward_with(x, a)?;
        let x = MaxPool2x2::<S2, S2>.try_forward(x)?;
        let x = f.conv3_1.try_forward_with(x, a)?;
        let x = f.conv3_2.try_forward_with(x, a)?;
        let x = f.conv3_3.try_forward_with(x, a)?;
        let x = MaxPool2x2::<S3, S3>.try_forward(x)?;
        let x = f.conv4_1.try_forward_with(x, a)?;
        let x = f.conv4_2.try_forward_with(x, a)?;
        let x = f.conv4_3.try_forward_with(x, a)?;
        let x = MaxPool2x2::<S4, S4>.try_forward(x)?;
        let x = f.conv5_1.try_forward_with(x, a)?;
        let x = f.conv5_2.try_forward_with(x, a)?;
        let x = f.conv5_3.try_forward_with(x, a)?;
        MaxPool2x2::<S5, S5>.try_forward(x)
    }
}

/// The base at the seed's input size, 237: 237 -> 118 -> 59 -> 29 -> 14 -> 7.
pub type Vgg16Base237 = Vgg16Base<118, 59, 29, 14, 7, f32, Cpu>;
/// The base at ImageNet's 224: 224 -> 112 -> 56 -> 28 -> 14 -> 7.
pub type Vgg16Base224 = Vgg16Base<112, 56, 28, 14, 7, f32, Cpu>;
/// A small base for fast tests, 32: 32 -> 16 -> 8 -> 4 -> 2 -> 1.
pub type Vgg16Base32 = Vgg16Base<16, 8, 4, 2, 1, f32, Cpu>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_parameter_struct_and_keras_count() {
        assert_eq!(VGG16_BASE_PARAMS, 14_714_688);
        let dev = Cpu::default();
        let f: Vgg16Features<f32, Cpu> = BuildModule::build(&dev);
        let shapes: Vec<(usize, usize)> = f.convs().iter().map(|c| c.shape()).collect();
        let table: Vec<(usize, usize)> = conv_layers()
            .map(|l| match l.kind {
                FeatureKind::Conv { c_in, c_out, .. } => (c_in, c_out),
                FeatureKind::MaxPool => unreachable!(),
            })
            .collect();
        assert_eq!(shapes, table);
        assert_eq!(f.num_trainable_params(), VGG16_BASE_PARAMS);
        for l in conv_layers() {
            if let FeatureKind::Conv { weight, bias, .. } = l.kind {
                assert_eq!(weight, format!("features.{}.weight", l.index));
                assert_eq!(bias, format!("features.{}.bias", l.index));
            }
        }
    }
}
