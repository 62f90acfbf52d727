//! CPU kernel of the 3x3 convolution: tiled im2col + `gemm`, parallel over output tiles.
//!
//! Layout NHWC for images, `[9 * C_in, C_out]` (row = (kh * 3 + kw) * C_in + ci) for the gemm
//! form of the weights. Determinism: work is cut into tiles whose sizes depend only on the
//! shapes; each output element is produced by exactly one single-threaded gemm call, and the
//! weight-gradient reduction over pixels runs in a fixed number of groups summed in a fixed
//! order. So results are bit-identical whatever the number of rayon threads.

use super::winograd::conv3x3_winograd_nhwc;
use super::winograd_weight_grad::add_winograd_weight_grad;
use super::{Conv3x3Kernel, Conv3x3Op, ConvAlgorithm, Dims, WINOGRAD_MIN_CHANNELS};
use crate::model::cpu::ops::gemm::{matmul, MatRef};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Target size of one im2col tile. About the size of a core's L2: the tile is written once
/// and read by gemm while still cached.
const TILE_BYTES: usize = 1 << 20;
/// Tiles with fewer output pixels than this make gemm re-pack the weights too often for the
/// work done, so tiles never go below it: the first blocks get about 1 MiB tiles, the deep
/// ones (9 * 512 floats per im2col row) up to about 5 MiB, still well inside L3.
const MIN_TILE_PIXELS: usize = 256;
/// Number of partial weight gradients summed at the end of the backward pass. Fixed (not the
/// thread count) so that the reduction order, hence every bit, is the same on any machine
/// with the same SIMD level. It bounds the weight gradient's parallelism: 16 keeps a 16-core
/// machine busy, for at most 16 partial copies of one layer's weights in memory (150 MB for
/// a 512-channel layer).
const WEIGHT_GRAD_GROUPS: usize = 16;
/// Values per task when the partial weight gradients are summed.
const REDUCE_CHUNK: usize = 1 << 16;

/// A band of output rows `[r0, r1)` of image `b`.
#[derive(Clone, Copy, Debug)]
struct Tile {
    b: usize,
    r0: usize,
    r1: usize,
}

fn tiles(d: &Dims, min_pixels: usize) -> Vec<Tile> {
    let row_floats = d.w * 9 * d.c_in;
    let by_bytes = TILE_BYTES / 4 / row_floats.max(1);
    let by_pixels = min_pixels.div_ceil(d.w.max(1));
    let rows = by_bytes.max(by_pixels).clamp(1, d.h.max(1));
    let mut out = Vec::new();
    for b in 0..d.batch {
        let mut r0 = 0;
        while r0 < d.h {
            let r1 = (r0 + rows).min(d.h);
            out.push(Tile { b, r0, r1 });
            r0 = r1;
        }
    }
    out
}

/// Writes the im2col rows of output rows `[r0, r1)` of one image (`img` is H x W x C) into
/// `col`, one row of `9 * C` values per output pixel; padding positions are zeros.
fn im2col(img: &[f32], h: usize, w: usize, c: usize, r0: usize, r1: usize, col: &mut [f32]) {
    // The first layer's 3 channels make every run 3 or 9 values long, where a `memcpy` call
    // per run costs more than the copy: give that case fixed-size copies.
    if c == 3 {
        im2col_runs::<9>(img, h, w, 3, r0, r1, col)
    } else {
        im2col_runs::<0>(img, h, w, c, r0, r1, col)
    }
}

/// [`im2col`] with fixed-size copies of the three adjacent taps when `C3 = 3 * c` is
/// given (`C3 = 0`: copies of any length).
#[inline(always)]
fn im2col_runs<const C3: usize>(
    img: &[f32],
    h: usize,
    w: usize,
    c: usize,
    r0: usize,
    r1: usize,
    col: &mut [f32],
) {
    let k = 9 * c;
    let copy = |dst: &mut [f32], src: &[f32]| match (
        <&mut [f32; C3]>::try_from(&mut *dst),
        <&[f32; C3]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) if C3 > 0 => *d = *s,
        _ => dst.copy_from_slice(src),
    };
    for oh in r0..r1 {
        for ow in 0..w {
            let row = &mut col[((oh - r0) * w + ow) * k..][..k];
            for kh in 0..3 {
                let seg = &mut row[kh * 3 * c..(kh + 1) * 3 * c];
                let ih = oh + kh;
                if ih == 0 || ih > h {
                    seg.fill(0.0);
                    continue;
                }
                let src = &img[(ih - 1) * w * c..ih * w * c];
                if ow >= 1 && ow + 1 < w {
                    // Interior: the three taps are adjacent pixels, one contiguous run.
                    copy(seg, &src[(ow - 1) * c..(ow + 2) * c]);
                } else {
                    for kw in 0..3 {
                        let dst = &mut seg[kw * c..(kw + 1) * c];
                        let iw = ow + kw;
                        if iw == 0 || iw > w {
                            dst.fill(0.0);
                        } else {
                            dst.copy_from_slice(&src[(iw - 1) * c..iw * c]);
                        }
                    }
                }
            }
        }
    }
}

/// Splits `out` (NHWC) into one mutable chunk per tile, in tile order.
fn split_by_tiles<'a>(mut out: &'a mut [f32], d: &Dims, tiles: &[Tile]) -> Vec<&'a mut [f32]> {
    let mut chunks = Vec::with_capacity(tiles.len());
    for t in tiles {
        let len = (t.r1 - t.r0) * d.w * d.c_out;
        let (head, rest) = out.split_at_mut(len);
        chunks.push(head);
        out = rest;
    }
    chunks
}

/// `out = conv(x, wm) [+ bias]`, optionally ReLU, or `out += conv(x, wm)` when `accumulate`.
///
/// `x` is NHWC `[batch, h, w, c_in]`, `wm` is `[9 * c_in, c_out]`, `out` is
/// `[batch, h, w, c_out]`.
pub(crate) fn conv3x3_nhwc(
    x: &[f32],
    wm: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    d: Dims,
    accumulate: bool,
    relu: bool,
) {
    let k = 9 * d.c_in;
    assert_eq!(x.len(), d.batch * d.h * d.w * d.c_in, "conv3x3 input size");
    assert_eq!(
        out.len(),
        d.batch * d.h * d.w * d.c_out,
        "conv3x3 output size"
    );
    assert_eq!(wm.len(), k * d.c_out, "conv3x3 weight size");
    assert!(
        !(accumulate && (relu || bias.is_some())),
        "accumulate is for gradients only"
    );
    let tiles = tiles(&d, MIN_TILE_PIXELS);
    let chunks = split_by_tiles(out, &d, &tiles);
    let img_len = d.h * d.w * d.c_in;
    chunks
        .into_par_iter()
        .zip(tiles.into_par_iter())
        .for_each(|(dst, t)| {
            COL_SCRATCH.with_borrow_mut(|col| {
                let m = (t.r1 - t.r0) * d.w;
                col.resize(m * k, 0.0);
                let img = &x[t.b * img_len..(t.b + 1) * img_len];
                im2col(img, d.h, d.w, d.c_in, t.r0, t.r1, col);
                matmul(
                    dst,
                    MatRef::row_major(&col[..m * k], m, k),
                    MatRef::row_major(wm, k, d.c_out),
                    accumulate,
                );
                // One pass after the gemm adds the bias and applies ReLU (cheaper than
                // pre-filling dst with the bias and having gemm read it back).
                match (bias, relu) {
                    (Some(b), true) => dst.chunks_exact_mut(d.c_out).for_each(|row| {
                        row.iter_mut()
                            .zip(b)
                            .for_each(|(v, b)| *v = (*v + b).max(0.0))
                    }),
                    (Some(b), false) => dst
                        .chunks_exact_mut(d.c_out)
                        .for_each(|row| row.iter_mut().zip(b).for_each(|(v, b)| *v += b)),
                    (None, true) => dst.iter_mut().for_each(|v| *v = v.max(0.0)),
                    (None, false) => {}
                }
            })
        });
}

thread_local! {
    /// Per-thread im2col buffer, kept between calls: a fresh multi-MiB buffer per tile costs
    /// page faults and zeroing. Its contents are fully overwritten before use, so reuse
    /// cannot change results.
    static COL_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Weight and bias gradients: `dwm = sum over pixels of im2col(x)^T * g` (`[9 c_in, c_out]`),
/// `db = sum over pixels of g`. `g` is the output gradient, NHWC `[batch, h, w, c_out]`.
pub(crate) fn conv3x3_weight_grad(x: &[f32], g: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let k = 9 * d.c_in;
    // Larger tiles than the forward pass: here the pixels are the reduction dimension, and a
    // short reduction makes gemm reread the whole [k, c_out] accumulator for little work.
    let tiles = tiles(&d, 512);
    let n_groups = WEIGHT_GRAD_GROUPS.min(tiles.len()).max(1);
    let img_len = d.h * d.w * d.c_in;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..n_groups)
        .into_par_iter()
        .map(|gi| {
            let lo = gi * tiles.len() / n_groups;
            let hi = (gi + 1) * tiles.len() / n_groups;
            let mut dw = vec![0.0f32; k * d.c_out];
            let mut db = vec![0.0f32; d.c_out];
            let mut col = Vec::new();
            for t in &tiles[lo..hi] {
                let m = (t.r1 - t.r0) * d.w;
                col.resize(m * k, 0.0);
                let img = &x[t.b * img_len..(t.b + 1) * img_len];
                im2col(img, d.h, d.w, d.c_in, t.r0, t.r1, &mut col);
                let start = ((t.b * d.h) + t.r0) * d.w * d.c_out;
                let gt = &g[start..start + m * d.c_out];
                matmul(
                    &mut dw,
                    MatRef::row_major(&col, m, k).t(),
                    MatRef::row_major(gt, m, d.c_out),
                    true,
                );
                for row in gt.chunks_exact(d.c_out) {
                    for (acc, v) in db.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
            }
            (dw, db)
        })
        .collect();
    let mut iter = partials.into_iter();
    let (mut dw, mut db) = iter.next().unwrap_or_default();
    let rest: Vec<(Vec<f32>, Vec<f32>)> = iter.collect();
    // Parallel over chunks of the weights, each summing the groups in group order: the same
    // additions in the same order as a sequential sum.
    dw.par_chunks_mut(REDUCE_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            for (pw, _) in &rest {
                let part = &pw[i * REDUCE_CHUNK..][..chunk.len()];
                chunk.iter_mut().zip(part).for_each(|(a, b)| *a += b);
            }
        });
    for (_, pb) in &rest {
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// OIHW weights `[c_out, c_in, 3, 3]` to the gemm form `[9 c_in, c_out]`.
pub(crate) fn oihw_to_gemm(w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    // These layout changes are strided copies of up to 2.4 M weights, run once per layer
    // per pass: done serially they show up next to the deep layers' convolutions on many
    // cores. Each task writes one row of the result.
    let mut wm = vec![0.0f32; 9 * c_in * c_out];
    wm.par_chunks_mut(c_out.max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            let (tap, ci) = (row / c_in, row % c_in);
            for (co, v) in dst.iter_mut().enumerate() {
                *v = w[(co * c_in + ci) * 9 + tap];
            }
        });
    wm
}

/// OIHW weights of the transposed convolution that maps an output gradient back to the
/// input: taps flipped, channels swapped, `[c_in, c_out, 3, 3]`.
fn flipped_transposed(w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut wt = vec![0.0f32; 9 * c_in * c_out];
    wt.par_chunks_mut(9 * c_out.max(1))
        .enumerate()
        .for_each(|(ci, dst)| {
            for (co, taps) in dst.chunks_exact_mut(9).enumerate() {
                let src = &w[(co * c_in + ci) * 9..][..9];
                for (tap, v) in taps.iter_mut().enumerate() {
                    *v = src[8 - tap];
                }
            }
        });
    wt
}

/// Whether `op`'s backward pass computes the input and weight gradients with Winograd: when
/// the forward pass does, and the layer is wide on both sides (the first layer, 3 channels in,
/// stays direct, as its forward does).
fn winograd_backward(op: &Conv3x3Op) -> bool {
    op.algorithm == ConvAlgorithm::Winograd
        && op.c_in >= WINOGRAD_MIN_CHANNELS
        && op.c_out >= WINOGRAD_MIN_CHANNELS
}

/// Adds the gemm-form gradient `dwm` `[9 c_in, c_out]` into OIHW `gw`.
fn add_gemm_to_oihw(gw: &mut [f32], dwm: &[f32], c_in: usize, c_out: usize) {
    gw.par_chunks_mut(9 * c_in.max(1))
        .enumerate()
        .for_each(|(co, dst)| {
            for (ci, taps) in dst.chunks_exact_mut(9).enumerate() {
                for (tap, v) in taps.iter_mut().enumerate() {
                    *v += dwm[(tap * c_in + ci) * c_out + co];
                }
            }
        });
}

fn to_vec<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

impl Conv3x3Kernel<f32> for Cpu {
    fn conv3x3_forward<X: Shape, W: Shape, B: Shape, O: Shape>(
        &self,
        op: Conv3x3Op,
        x: &Tensor<X, f32, Self>,
        w: &Tensor<W, f32, Self>,
        b: &Tensor<B, f32, Self>,
        out_shape: O,
    ) -> Result<Tensor<O, f32, Self>, Self::Err> {
        let d = op.dims();
        let (xs, ws, bs) = (to_vec(x), to_vec(w), to_vec(b));
        let out = match op.algorithm {
            ConvAlgorithm::Winograd if d.c_in >= WINOGRAD_MIN_CHANNELS => {
                conv3x3_winograd_nhwc(&xs, &ws, &bs, d, op.relu)
            }
            _ => {
                let mut out = vec![0.0f32; out_shape.num_elements()];
                let wm = oihw_to_gemm(&ws, d.c_in, d.c_out);
                conv3x3_nhwc(&xs, &wm, Some(&bs), &mut out, d, false, op.relu);
                out
            }
        };
        self.try_tensor_from_vec(out, out_shape)
    }

    fn conv3x3_backward<X: Shape, W: Shape, B: Shape, O: Shape>(
        &self,
        op: Conv3x3Op,
        x: &Tensor<X, f32, Self>,
        w: &Tensor<W, f32, Self>,
        b: &Tensor<B, f32, Self>,
        out: &Tensor<O, f32, Self>,
        grads: &mut Gradients<f32, Self>,
    ) -> Result<(), Self::Err> {
        let d = op.dims();
        // Borrow the output gradient by moving it out (no copy); it is put back below.
        let g_out: Vec<f32> = std::mem::take(&mut **grads.get_or_alloc_mut(out)?);
        let masked;
        let g: &[f32] = if op.relu {
            let y = to_vec(out);
            masked = g_out
                .par_iter()
                .zip(&y)
                .map(|(g, y)| if *y > 0.0 { *g } else { 0.0 })
                .collect::<Vec<f32>>();
            &masked
        } else {
            &g_out
        };
        let w_oihw = to_vec(w);
        let xs = to_vec(x);
        {
            // Input gradient: a 3x3 convolution of g with flipped, transposed weights.
            let wt = flipped_transposed(&w_oihw, d.c_in, d.c_out);
            let dt = Dims {
                c_in: d.c_out,
                c_out: d.c_in,
                ..d
            };
            if winograd_backward(&op) {
                let gx_new = conv3x3_winograd_nhwc(g, &wt, &vec![0.0; d.c_in], dt, false);
                let gx = grads.get_or_alloc_mut(x)?;
                gx.par_iter_mut()
                    .zip(&gx_new)
                    .for_each(|(acc, v)| *acc += v);
            } else {
                let wm = oihw_to_gemm(&wt, dt.c_in, dt.c_out);
                conv3x3_nhwc(g, &wm, None, grads.get_or_alloc_mut(x)?, dt, true, false);
            }
        }
        let db = if winograd_backward(&op) {
            add_winograd_weight_grad(&xs, g, d, grads.get_or_alloc_mut(w)?)
        } else {
            let (dwm, db) = conv3x3_weight_grad(&xs, g, d);
            add_gemm_to_oihw(grads.get_or_alloc_mut(w)?, &dwm, d.c_in, d.c_out);
            db
        };
        for (a, v) in grads.get_or_alloc_mut(b)?.iter_mut().zip(&db) {
            *a += v;
        }
        **grads.get_or_alloc_mut(out)? = g_out;
        Ok(())
    }
}
