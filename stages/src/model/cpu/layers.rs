//! dfdx layers (`Module`s with parameter visiting) over the custom ops: 3x3 conv + ReLU,
//! max-pool 2x2, average pool and flatten, NHWC with compile-time shapes.

use super::ops::{
    try_avg_pool, try_conv3x3, try_flatten, try_max_pool2x2, Activation, Conv3x3Kernel,
    ConvAlgorithm, Flat, Nhwc, Pool2dKernel,
};
use dfdx::nn::modules::*;
use dfdx::prelude::*;

/// 3x3 convolution (stride 1, padding 1) with bias, followed by ReLU: one VGG unit.
///
/// `weight` is OIHW `[CO, CI, 3, 3]` like PyTorch's `Conv2d.weight`; inputs are NHWC.
/// Parameters start at zero: initialise them with [`crate::model::init`] or load them.
#[derive(Debug, Clone)]
pub struct Conv3x3Relu<const CI: usize, const CO: usize, E: Dtype, D: Storage<E>> {
    pub weight: Tensor<Rank4<CO, CI, 3, 3>, E, D>,
    pub bias: Tensor<Rank1<CO>, E, D>,
}

impl<const CI: usize, const CO: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for Conv3x3Relu<CI, CO, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv3x3Relu<CI, CO, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(weight, bias)| Conv3x3Relu { weight, bias },
        )
    }
}

impl<const CI: usize, const CO: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for Conv3x3Relu<CI, CO, E, D>
{
}

impl<const CI: usize, const CO: usize, D: Device<f32> + Conv3x3Kernel<f32>>
    Conv3x3Relu<CI, CO, f32, D>
{
    /// The layer's output with the forward pass computed by `algorithm` (the `Module`
    /// implementation uses [`ConvAlgorithm::Direct`]).
    pub fn try_forward_with<B: Dim, const H: usize, const W: usize, T>(
        &self,
        x: Nhwc<B, H, W, CI, D, T>,
        algorithm: ConvAlgorithm,
    ) -> Result<Nhwc<B, H, W, CO, D, T>, D::Err>
    where
        T: Tape<f32, D> + Merge<T>,
    {
        try_conv3x3(
            x,
            self.weight.retaped::<T>(),
            self.bias.retaped::<T>(),
            Activation::Relu,
            algorithm,
        )
    }
}

impl<B: Dim, const H: usize, const W: usize, const CI: usize, const CO: usize, D, T>
    Module<Nhwc<B, H, W, CI, D, T>> for Conv3x3Relu<CI, CO, f32, D>
where
    D: Device<f32> + Conv3x3Kernel<f32>,
    T: Tape<f32, D> + Merge<T>,
{
    type Output = Nhwc<B, H, W, CO, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Nhwc<B, H, W, CI, D, T>) -> Result<Self::Output, D::Err> {
        self.try_forward_with(x, ConvAlgorithm::Direct)
    }
}

/// Max-pool 2x2, stride 2, floor, to the named output size `OH x OW` (checked at build time).
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPool2x2<const OH: usize, const OW: usize>;

impl<const OH: usize, const OW: usize> ZeroSizedModule for MaxPool2x2<OH, OW> {}
impl<const OH: usize, const OW: usize> NonMutableModule for MaxPool2x2<OH, OW> {}

impl<
        B: Dim,
        const H: usize,
        const W: usize,
        const C: usize,
        const OH: usize,
        const OW: usize,
        D,
        T,
    > Module<Nhwc<B, H, W, C, D, T>> for MaxPool2x2<OH, OW>
where
    D: Pool2dKernel<f32>,
    T: Tape<f32, D>,
{
    type Output = Nhwc<B, OH, OW, C, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Nhwc<B, H, W, C, D, T>) -> Result<Self::Output, D::Err> {
        try_max_pool2x2(x)
    }
}

/// Average-pool `K x K`, stride `K`, floor, to the named output size (checked at build time).
#[derive(Debug, Clone, Copy, Default)]
pub struct AvgPool<const K: usize, const OH: usize, const OW: usize>;

impl<const K: usize, const OH: usize, const OW: usize> ZeroSizedModule for AvgPool<K, OH, OW> {}
impl<const K: usize, const OH: usize, const OW: usize> NonMutableModule for AvgPool<K, OH, OW> {}

impl<
        B: Dim,
        const K: usize,
        const H: usize,
        const W: usize,
        const C: usize,
        const OH: usize,
        const OW: usize,
        D,
        T,
    > Module<Nhwc<B, H, W, C, D, T>> for AvgPool<K, OH, OW>
where
    D: Pool2dKernel<f32>,
    T: Tape<f32, D>,
{
    type Output = Nhwc<B, OH, OW, C, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Nhwc<B, H, W, C, D, T>) -> Result<Self::Output, D::Err> {
        try_avg_pool::<B, K, H, W, C, OH, OW, D, T>(x)
    }
}

/// Flattens NHWC `[B, H, W, C]` to `[B, F]` (`F = H * W * C`, checked at build time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten<const F: usize>;

impl<const F: usize> ZeroSizedModule for Flatten<F> {}
impl<const F: usize> NonMutableModule for Flatten<F> {}

impl<B: Dim, const H: usize, const W: usize, const C: usize, const F: usize, D, T>
    Module<Nhwc<B, H, W, C, D, T>> for Flatten<F>
where
    D: Device<f32>,
    T: Tape<f32, D>,
{
    type Output = Flat<B, F, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Nhwc<B, H, W, C, D, T>) -> Result<Self::Output, D::Err> {
        try_flatten(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::ops::test_util::data;
    use dfdx::optim::{Adam, AdamConfig, Optimizer};

    #[test]
    fn layers_compose_as_a_dfdx_tuple_and_train_with_adam() {
        let dev = Cpu::default();
        type Net = (
            Conv3x3Relu<2, 4, f32, Cpu>,
            MaxPool2x2<2, 2>,
            AvgPool<2, 1, 1>,
            Flatten<4>,
        );
        let mut net: Net = BuildModule::build(&dev);
        net.0.weight.copy_from(&data(4 * 2 * 9, 7));
        net.0.bias.copy_from(&[0.1, 0.2, 0.3, 0.4]);
        let x = dev.tensor_from_vec(
            data(3 * 5 * 5 * 2, 8),
            (Const::<3>, Const::<5>, Const::<5>, Const::<2>),
        );
        let target: Tensor<Rank2<3, 4>, f32, Cpu> = dev.ones();
        let mut opt = Adam::new(
            &net,
            AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
        );
        let mut grads = net.alloc_grads();
        let mut losses = Vec::new();
        for _ in 0..20 {
            let y = net.forward_mut(x.trace(grads));
            let loss = mse_loss(y, target.clone());
            losses.push(loss.array());
            grads = loss.backward();
            opt.update(&mut net, &grads).unwrap();
            net.zero_grads(&mut grads);
        }
        assert!(
            losses[19] < 0.5 * losses[0],
            "Adam did not reduce the loss: {losses:?}"
        );
    }
}
