//! 3x3 convolution, stride 1, padding 1, with bias and an optional fused ReLU, as a dfdx
//! operation on NHWC tensors with compile-time shapes (forward and backward).
//!
//! dfdx 0.13's own conv2d needs nightly; this one uses only dfdx's public API (split_tape,
//! `Tape::add_backward_op`, `Gradients::get_or_alloc_mut`) and works in any dfdx graph.

mod cpu_kernel;
#[cfg(test)]
mod tests;
mod winograd;
mod winograd_weight_grad;

#[cfg(test)]
use cpu_kernel::oihw_to_gemm;

use dfdx::prelude::*;

/// The activation fused into the convolution's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// No activation: `y = conv(x, w) + b`.
    Identity,
    /// `y = max(0, conv(x, w) + b)`; the backward pass masks with `y > 0`.
    Relu,
}

pub use crate::model::spec::ConvAlgorithm;

/// Narrowest input for which [`ConvAlgorithm::Winograd`] is used: below it (VGG16's first
/// layer, 3 channels) the transforms cost more than the multiplications they save.
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Shapes of one convolution in NHWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
}

/// Runtime description of one convolution, handed to the device kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3x3Op {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub relu: bool,
    pub algorithm: ConvAlgorithm,
}

impl Conv3x3Op {
    pub(crate) fn dims(&self) -> Dims {
        Dims {
            batch: self.batch,
            h: self.h,
            w: self.w,
            c_in: self.c_in,
            c_out: self.c_out,
        }
    }
}

/// What a dfdx device provides to run the convolution (implemented for `Cpu`).
///
/// Tensors are contiguous: `x` NHWC `[batch, h, w, c_in]`, `w` OIHW `[c_out, c_in, 3, 3]`,
/// `b` `[c_out]`, output NHWC `[batch, h, w, c_out]`.
pub trait Conv3x3Kernel<E: Dtype>: Storage<E> {
    /// Computes the output tensor.
    fn conv3x3_forward<X: Shape, W: Shape, B: Shape, O: Shape>(
        &self,
        op: Conv3x3Op,
        x: &Tensor<X, E, Self>,
        w: &Tensor<W, E, Self>,
        b: &Tensor<B, E, Self>,
        out_shape: O,
    ) -> Result<Tensor<O, E, Self>, Self::Err>;

    /// Adds the gradients of `x`, `w` and `b` into `grads`, reading the gradient of `out`
    /// (which must be left in place, unchanged).
    #[allow(clippy::too_many_arguments)]
    fn conv3x3_backward<X: Shape, W: Shape, B: Shape, O: Shape>(
        &self,
        op: Conv3x3Op,
        x: &Tensor<X, E, Self>,
        w: &Tensor<W, E, Self>,
        b: &Tensor<B, E, Self>,
        out: &Tensor<O, E, Self>,
        grads: &mut Gradients<E, Self>,
    ) -> Result<(), Self::Err>;
}

/// NHWC image batch with compile-time spatial size and channels.
pub type Nhwc<B, const H: usize, const W: usize, const C: usize, D, T> =
    Tensor<(B, Const<H>, Const<W>, Const<C>), f32, D, T>;

/// 3x3 convolution (stride 1, padding 1) of `x` with OIHW `w` and bias `b`, then `act`,
/// computed forward with `algorithm`.
///
/// Gradients flow to `x`, `w` and `b` through the tape they carry (give parameters the
/// input's tape type with `retaped`, as dfdx's `Linear` does).
pub fn try_conv3x3<B: Dim, const H: usize, const W: usize, const CI: usize, const CO: usize, D, T>(
    x: Nhwc<B, H, W, CI, D, T>,
    w: Tensor<Rank4<CO, CI, 3, 3>, f32, D, T>,
    b: Tensor<Rank1<CO>, f32, D, T>,
    act: Activation,
    algorithm: ConvAlgorithm,
) -> Result<Nhwc<B, H, W, CO, D, T>, D::Err>
where
    D: Conv3x3Kernel<f32>,
    T: Tape<f32, D> + Merge<T>,
{
    const {
        assert!(
            H > 0 && W > 0 && CI > 0 && CO > 0,
            "conv3x3 needs non-empty shapes"
        );
    }
    let (batch, _, _, _) = *x.shape();
    let op = Conv3x3Op {
        batch: batch.size(),
        h: H,
        w: W,
        c_in: CI,
        c_out: CO,
        relu: act == Activation::Relu,
        algorithm,
    };
    let (x, x_tape) = x.split_tape();
    let (w, w_tape) = w.split_tape();
    let (b, b_tape) = b.split_tape();
    let out_shape = (batch, Const::<H>, Const::<W>, Const::<CO>);
    let out = x.device().conv3x3_forward(op, &x, &w, &b, out_shape)?;
    let mut tape = x_tape.merge(w_tape).merge(b_tape);
    if T::OWNS_TAPE {
        let out_saved = out.clone();
        tape.add_backward_op(move |grads| {
            x.device()
                .clone()
                .conv3x3_backward(op, &x, &w, &b, &out_saved, grads)
        });
    }
    Ok(out.put_tape(tape))
}
