//! The VGG16 base as dfdx modules, following the layer table
//! ([`crate::model::vgg16::VGG16_FEATURES`]): [`Vgg16Features`] holds the 13 convolutions'
//! parameters; [`Vgg16Base`] runs them for one input size named by its pooled sizes
//! `S1..S5`, every intermediate shape checked at build time.

use super::layers::{Conv3x3Relu, MaxPool2x2};
use super::ops::{Conv3x3Kernel, ConvAlgorithm, Nhwc, Pool2dKernel};
use crate::model::vgg16::VGG16_OUT_CHANNELS;
use dfdx::nn::modules::*;
use dfdx::prelude::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vgg16::{conv_layers, FeatureKind, VGG16_BASE_PARAMS};

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
