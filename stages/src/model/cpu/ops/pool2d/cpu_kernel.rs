//! CPU kernel of 2d pooling (NHWC), parallel over output rows: each output element and each
//! input-gradient element is written by exactly one task, so results do not depend on the
//! number of threads.

use super::{Pool2dKernel, Pool2dOp, PoolKind};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Pools NHWC `x` into `out` (`[batch, oh, ow, c]`).
pub(crate) fn pool_forward(op: &Pool2dOp, x: &[f32], out: &mut [f32]) {
    let (h, w, c, oh, ow, k) = (op.h, op.w, op.c, op.oh, op.ow, op.k);
    assert_eq!(x.len(), op.batch * h * w * c, "pool input size");
    assert_eq!(out.len(), op.batch * oh * ow * c, "pool output size");
    if out.is_empty() {
        return;
    }
    let scale = 1.0 / (k * k) as f32;
    out.par_chunks_mut(ow * c)
        .enumerate()
        .for_each(|(row, dst)| {
            let (b, y) = (row / oh, row % oh);
            for (x_out, cell) in dst.chunks_exact_mut(c).enumerate() {
                let pixel = |i: usize, j: usize| {
                    let start = ((b * h + y * k + i) * w + x_out * k + j) * c;
                    &x[start..start + c]
                };
                cell.copy_from_slice(pixel(0, 0));
                for i in 0..k {
                    for j in 0..k {
                        if i == 0 && j == 0 {
                            continue;
                        }
                        let src = pixel(i, j);
                        match op.kind {
                            PoolKind::Max => cell.iter_mut().zip(src).for_each(|(a, v)| {
                                if *v > *a {
                                    *a = *v
                                }
                            }),
                            PoolKind::Avg => cell.iter_mut().zip(src).for_each(|(a, v)| *a += v),
                        }
                    }
                }
                if op.kind == PoolKind::Avg {
                    cell.iter_mut().for_each(|a| *a *= scale);
                }
            }
        });
}

/// Adds the input gradient for output gradient `g` into `gx` (NHWC, same size as `x`).
pub(crate) fn pool_backward(op: &Pool2dOp, x: &[f32], g: &[f32], gx: &mut [f32]) {
    let (h, w, c, oh, ow, k) = (op.h, op.w, op.c, op.oh, op.ow, op.k);
    assert_eq!(gx.len(), op.batch * h * w * c, "pool input-gradient size");
    assert_eq!(g.len(), op.batch * oh * ow * c, "pool output-gradient size");
    if g.is_empty() {
        return;
    }
    let scale = 1.0 / (k * k) as f32;
    // Each output row y reads/writes input rows [y * k, y * k + k) of its image only: split
    // the input gradient into those bands (leftover floor rows get nothing).
    let mut bands: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(op.batch * oh);
    for (b, img) in gx.chunks_mut(h * w * c).enumerate() {
        for (y, band) in img.chunks_mut(k * w * c).take(oh).enumerate() {
            bands.push((b, y, band));
        }
    }
    bands.into_par_iter().for_each(|(b, y, band)| {
        for xo in 0..ow {
            let gcell = &g[((b * oh + y) * ow + xo) * c..][..c];
            match op.kind {
                PoolKind::Avg => {
                    for i in 0..k {
                        for j in 0..k {
                            let dst = &mut band[(i * w + xo * k + j) * c..][..c];
                            dst.iter_mut().zip(gcell).for_each(|(a, v)| *a += v * scale);
                        }
                    }
                }
                PoolKind::Max => {
                    for ch in 0..c {
                        // Same scan order and comparison as the forward pass: first max wins.
                        let at = |i: usize, j: usize| (i * w + xo * k + j) * c + ch;
                        let xv =
                            |i: usize, j: usize| x[((b * h + y * k + i) * w + xo * k + j) * c + ch];
                        let (mut bi, mut bj, mut best) = (0, 0, xv(0, 0));
                        for i in 0..k {
                            for j in 0..k {
                                if xv(i, j) > best {
                                    (bi, bj, best) = (i, j, xv(i, j));
                                }
                            }
                        }
                        band[at(bi, bj)] += gcell[ch];
                    }
                }
            }
        }
    });
}

fn to_vec<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

impl Pool2dKernel<f32> for Cpu {
    fn pool2d_forward<X: Shape, O: Shape>(
        &self,
        op: Pool2dOp,
        x: &Tensor<X, f32, Self>,
        out_shape: O,
    ) -> Result<Tensor<O, f32, Self>, Self::Err> {
        let mut out = vec![0.0f32; out_shape.num_elements()];
        pool_forward(&op, &to_vec(x), &mut out);
        self.try_tensor_from_vec(out, out_shape)
    }

    fn pool2d_backward<X: Shape, O: Shape>(
        &self,
        op: Pool2dOp,
        x: &Tensor<X, f32, Self>,
        out: &Tensor<O, f32, Self>,
        grads: &mut Gradients<f32, Self>,
    ) -> Result<(), Self::Err> {
        let g: Vec<f32> = std::mem::take(&mut **grads.get_or_alloc_mut(out)?);
        let xs = if op.kind == PoolKind::Max {
            to_vec(x)
        } else {
            Vec::new()
        };
        pool_backward(&op, &xs, &g, grads.get_or_alloc_mut(x)?);
        **grads.get_or_alloc_mut(out)? = g;
        Ok(())
    }
}
