//! 2d pooling with kernel = stride and floor sizing (no padding): max-pool and average-pool,
//! as dfdx operations on NHWC tensors with compile-time shapes (forward and backward).
//!
//! Stable Rust cannot compute `(H - K) / K + 1` in a type, so the caller names the output
//! size and an inline `const { assert!(..) }` checks it when the concrete instantiation is
//! built: a wrong pooled size is a build error (not caught by `cargo check`).

mod cpu_kernel;
#[cfg(test)]
mod tests;

use super::conv3x3::Nhwc;
use dfdx::prelude::*;

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum; the gradient goes to the first maximal element in row-major window order.
    Max,
    /// Arithmetic mean of the `k * k` window.
    Avg,
}

/// Runtime description of one pooling, handed to the device kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOp {
    pub kind: PoolKind,
    /// Window size and stride.
    pub k: usize,
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub oh: usize,
    pub ow: usize,
}

/// What a dfdx device provides to run pooling (implemented for `Cpu`). Tensors are
/// contiguous NHWC.
pub trait Pool2dKernel<E: Dtype>: Storage<E> {
    /// Computes the pooled tensor.
    fn pool2d_forward<X: Shape, O: Shape>(
        &self,
        op: Pool2dOp,
        x: &Tensor<X, E, Self>,
        out_shape: O,
    ) -> Result<Tensor<O, E, Self>, Self::Err>;

    /// Adds the gradient of `x` into `grads`, reading the gradient of `out`.
    fn pool2d_backward<X: Shape, O: Shape>(
        &self,
        op: Pool2dOp,
        x: &Tensor<X, E, Self>,
        out: &Tensor<O, E, Self>,
        grads: &mut Gradients<E, Self>,
    ) -> Result<(), Self::Err>;
}

fn try_pool<
    B: Dim,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
    D,
    T,
>(
    x: Nhwc<B, H, W, C, D, T>,
    kind: PoolKind,
    k: usize,
) -> Result<Nhwc<B, OH, OW, C, D, T>, D::Err>
where
    D: Pool2dKernel<f32>,
    T: Tape<f32, D>,
{
    let (batch, _, _, _) = *x.shape();
    let op = Pool2dOp {
        kind,
        k,
        batch: batch.size(),
        h: H,
        w: W,
        c: C,
        oh: OH,
        ow: OW,
    };
    let (x, mut tape) = x.split_tape();
    let out = x
        .device()
        .pool2d_forward(op, &x, (batch, Const::<OH>, Const::<OW>, Const::<C>))?;
    if T::OWNS_TAPE {
        let out_saved = out.clone();
        tape.add_backward_op(move |grads| {
            x.device()
                .clone()
                .pool2d_backward(op, &x, &out_saved, grads)
        });
    }
    Ok(out.put_tape(tape))
}

/// Max-pool 2x2, stride 2, floor: `OH = H / 2`, `OW = W / 2`, checked at build time.
///
/// ```
/// # use dfdx::prelude::*;
/// # use stages::model::cpu::ops::try_max_pool2x2;
/// let dev = Cpu::default();
/// let x = dev.zeros_like(&(2, Const::<7>, Const::<7>, Const::<3>));
/// let y = try_max_pool2x2::<_, 7, 7, 3, 3, 3, _, _>(x).unwrap(); // 7 -> 3 (floor)
/// assert_eq!(y.shape().1.size(), 3);
/// ```
/// A wrong output size does not build:
/// ```compile_fail
/// # use dfdx::prelude::*;
/// # use stages::model::cpu::ops::try_max_pool2x2;
/// let dev = Cpu::default();
/// let x = dev.zeros_like(&(2, Const::<7>, Const::<7>, Const::<3>));
/// let y = try_max_pool2x2::<_, 7, 7, 3, 4, 4, _, _>(x).unwrap(); // 7 -> 4: rejected
/// ```
pub fn try_max_pool2x2<
    B: Dim,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
    D,
    T,
>(
    x: Nhwc<B, H, W, C, D, T>,
) -> Result<Nhwc<B, OH, OW, C, D, T>, D::Err>
where
    D: Pool2dKernel<f32>,
    T: Tape<f32, D>,
{
    const {
        assert!(
            H >= 2 && W >= 2,
            "max-pool 2x2 needs an input of at least 2x2"
        );
        assert!(
            OH == H / 2 && OW == W / 2,
            "max-pool 2x2 output size must be floor(input / 2)"
        );
    }
    try_pool(x, PoolKind::Max, 2)
}

/// Average-pool KxK, stride K, floor: `OH = H / K`, `OW = W / K`, checked at build time.
/// `K = H = W` is global average pooling.
pub fn try_avg_pool<
    B: Dim,
    const K: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
    D,
    T,
>(
    x: Nhwc<B, H, W, C, D, T>,
) -> Result<Nhwc<B, OH, OW, C, D, T>, D::Err>
where
    D: Pool2dKernel<f32>,
    T: Tape<f32, D>,
{
    const {
        assert!(
            K >= 1 && H >= K && W >= K,
            "average-pool window larger than its input"
        );
        assert!(
            OH == H / K && OW == W / K,
            "average-pool output size must be floor(input / K)"
        );
    }
    try_pool(x, PoolKind::Avg, K)
}
