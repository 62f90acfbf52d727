//! Tensor operations dfdx 0.13 lacks on stable Rust, with their CPU kernels: 3x3 convolution,
//! max/average pooling and flattening, all on NHWC tensors with compile-time shapes.
//!
//! Each operation is a folder after dfdx's layout: `mod.rs` holds the public function, the
//! plain op struct and the device-kernel trait; `cpu_kernel.rs` the CPU implementation;
//! `tests.rs` checks against naive loops and finite differences. These run inside dfdx's
//! graph on its `Cpu` device only (dfdx 0.13 keeps a `Cuda` tensor's memory private): another
//! device is a backend of its own behind [`crate::model::backend`], not a kernel here.

pub mod conv3x3;
mod gemm;
pub mod pool2d;

pub use conv3x3::{
    try_conv3x3, Activation, Conv3x3Kernel, Conv3x3Op, ConvAlgorithm, Nhwc, WINOGRAD_MIN_CHANNELS,
};
pub use pool2d::{try_avg_pool, try_max_pool2x2, Pool2dKernel, Pool2dOp, PoolKind};

use dfdx::prelude::*;

/// A batch of flat feature vectors `[B, F]`.
pub type Flat<B, const F: usize, D, T> = Tensor<(B, Const<F>), f32, D, T>;

/// Flattens NHWC `[B, H, W, C]` to `[B, F]` in (h, w, c) order, `F = H * W * C` checked at
/// build time. Keras' `Flatten` on channels-last data uses the same order; PyTorch's
/// `flatten` of NCHW uses (c, h, w), which is the same whenever `H = W = 1`.
pub fn try_flatten<B: Dim, const H: usize, const W: usize, const C: usize, const F: usize, D, T>(
    x: Nhwc<B, H, W, C, D, T>,
) -> Result<Flat<B, F, D, T>, D::Err>
where
    D: Device<f32>,
    T: Tape<f32, D>,
{
    const {
        assert!(F == H * W * C, "flatten size must be H * W * C");
    }
    let (batch, _, _, _) = *x.shape();
    x.try_reshape_like(&(batch, Const::<F>))
}

#[cfg(test)]
pub(crate) mod test_util;
