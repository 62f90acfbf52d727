//! Weight gradient of the 3x3 convolution by Winograd F(4x4, 3x3): the adjoint of the
//! forward kernel in `winograd.rs`, about 4x less arithmetic than im2col on wide layers.
//!
//! The forward pass computes, per 4x4 output tile, `Y = A^T [U ⊙ V] A` with `U = G g G^T`
//! (weights) and `V = B^T d B` (input tile), the product summed over input channels. Its
//! adjoint for the weights is, per position `p` of the 6x6 transformed tile,
//! `dU[p] = Σ_tiles V[p]^T · dM[p]` with `dM = A dY A^T` (the output gradient's tile), then
//! `dg = G^T dU G`. The sum over tiles is 36 matrix products `(C_in x tiles) · (tiles x C_out)`
//! per block of tiles, accumulated block after block into one `dU`.
//!
//! Determinism: the blocks depend only on the shapes and are accumulated in order; within a
//! block the 36 positions write disjoint parts of `dU`. So every bit is the same on any
//! number of threads.

use super::winograd::{transform_input_tile, Grid, F8, IN_TILE, LANES, POSITIONS, TILE, WEIGHT_G};
use super::Dims;
use crate::model::cpu::ops::gemm::{matmul, MatRef};
use rayon::prelude::*;

/// Fewest tiles per block: each block's products reduce over its tiles, and a short
/// reduction makes gemm reread the whole `C_in x C_out` accumulator for little work.
const MIN_BLOCK_TILES: usize = 256;
/// Bytes of transformed input and output gradient per block above that minimum.
const BLOCK_BYTES: usize = 8 << 20;

/// Adds the gradient of OIHW weights `[c_out, c_in, 3, 3]` into `gw` and returns the bias
/// gradient, for input `x` (NHWC `[batch, h, w, c_in]`) and output gradient `g` (NHWC
/// `[batch, h, w, c_out]`, already masked by the activation).
pub(crate) fn add_winograd_weight_grad(x: &[f32], g: &[f32], d: Dims, gw: &mut [f32]) -> Vec<f32> {
    let want_tiles = (BLOCK_BYTES / (POSITIONS * 4 * (d.c_in + d.c_out))).max(MIN_BLOCK_TILES);
    add_weight_grad_in_blocks(x, g, d, want_tiles.div_ceil(d.w.div_ceil(TILE)), gw)
}

/// [`add_winograd_weight_grad`] with blocks of `rows_per_block` tile rows.
fn add_weight_grad_in_blocks(
    x: &[f32],
    g: &[f32],
    d: Dims,
    rows_per_block: usize,
    gw: &mut [f32],
) -> Vec<f32> {
    let (c_in, c_out) = (d.c_in, d.c_out);
    assert_eq!(x.len(), d.batch * d.h * d.w * c_in, "conv3x3 input size");
    assert_eq!(
        g.len(),
        d.batch * d.h * d.w * c_out,
        "conv3x3 gradient size"
    );
    assert_eq!(gw.len(), c_out * c_in * 9, "conv3x3 weight gradient size");
    let grid = Grid::new(&d);
    let total_rows = d.batch * grid.tiles_h;
    let rows_per_block = rows_per_block.clamp(1, total_rows.max(1));
    let mut du = vec![0.0f32; POSITIONS * c_in * c_out];
    let (mut v, mut dm) = (Vec::new(), Vec::new());
    for row0 in (0..total_rows).step_by(rows_per_block) {
        let row1 = (row0 + rows_per_block).min(total_rows);
        let tiles = (row1 - row0) * grid.tiles_w;
        v.resize(tiles * POSITIONS * c_in, 0.0);
        dm.resize(tiles * POSITIONS * c_out, 0.0);
        // The tile at index t of this block: image, tile row, tile column.
        let at = |t: usize| {
            let row = row0 + t / grid.tiles_w;
            (row / grid.tiles_h, row % grid.tiles_h, t % grid.tiles_w)
        };
        v.par_chunks_mut(POSITIONS * c_in)
            .enumerate()
            .with_min_len(8)
            .for_each(|(t, vt)| {
                let (b, tr, tc) = at(t);
                transform_input_tile(x, &d, b, tr, tc, vt);
            });
        dm.par_chunks_mut(POSITIONS * c_out)
            .enumerate()
            .with_min_len(8)
            .for_each(|(t, mt)| {
                let (b, tr, tc) = at(t);
                transform_grad_tile(g, &d, b, tr, tc, mt);
            });
        let (v, dm) = (&v[..], &dm[..]);
        du.par_chunks_mut(c_in * c_out)
            .enumerate()
            .for_each(|(p, dst)| {
                let vp = MatRef {
                    data: &v[p * c_in..],
                    rows: tiles,
                    cols: c_in,
                    rs: POSITIONS * c_in,
                    cs: 1,
                };
                let mp = MatRef {
                    data: &dm[p * c_out..],
                    rows: tiles,
                    cols: c_out,
                    rs: POSITIONS * c_out,
                    cs: 1,
                };
                matmul(dst, vp.t(), mp, true);
            });
    }
    add_untransformed(gw, &du, c_in, c_out);
    bias_grad(g, c_out)
}

/// `A z` for a 4-vector: the adjoint of the forward pass's output transform along one axis.
#[inline(always)]
fn grad_1d(z: [F8; TILE]) -> [F8; IN_TILE] {
    let [z0, z1, z2, z3] = z;
    let (even, odd) = (z0 + z2, z1 + z3);
    let (even4, odd8) = (z0 + 4.0 * z2, 2.0 * z1 + 8.0 * z3);
    [z0, even + odd, even - odd, even4 + odd8, even4 - odd8, z3]
}

/// `A dY A^T` of the 4x4 output-gradient tile at tile row `tr`, column `tc` of image `b`
/// (zeros outside the image: those outputs do not exist), written as `mt[p][co]`.
fn transform_grad_tile(g: &[f32], d: &Dims, b: usize, tr: usize, tc: usize, mt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { transform_grad_tile_avx2(g, d, b, tr, tc, mt) };
    }
    transform_grad_tile_any(g, d, b, tr, tc, mt)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_grad_tile_avx2(
    g: &[f32],
    d: &Dims,
    b: usize,
    tr: usize,
    tc: usize,
    mt: &mut [f32],
) {
    transform_grad_tile_any(g, d, b, tr, tc, mt)
}

#[inline(always)]
fn transform_grad_tile_any(g: &[f32], d: &Dims, b: usize, tr: usize, tc: usize, mt: &mut [f32]) {
    let c = d.c_out;
    let img = &g[b * d.h * d.w * c..(b + 1) * d.h * d.w * c];
    let (y0, x0) = (tr * TILE, tc * TILE);
    let (rows, cols) = (TILE.min(d.h - y0), TILE.min(d.w - x0));
    for c0 in (0..c).step_by(LANES) {
        let lanes = LANES.min(c - c0);
        // dy[col][row] of the 4x4 tile, so each column's transform takes one array.
        let mut dy = [[F8::default(); TILE]; TILE];
        for i in 0..rows {
            for (j, col) in dy.iter_mut().enumerate().take(cols) {
                let at = ((y0 + i) * d.w + x0 + j) * c + c0;
                col[i] = F8::load(&img[at..at + lanes]);
            }
        }
        let mut half = [[F8::default(); TILE]; IN_TILE];
        for (j, col) in dy.into_iter().enumerate() {
            for (i, v) in grad_1d(col).into_iter().enumerate() {
                half[i][j] = v;
            }
        }
        for (i, row) in half.into_iter().enumerate() {
            for (j, v) in grad_1d(row).into_iter().enumerate() {
                let at = (i * IN_TILE + j) * c + c0;
                v.store(&mut mt[at..at + lanes]);
            }
        }
    }
}

/// Adds `G^T dU G` for every (output, input) channel pair, from `du[p][ci][co]`, into OIHW
/// `gw`, computed in f64.
fn add_untransformed(gw: &mut [f32], du: &[f32], c_in: usize, c_out: usize) {
    // First [ci][co][9], each task one input channel reading its 36 rows of du contiguously;
    // then added into OIHW, each task one output channel.
    let mut by_input = vec![0.0f32; c_in * c_out * 9];
    by_input
        .par_chunks_mut(c_out * 9)
        .enumerate()
        .for_each(|(ci, dst)| {
            let rows: [&[f32]; POSITIONS] =
                std::array::from_fn(|p| &du[(p * c_in + ci) * c_out..][..c_out]);
            for (co, taps) in dst.chunks_exact_mut(9).enumerate() {
                // t = G^T dU (3 x 6), then t G (3 x 3).
                let t: [[f64; IN_TILE]; 3] = std::array::from_fn(|k| {
                    std::array::from_fn(|j| {
                        (0..IN_TILE)
                            .map(|i| WEIGHT_G[i][k] * rows[i * IN_TILE + j][co] as f64)
                            .sum()
                    })
                });
                for (tap, v) in taps.iter_mut().enumerate() {
                    let (k, l) = (tap / 3, tap % 3);
                    *v = (0..IN_TILE).map(|j| t[k][j] * WEIGHT_G[j][l]).sum::<f64>() as f32;
                }
            }
        });
    gw.par_chunks_mut(c_in * 9)
        .enumerate()
        .for_each(|(co, dst)| {
            for (ci, taps) in dst.chunks_exact_mut(9).enumerate() {
                let src = &by_input[(ci * c_out + co) * 9..][..9];
                taps.iter_mut().zip(src).for_each(|(acc, v)| *acc += v);
            }
        });
}

/// Pixels per partial sum of the bias gradient.
const BIAS_CHUNK_PIXELS: usize = 4096;

/// The sum of `g` over all pixels, per channel: partial sums over fixed chunks of pixels,
/// added in chunk order (the same bits on any number of threads).
fn bias_grad(g: &[f32], c: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = g
        .par_chunks(BIAS_CHUNK_PIXELS * c.max(1))
        .map(|chunk| {
            let mut acc = vec![0.0f32; c];
            for px in chunk.chunks_exact(c) {
                acc.iter_mut().zip(px).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .collect();
    let mut db = vec![0.0f32; c];
    for part in &partials {
        db.iter_mut().zip(part).for_each(|(a, v)| *a += v);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::ops::conv3x3::cpu_kernel::{conv3x3_weight_grad, oihw_to_gemm};
    use crate::model::cpu::ops::test_util::{
        abs, assert_within, conv_adjoint, conv_grad_bounds, gamma, plus, scaled, to_f64, U64,
    };

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::model::init::SplitMix64::new(seed);
        (0..n).map(|_| rng.next_unit_f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn many_blocks_give_the_one_block_result_and_the_direct_one() {
        // 2 images of 10 x 9: 3 x 3 tiles each, partial tiles at the bottom and right.
        let d = Dims {
            batch: 2,
            h: 10,
            w: 9,
            c_in: 24,
            c_out: 17,
        };
        let x = data(d.batch * d.h * d.w * d.c_in, 1);
        let g = data(d.batch * d.h * d.w * d.c_out, 2);
        let in_blocks = |rows_per_block| {
            let mut gw = vec![0.0f32; d.c_out * d.c_in * 9];
            let db = add_weight_grad_in_blocks(&x, &g, d, rows_per_block, &mut gw);
            (gw, db)
        };
        let (one_block, db) = in_blocks(6);
        let (per_row, db_rows) = in_blocks(1);
        let (dwm, db_direct) = conv3x3_weight_grad(&x, &g, d);
        // The direct result is in gemm form: `oihw_to_gemm` is a permutation, so mapping the
        // OIHW indices through it says where each OIHW element sits.
        let index: Vec<f32> = (0..dwm.len()).map(|i| i as f32).collect();
        let at = oihw_to_gemm(&index, d.c_in, d.c_out);
        let mut direct = vec![0.0f32; dwm.len()];
        for (gemm_pos, oihw_pos) in at.iter().enumerate() {
            direct[*oihw_pos as usize] = dwm[gemm_pos];
        }
        // Each within its rounding bound of the exact gradient (see `ops/test_util.rs`), the
        // bound widened by the f64 reference's own error: plain sums of `batch * h * w` terms.
        let (xd, gd) = (to_f64(&x), to_f64(&g));
        let no_weights = vec![0.0; d.c_out * d.c_in * 9];
        let exact = conv_adjoint(&xd, &no_weights, &gd, d);
        let magnitudes = conv_adjoint(&abs(&xd), &no_weights, &abs(&gd), d);
        let reference_error = |m: &[f64]| scaled(gamma(d.batch * d.h * d.w, U64), m);
        let winograd = conv_grad_bounds(&xd, &no_weights, &gd, d, true);
        let im2col = conv_grad_bounds(&xd, &no_weights, &gd, d, false);
        for (name, got, bound) in [
            ("one block", &one_block, &winograd.w),
            ("one tile row per block", &per_row, &winograd.w),
            ("direct", &direct, &im2col.w),
        ] {
            let bound = plus(bound, &reference_error(&magnitudes.w));
            assert_within(got, &exact.w, &bound, name);
        }
        assert_ne!(
            one_block, per_row,
            "another block split sums in another order"
        );
        assert_eq!(db, db_rows);
        for (name, got, bound) in [
            ("winograd bias", &db, &winograd.b),
            ("direct bias", &db_direct, &im2col.b),
        ] {
            let bound = plus(bound, &reference_error(&magnitudes.b));
            assert_within(got, &exact.b, &bound, name);
        }
    }
}
