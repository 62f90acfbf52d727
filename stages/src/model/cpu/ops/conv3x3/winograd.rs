//! Winograd F(4x4, 3x3) forward kernel of the 3x3 convolution: 2.25 multiplications per
//! output instead of 9, so about 3x less arithmetic on VGG16's wide layers.
//!
//! Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Each 4x4 output
//! tile comes from a 6x6 input tile `d`: `Y = A^T [(G g G^T) ⊙ (B^T d B)] A`. The
//! element-wise product over 36 positions, summed over input channels, is 36 independent
//! matrix products `M[p] = V[p] · U[p]` (`V[p]`: tiles x C_in, `U[p]`: C_in x C_out), which
//! run through the same single-threaded gemm as the im2col kernel.
//!
//! Exact in exact arithmetic; in f32 the transforms add rounding, larger than the direct
//! kernel's (tested against an f64 reference). Determinism: tiles are grouped into blocks
//! whose size depends only on the shapes, each output is produced by one block, and the
//! transforms run in a fixed order, so the results are bit-identical on any number of threads.

use super::Dims;
use crate::model::cpu::ops::gemm::{matmul_to_raw, MatRef};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output tile side, kernel side and input tile side (`TILE + 2`).
pub(super) const TILE: usize = 4;
pub(super) const IN_TILE: usize = 6;
/// Transform positions: one gemm each.
pub(super) const POSITIONS: usize = IN_TILE * IN_TILE;
/// Channels handled together by the transforms: one AVX2 register's worth, kept in local
/// arrays so the compiler vectorises across channels (NHWC keeps them adjacent).
pub(super) const LANES: usize = 8;
/// Bytes of transformed input per block for narrow layers: small enough to stay in a core's
/// L2 between the transform and the gemms that read it.
const BLOCK_BYTES: usize = 1 << 21;

/// G (6 x 3) of F(4, 3) with interpolation points 0, 1, -1, 2, -2 and infinity.
pub(super) const WEIGHT_G: [[f64; 3]; IN_TILE] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The weights transformed for Winograd, stored transposed: `U[p]^T[co][ci]`, where
/// `p = 6 * row + col` indexes `G g G^T`.
struct WinogradWeights {
    u: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// `G g G^T` per (output, input) channel pair from OIHW `w`, in f64 then rounded once, into
/// `buffer` (reused: the deep layers' 38 MB would otherwise be fresh pages on every call).
fn transform_weights(w: &[f32], c_in: usize, c_out: usize, buffer: Vec<f32>) -> WinogradWeights {
    assert_eq!(w.len(), c_out * c_in * 9, "winograd weight size");
    // The nine taps as planes over input channels, `[co][tap][ci]`, so the loop below runs
    // along `ci` on both sides and vectorises.
    let mut planes = vec![0.0f32; c_out * 9 * c_in];
    planes
        .par_chunks_mut(9 * c_in)
        .zip(w.par_chunks(9 * c_in))
        .for_each(|(dst, src)| {
            for (ci, taps) in src.chunks_exact(9).enumerate() {
                for (tap, v) in taps.iter().enumerate() {
                    dst[tap * c_in + ci] = *v;
                }
            }
        });
    // One task per row i of G g G^T: its six positions p = 6i..6i+6 are one contiguous run
    // of `u`.
    let mut u = buffer;
    // Every element is written below, so a buffer of the right length needs no clearing.
    if u.len() != POSITIONS * c_out * c_in {
        u.clear();
        u.resize(POSITIONS * c_out * c_in, 0.0);
    }
    u.par_chunks_mut(IN_TILE * c_out * c_in)
        .enumerate()
        .for_each(|(i, rows)| {
            for co in 0..c_out {
                let taps: [&[f32]; 9] =
                    std::array::from_fn(|k| &planes[(co * 9 + k) * c_in..][..c_in]);
                let mut outs: [&mut [f32]; IN_TILE] =
                    [&mut [], &mut [], &mut [], &mut [], &mut [], &mut []];
                let mut rest = &mut rows[..];
                for (j, out) in outs.iter_mut().enumerate() {
                    let skip = if j == 0 {
                        co * c_in
                    } else {
                        (c_out - 1) * c_in
                    };
                    let (chunk, tail) = std::mem::take(&mut rest)[skip..].split_at_mut(c_in);
                    *out = chunk;
                    rest = tail;
                }
                weight_row(&WEIGHT_G[i], &taps, &mut outs);
            }
        });
    WinogradWeights { u, c_in, c_out }
}

/// Eight channels of one pixel, the unit the transforms compute on. Plain arrays with
/// element-wise operators: the compiler maps them to one AVX register (two SSE ones). Rust
/// never fuses a multiply and an add, so every target gives the same bits.
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
pub(super) struct F8([f32; LANES]);

impl std::ops::Add for F8 {
    type Output = F8;
    #[inline(always)]
    fn add(self, o: F8) -> F8 {
        F8(std::array::from_fn(|l| self.0[l] + o.0[l]))
    }
}

impl std::ops::Sub for F8 {
    type Output = F8;
    #[inline(always)]
    fn sub(self, o: F8) -> F8 {
        F8(std::array::from_fn(|l| self.0[l] - o.0[l]))
    }
}

impl std::ops::Mul<F8> for f32 {
    type Output = F8;
    #[inline(always)]
    fn mul(self, o: F8) -> F8 {
        F8(std::array::from_fn(|l| self * o.0[l]))
    }
}

impl F8 {
    /// The first `src.len()` (at most 8) lanes from `src`, the rest zero. The full-width case
    /// is a fixed-size copy kept in registers rather than a `memcpy` call.
    #[inline(always)]
    pub(super) fn load(src: &[f32]) -> F8 {
        match <&[f32; LANES]>::try_from(src) {
            Ok(full) => F8(*full),
            Err(_) => {
                let mut v = F8::default();
                v.0[..src.len()].copy_from_slice(src);
                v
            }
        }
    }

    /// Writes the first `dst.len()` (at most 8) lanes into `dst`.
    #[inline(always)]
    fn store_uninit(self, dst: &mut [MaybeUninit<f32>]) {
        match <&mut [MaybeUninit<f32>; LANES]>::try_from(&mut *dst) {
            Ok(full) => *full = self.0.map(MaybeUninit::new),
            Err(_) => {
                for (d, v) in dst.iter_mut().zip(self.0) {
                    d.write(v);
                }
            }
        }
    }

    /// Writes the first `dst.len()` (at most 8) lanes into `dst`.
    #[inline(always)]
    pub(super) fn store(self, dst: &mut [f32]) {
        match <&mut [f32; LANES]>::try_from(&mut *dst) {
            Ok(full) => *full = self.0,
            Err(_) => {
                let n = dst.len();
                dst.copy_from_slice(&self.0[..n]);
            }
        }
    }

    #[inline(always)]
    fn relu(self) -> F8 {
        F8(self.0.map(|v| v.max(0.0)))
    }
}

/// One input channel run of `G g G^T`'s row `i` (given as `gi`, row i of G) for one output
/// channel: `taps[k][ci]` is tap k of every input channel, `outs[j][ci]` receives position
/// (i, j).
fn weight_row(gi: &[f64; 3], taps: &[&[f32]; 9], outs: &mut [&mut [f32]; IN_TILE]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { weight_row_avx2(gi, taps, outs) };
    }
    weight_row_any(gi, taps, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weight_row_avx2(gi: &[f64; 3], taps: &[&[f32]; 9], outs: &mut [&mut [f32]; IN_TILE]) {
    weight_row_any(gi, taps, outs)
}

#[inline(always)]
fn weight_row_any(gi: &[f64; 3], taps: &[&[f32]; 9], outs: &mut [&mut [f32]; IN_TILE]) {
    let n = taps[0].len();
    assert!(taps.iter().all(|t| t.len() == n) && outs.iter().all(|o| o.len() == n));
    for ci in 0..n {
        let g = |k: usize| taps[k][ci] as f64;
        // Row i of G g (3 values), then its products with the rows of G.
        let t: [f64; 3] =
            std::array::from_fn(|l| gi[0] * g(l) + gi[1] * g(3 + l) + gi[2] * g(6 + l));
        for (j, gj) in WEIGHT_G.iter().enumerate() {
            outs[j][ci] = (t[0] * gj[0] + t[1] * gj[1] + t[2] * gj[2]) as f32;
        }
    }
}

/// `B^T z` for a 6-vector: the input transform along one axis.
#[inline(always)]
fn input_1d(z: [F8; IN_TILE]) -> [F8; IN_TILE] {
    let [z0, z1, z2, z3, z4, z5] = z;
    [
        4.0 * z0 - 5.0 * z2 + z4,
        (z3 + z4) - 4.0 * (z1 + z2),
        4.0 * (z1 - z2) + (z4 - z3),
        2.0 * (z3 - z1) + (z4 - z2),
        2.0 * (z1 - z3) + (z4 - z2),
        4.0 * z1 - 5.0 * z3 + z5,
    ]
}

/// `A^T m` for a 6-vector: the output transform along one axis.
#[inline(always)]
fn output_1d(m: [F8; IN_TILE]) -> [F8; TILE] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m5,
    ]
}

/// Tile grid of one image and the blocks of whole tile rows that are transformed together.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    pub(super) tiles_h: usize,
    pub(super) tiles_w: usize,
    /// Tile rows per block (the last block may have fewer).
    rows_per_block: usize,
}

impl Grid {
    pub(super) fn new(d: &Dims) -> Self {
        let tiles_h = d.h.div_ceil(TILE);
        let tiles_w = d.w.div_ceil(TILE);
        let widest = d.c_in.max(d.c_out);
        // Each gemm packs its `C_in x C_out` slice of U once per block, so a block needs at
        // least as many tiles as there are channels for the packing to pay; narrow layers
        // get blocks sized to stay in cache instead.
        let want_tiles = (BLOCK_BYTES / (POSITIONS * 4 * widest)).max(widest);
        let rows_per_block = want_tiles.div_ceil(tiles_w).clamp(1, d.batch * tiles_h);
        Self {
            tiles_h,
            tiles_w,
            rows_per_block,
        }
    }
}

/// A block of global tile rows `[row0, row1)`: row `g` is tile row `g % tiles_h` of image
/// `g / tiles_h`. Its output pixels are one contiguous NHWC range.
#[derive(Clone, Copy, Debug)]
struct Block {
    row0: usize,
    row1: usize,
}

/// First output pixel row (over the batch, `b * h + y`) of global tile row `g`.
fn first_pixel_row(g: usize, grid: &Grid, h: usize) -> usize {
    let (b, r) = (g / grid.tiles_h, g % grid.tiles_h);
    b * h + (r * TILE).min(h)
}

/// The block's products `m`, written by the 36 position tasks at once, each into its own
/// columns of every tile's row.
struct Products(*mut f32);
// SAFETY: shared only within `run_block`, where the tasks write disjoint elements.
unsafe impl Sync for Products {}

thread_local! {
    /// Transformed input `V` and products `M` of the last block this thread started, kept for
    /// the next one (fully overwritten before being read). A block takes them out while it
    /// runs, so a nested block on the same thread just allocates its own.
    static SCRATCH: std::cell::Cell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

thread_local! {
    /// The last transformed weights' buffer of this thread, for the next call.
    static WEIGHTS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `conv(x, w) + bias`, optionally ReLU. `x` is NHWC `[batch, h, w, c_in]`, `w` OIHW
/// `[c_out, c_in, 3, 3]`, the result NHWC `[batch, h, w, c_out]`.
///
/// The result is written into fresh, uninitialised memory: zeroing hundreds of MB per layer
/// only for every value to be overwritten cost about 3 % of the VGG16 forward pass.
pub(crate) fn conv3x3_winograd_nhwc(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    d: Dims,
    relu: bool,
) -> Vec<f32> {
    let n = d.batch * d.h * d.w * d.c_out;
    let mut out = Vec::with_capacity(n);
    let u = transform_weights(w, d.c_in, d.c_out, WEIGHTS.take());
    conv_transformed(x, &u, bias, &mut out.spare_capacity_mut()[..n], d, relu);
    WEIGHTS.set(u.u);
    // SAFETY: conv_transformed writes every element of its output: the blocks' chunks cover
    // all `batch * h` pixel rows (asserted there), each tile row's chunk covers its pixel
    // rows, and its tiles write every in-image column and every channel of those rows.
    unsafe { out.set_len(n) };
    out
}

fn conv_transformed(
    x: &[f32],
    u: &WinogradWeights,
    bias: &[f32],
    out: &mut [MaybeUninit<f32>],
    d: Dims,
    relu: bool,
) {
    assert_eq!(x.len(), d.batch * d.h * d.w * d.c_in, "conv3x3 input size");
    assert_eq!(
        out.len(),
        d.batch * d.h * d.w * d.c_out,
        "conv3x3 output size"
    );
    assert_eq!(
        (u.c_in, u.c_out),
        (d.c_in, d.c_out),
        "winograd weight shape"
    );
    assert_eq!(bias.len(), d.c_out, "conv3x3 bias size");
    let grid = Grid::new(&d);
    let total = d.batch * grid.tiles_h;
    let blocks: Vec<Block> = (0..total)
        .step_by(grid.rows_per_block)
        .map(|row0| Block {
            row0,
            row1: (row0 + grid.rows_per_block).min(total),
        })
        .collect();
    let row_len = d.w * d.c_out;
    let mut chunks = Vec::with_capacity(blocks.len());
    let mut rest = out;
    for blk in &blocks {
        let rows = first_pixel_row(blk.row1, &grid, d.h) - first_pixel_row(blk.row0, &grid, d.h);
        let (head, tail) = rest.split_at_mut(rows * row_len);
        chunks.push(head);
        rest = tail;
    }
    assert!(rest.is_empty(), "blocks must cover every output row");
    chunks.into_par_iter().zip(blocks).for_each(|(dst, blk)| {
        let (mut v, mut m) = SCRATCH.take();
        run_block(x, u, bias, relu, &d, &grid, blk, &mut v, &mut m, dst);
        SCRATCH.set((v, m));
    });
}

/// One block: input transform (parallel over tiles), 36 gemms (parallel over positions),
/// output transform (parallel over tile rows). `v` `[t][p][ci]` and `m` `[t][p][co]` are
/// tile-major, so each tile's transforms read or write one contiguous run.
#[allow(clippy::too_many_arguments)]
fn run_block(
    x: &[f32],
    u: &WinogradWeights,
    bias: &[f32],
    relu: bool,
    d: &Dims,
    grid: &Grid,
    blk: Block,
    v: &mut Vec<f32>,
    m: &mut Vec<f32>,
    dst: &mut [MaybeUninit<f32>],
) {
    let (c_in, c_out) = (d.c_in, d.c_out);
    let tiles = (blk.row1 - blk.row0) * grid.tiles_w;
    v.resize(tiles * POSITIONS * c_in, 0.0);
    m.resize(tiles * POSITIONS * c_out, 0.0);
    v.par_chunks_mut(POSITIONS * c_in)
        .enumerate()
        .with_min_len(8)
        .for_each(|(t, vt)| {
            let g = blk.row0 + t / grid.tiles_w;
            transform_input_tile(
                x,
                d,
                g / grid.tiles_h,
                g % grid.tiles_h,
                t % grid.tiles_w,
                vt,
            );
        });
    let v = &v[..];
    let products = Products(m.as_mut_ptr());
    let products = &products;
    (0..POSITIONS).into_par_iter().for_each(|p| {
        let vp = MatRef {
            data: &v[p * c_in..],
            rows: tiles,
            cols: c_in,
            rs: POSITIONS * c_in,
            cs: 1,
        };
        let up = MatRef::row_major(&u.u[p * c_out * c_in..][..c_out * c_in], c_out, c_in).t();
        // SAFETY: `m` holds tiles * 36 * c_out values; position p writes row t at
        // t * 36 * c_out + p * c_out, c_out values, inside `m` and disjoint from every other
        // position's columns. Nothing reads `m` until all positions are done.
        unsafe { matmul_to_raw(products.0.add(p * c_out), POSITIONS * c_out, vp, up) };
    });
    // Output tile rows: each covers up to 4 pixel rows of one image, contiguous in `dst`.
    let mut rows_out = Vec::with_capacity(blk.row1 - blk.row0);
    let mut rest = dst;
    for g in blk.row0..blk.row1 {
        let rows = first_pixel_row(g + 1, grid, d.h) - first_pixel_row(g, grid, d.h);
        let (head, tail) = rest.split_at_mut(rows * d.w * c_out);
        rows_out.push(head);
        rest = tail;
    }
    assert!(rest.is_empty(), "tile rows must cover the block's output");
    let m = &m[..];
    rows_out
        .into_par_iter()
        .enumerate()
        .for_each(|(r, out_rows)| {
            let tr = (blk.row0 + r) % grid.tiles_h;
            let pixel_rows = TILE.min(d.h - tr * TILE);
            for tc in 0..grid.tiles_w {
                let at = OutputTile {
                    t: r * grid.tiles_w + tc,
                    tc,
                    pixel_rows,
                };
                transform_output_tile(m, at, bias, relu, d, out_rows);
            }
        });
}

/// `B^T d B` of the 6x6 input tile at tile row `tr`, column `tc` of image `b` (zeros
/// outside the image), written as `vt[p][ci]`.
pub(super) fn transform_input_tile(
    x: &[f32],
    d: &Dims,
    b: usize,
    tr: usize,
    tc: usize,
    vt: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { transform_input_tile_avx2(x, d, b, tr, tc, vt) };
    }
    transform_input_tile_any(x, d, b, tr, tc, vt)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_input_tile_avx2(
    x: &[f32],
    d: &Dims,
    b: usize,
    tr: usize,
    tc: usize,
    vt: &mut [f32],
) {
    transform_input_tile_any(x, d, b, tr, tc, vt)
}

#[inline(always)]
fn transform_input_tile_any(x: &[f32], d: &Dims, b: usize, tr: usize, tc: usize, vt: &mut [f32]) {
    let (h, w, c) = (d.h as isize, d.w as isize, d.c_in);
    let img = &x[b * d.h * d.w * c..(b + 1) * d.h * d.w * c];
    let (y0, x0) = ((tr * TILE) as isize - 1, (tc * TILE) as isize - 1);
    // The rows and columns of the 6x6 tile inside the image; the rest is zero padding.
    let (i_lo, i_hi) = (
        (-y0).max(0) as usize,
        (h - y0).min(IN_TILE as isize) as usize,
    );
    let (j_lo, j_hi) = (
        (-x0).max(0) as usize,
        (w - x0).min(IN_TILE as isize) as usize,
    );
    let interior = (i_lo, i_hi, j_lo, j_hi) == (0, IN_TILE, 0, IN_TILE);
    for c0 in (0..c).step_by(LANES) {
        let lanes = LANES.min(c - c0);
        let pixel = |i: usize, j: usize| {
            let at = (((y0 + i as isize) * w + x0 + j as isize) as usize) * c + c0;
            F8::load(&img[at..at + lanes])
        };
        // dt[col][row], so each column's transform takes one array. Interior tiles (most of
        // them) fill it whole, with no bounds to check and no zeros to write first.
        let dt: [[F8; IN_TILE]; IN_TILE] = if interior {
            std::array::from_fn(|j| std::array::from_fn(|i| pixel(i, j)))
        } else {
            let mut dt = [[F8::default(); IN_TILE]; IN_TILE];
            for i in i_lo..i_hi {
                for (j, col) in dt.iter_mut().enumerate().take(j_hi).skip(j_lo) {
                    col[i] = pixel(i, j);
                }
            }
            dt
        };
        let mut rows = [[F8::default(); IN_TILE]; IN_TILE];
        for (j, col) in dt.into_iter().enumerate() {
            for (i, v) in input_1d(col).into_iter().enumerate() {
                rows[i][j] = v;
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (j, v) in input_1d(row).into_iter().enumerate() {
                let at = (i * IN_TILE + j) * c + c0;
                v.store(&mut vt[at..at + lanes]);
            }
        }
    }
}

/// Where one output tile goes: tile `t` of the block's products, written to the first
/// `pixel_rows` rows and the in-image columns of tile column `tc` of `out_rows`.
#[derive(Clone, Copy)]
struct OutputTile {
    t: usize,
    tc: usize,
    pixel_rows: usize,
}

/// `A^T m A` of one tile from `m[t][p][co]`, plus bias, then ReLU when asked.
fn transform_output_tile(
    m: &[f32],
    at: OutputTile,
    bias: &[f32],
    relu: bool,
    d: &Dims,
    out_rows: &mut [MaybeUninit<f32>],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { transform_output_tile_avx2(m, at, bias, relu, d, out_rows) };
    }
    transform_output_tile_any(m, at, bias, relu, d, out_rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_output_tile_avx2(
    m: &[f32],
    at: OutputTile,
    bias: &[f32],
    relu: bool,
    d: &Dims,
    out_rows: &mut [MaybeUninit<f32>],
) {
    transform_output_tile_any(m, at, bias, relu, d, out_rows)
}

#[inline(always)]
fn transform_output_tile_any(
    m: &[f32],
    at: OutputTile,
    bias: &[f32],
    relu: bool,
    d: &Dims,
    out_rows: &mut [MaybeUninit<f32>],
) {
    let c = d.c_out;
    let cols_here = TILE.min(d.w - at.tc * TILE);
    for c0 in (0..c).step_by(LANES) {
        let lanes = LANES.min(c - c0);
        // mt[col][row] of the 6x6 product tile.
        let mut mt = [[F8::default(); IN_TILE]; IN_TILE];
        for i in 0..IN_TILE {
            for (j, col) in mt.iter_mut().enumerate() {
                let from = (at.t * POSITIONS + i * IN_TILE + j) * c + c0;
                col[i] = F8::load(&m[from..from + lanes]);
            }
        }
        let mut half = [[F8::default(); IN_TILE]; TILE];
        for (j, col) in mt.into_iter().enumerate() {
            for (i, v) in output_1d(col).into_iter().enumerate() {
                half[i][j] = v;
            }
        }
        let bv = F8::load(&bias[c0..c0 + lanes]);
        for (i, row) in half.into_iter().enumerate().take(at.pixel_rows) {
            for (j, v) in output_1d(row).into_iter().enumerate().take(cols_here) {
                let y = v + bv;
                let y = if relu { y.relu() } else { y };
                let to = (i * d.w + at.tc * TILE + j) * c + c0;
                y.store_uninit(&mut out_rows[to..to + lanes]);
            }
        }
    }
}
