//! Helpers shared by the op tests: deterministic data, f64 references together with the
//! magnitudes that bound rounding errors, the bounds themselves, and finite differences.
//!
//! # Where the tolerances come from
//!
//! Standard model of floating-point arithmetic: `fl(a op b) = (a op b)(1 + d)` with
//! `|d| <= u`, `u = 2^-24` in f32 and `2^-53` in f64. If every term `t_i` of a sum passes
//! through at most `n` roundings on its way into the result (its own product, then the
//! additions on its path through whatever summation tree is used), the computed sum is within
//! `gamma_n * sum |t_i|` of the exact one, `gamma_n = n u / (1 - n u)` (Higham, *Accuracy and
//! Stability of Numerical Algorithms*, 2nd ed., section 3.1 and lemma 3.3).
//!
//! That bound holds for any summation order, any blocking, any SIMD width, with or without
//! fused multiply-adds (a fused one rounds once where a multiply and an add round twice). So
//! it holds for gemm's AVX2 and AVX-512 kernels alike, and whatever blocking the machine's
//! cache sizes give them. The tests compare element by element against `gamma_n * sum |t_i|`
//! computed from the f64 reference's own terms: a check that is scale-aware (an output whose
//! large terms cancel may be off by more than its own size suggests) and the same on every
//! machine. The constants `n` of each kernel are derived beside the bound functions below.
//!
//! These are worst cases: actual errors are a few percent of them or less (the tests print
//! the worst `|error| / bound` under `--nocapture`), while a real bug, such as a kernel off by
//! one tap, exceeds them by orders of magnitude (see the conv tests).

use crate::model::cpu::ops::conv3x3::Dims;
use rayon::prelude::*;

/// Unit roundoff of f32.
pub const U32: f64 = 1.0 / (1u64 << 24) as f64;
/// Unit roundoff of f64.
pub const U64: f64 = f64::EPSILON / 2.0;

/// `gamma_n = n u / (1 - n u)`: the relative error bound of `n` roundings of unit `u`.
pub fn gamma(n: usize, u: f64) -> f64 {
    let nu = n as f64 * u;
    assert!(nu < 0.5, "gamma_{n} is not a useful bound");
    nu / (1.0 - nu)
}

/// Deterministic values in [-1, 1) from a seed (SplitMix64), for reproducible tests. Every
/// value is a multiple of 2^-23, so `v ± FD_STEP` is exact in f64.
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// `a + b` element-wise.
pub fn plus(a: &[f64], b: &[f64]) -> Vec<f64> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// `c * v` element-wise.
pub fn scaled(c: f64, v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| c * x).collect()
}

/// Asserts `|got[i] - want[i]| <= bound[i]` for every `i` (a zero bound demands equality)
/// and returns the worst `|error| / bound`, also printed (`--nocapture` shows it).
pub fn assert_within(got: &[f32], want: &[f64], bound: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(got.len(), bound.len(), "{what}: bounds' length");
    let mut worst = 0.0f64;
    for (i, ((g, w), b)) in got.iter().zip(want).zip(bound).enumerate() {
        let err = (*g as f64 - w).abs();
        // Written so that a NaN fails.
        assert!(
            err <= *b,
            "{what}[{i}]: got {g}, want {w}: |error| {err:e} > bound {b:e}"
        );
        if *b > 0.0 {
            worst = worst.max(err / b);
        }
    }
    eprintln!("{what}: worst |error| / bound = {worst:.2e}");
    worst
}

/// A sum accumulated in double-double, "Dot2" of Ogita, Rump and Oishi (SIAM J. Sci. Comput.
/// 26(6), 2005): each product and each addition keeps its rounding error (TwoProduct through
/// `mul_add`, TwoSum), so the value is as accurate as if computed in twice the precision and
/// rounded once: `|value - exact| <= u |exact| + gamma_n^2 sum |t_i|` (their proposition 5.5).
/// The finite differences need this: a plain sum may be off by `n u` of its terms' size,
/// which divided by the step would swamp the f32 errors being checked.
#[derive(Clone, Copy, Default)]
pub struct Dot2 {
    hi: f64,
    lo: f64,
    magnitude: f64,
}

impl Dot2 {
    pub fn add(&mut self, t: f64) {
        let s = self.hi + t;
        let z = s - self.hi;
        self.lo += (self.hi - (s - z)) + (t - z);
        self.hi = s;
        self.magnitude += t.abs();
    }

    pub fn add_product(&mut self, a: f64, b: f64) {
        let p = a * b;
        self.add(p);
        self.lo += a.mul_add(b, -p);
    }

    pub fn value(&self) -> f64 {
        self.hi + self.lo
    }

    /// `sum |t_i|`.
    pub fn magnitude(&self) -> f64 {
        self.magnitude
    }
}

/// Step of the central differences: a power of two, so that `p ± h` is exact for the values
/// of [`data`] (multiples of 2^-23 below 1 in size) and dividing by `2h` is exact.
pub const FD_STEP: f64 = 1.0 / (1u64 << 20) as f64;

/// Central differences of a loss along every coordinate of `p`, and a bound on their error.
///
/// `loss(q, i)` evaluates the loss at `q`, or any part of it that holds every term depending on
/// coordinate `i` (the other terms cancel in the difference), returning `(value, l)`. Contract:
/// the value is accurate to `4 u l`, `u` the f64 unit roundoff. A [`Dot2`] sum of `r_o * y_o`
/// over outputs `y_o` that are themselves [`Dot2`] values (or such a value divided once) keeps
/// it with `l = sum |r_o| * magnitude(y_o)`: `u |y_o| + gamma^2` for each output, one more `u`
/// for a division, `u |loss| + gamma^2` for the outer sum, and `gamma_n^2` is below `u / 100`
/// for fewer than 10^7 terms.
///
/// Every loss of these tests is linear in each coordinate near `p`: convolution, average
/// pooling and `sum r * y` are linear; a ReLU is applied with the on/off pattern the f32
/// forward pass chose (the piece of the function its backward pass differentiates); max
/// pooling is piecewise linear and its test asserts that no step of `h` changes a window's
/// maximum. So the central difference has no truncation error (the `h^2 / 6 * f'''` term is
/// zero), and what remains is rounding:
/// `(4 u l(p + h) + 4 u l(p - h)) / (2h)` from the two evaluations, plus `u |fd|` for the
/// subtraction (the division by the power of two `2h` is exact).
pub fn fd_grad(
    p: &[f64],
    loss: impl Fn(&[f64], usize) -> (f64, f64) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let h = FD_STEP;
    (0..p.len())
        .into_par_iter()
        .map(|i| {
            let mut q = p.to_vec();
            q[i] = p[i] + h;
            assert_eq!(q[i] - p[i], h, "step not exact at coordinate {i}");
            let (up, l_up) = loss(&q, i);
            q[i] = p[i] - h;
            assert_eq!(p[i] - q[i], h, "step not exact at coordinate {i}");
            let (down, l_down) = loss(&q, i);
            let fd = (up - down) / (2.0 * h);
            let bound = 4.0 * U64 * (l_up + l_down) / (2.0 * h) + U64 * fd.abs();
            (fd, bound)
        })
        .unzip()
}

/// Index of (image, row, column, channel) in an NHWC tensor of `h x w x c` images.
pub fn nhwc(d: (usize, usize, usize), n: usize, y: usize, x: usize, c: usize) -> usize {
    let (h, w, ch) = d;
    ((n * h + y) * w + x) * ch + c
}

/// Exact 3x3 convolution (stride 1, zero padding 1) in f64, before any activation: NHWC `x`,
/// OIHW `w`. Returns the values and, per output, `|b| + sum |x w|` over its terms: the
/// magnitude its rounding bounds scale with. Plain f64 sums: their own error is at most
/// `gamma_{9 c_in + 1}` (f64) of that magnitude, which the bound functions add.
pub fn conv_reference(x: &[f64], w: &[f64], b: &[f64], d: Dims) -> (Vec<f64>, Vec<f64>) {
    let Dims {
        batch,
        h,
        w: wd,
        c_in,
        c_out,
    } = d;
    assert_eq!(x.len(), batch * h * wd * c_in);
    assert_eq!(w.len(), c_out * c_in * 9);
    assert_eq!(b.len(), c_out);
    // [co][tap][ci], so the inner loop runs along contiguous channels on both sides.
    let wt: Vec<f64> = (0..c_out * 9 * c_in)
        .map(|i| {
            let (co, tap, ci) = (i / (9 * c_in), i / c_in % 9, i % c_in);
            w[(co * c_in + ci) * 9 + tap]
        })
        .collect();
    let rows: Vec<(Vec<f64>, Vec<f64>)> = (0..batch * h)
        .into_par_iter()
        .map(|row| {
            let (n, y) = (row / h, row % h);
            let mut values = Vec::with_capacity(wd * c_out);
            let mut mags = Vec::with_capacity(wd * c_out);
            for xx in 0..wd {
                for co in 0..c_out {
                    let (mut acc, mut mag) = (b[co], b[co].abs());
                    for tap in 0..9 {
                        let (iy, ix) = (y + tap / 3, xx + tap % 3);
                        if iy == 0 || ix == 0 || iy > h || ix > wd {
                            continue;
                        }
                        let xs = &x[nhwc((h, wd, c_in), n, iy - 1, ix - 1, 0)..][..c_in];
                        let ws = &wt[(co * 9 + tap) * c_in..][..c_in];
                        for (a, b) in xs.iter().zip(ws) {
                            acc += a * b;
                            mag += (a * b).abs();
                        }
                    }
                    values.push(acc);
                    mags.push(mag);
                }
            }
            (values, mags)
        })
        .collect();
    let (values, mags): (Vec<Vec<f64>>, Vec<Vec<f64>>) = rows.into_iter().unzip();
    (values.concat(), mags.concat())
}

/// One output of the convolution before the activation (image `n`, row `y`, column `xx`,
/// channel `co`), as a [`Dot2`] sum.
#[allow(clippy::too_many_arguments)]
pub fn conv_at(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    d: Dims,
    n: usize,
    y: usize,
    xx: usize,
    co: usize,
) -> Dot2 {
    let mut acc = Dot2::default();
    acc.add(b[co]);
    for tap in 0..9 {
        let (iy, ix) = (y + tap / 3, xx + tap % 3);
        if iy == 0 || ix == 0 || iy > d.h || ix > d.w {
            continue;
        }
        for ci in 0..d.c_in {
            acc.add_product(
                x[nhwc((d.h, d.w, d.c_in), n, iy - 1, ix - 1, ci)],
                w[(co * d.c_in + ci) * 9 + tap],
            );
        }
    }
    acc
}

/// Gradients of `sum_o gy[o] z[o]`, `z = conv(x, w) + b` before the activation.
pub struct ConvGrads {
    /// NHWC, like `x`.
    pub x: Vec<f64>,
    /// OIHW, like `w`.
    pub w: Vec<f64>,
    pub b: Vec<f64>,
}

/// The exact gradients of `sum_o gy[o] z[o]` with respect to `x`, `w` and `b`, in plain f64
/// (own error at most `gamma_n` (f64) of the magnitude, `n` the number of terms). On absolute
/// values it gives the sums of `|terms|` that the gradients' rounding bounds scale with.
pub fn conv_adjoint(x: &[f64], w: &[f64], gy: &[f64], d: Dims) -> ConvGrads {
    let Dims {
        batch,
        h,
        w: wd,
        c_in,
        c_out,
    } = d;
    assert_eq!(gy.len(), batch * h * wd * c_out);
    let (xs, gs) = ((h, wd, c_in), (h, wd, c_out));
    // Input gradient: gx[n, iy, ix, ci] = sum over taps and co of
    // gy[n, iy + 1 - kh, ix + 1 - kw, co] * w[co, ci, kh, kw].
    let gx: Vec<f64> = (0..x.len())
        .into_par_iter()
        .map(|i| {
            let (ci, ix, iy, n) = (
                i % c_in,
                i / c_in % wd,
                i / (c_in * wd) % h,
                i / (c_in * wd * h),
            );
            let mut acc = 0.0;
            for tap in 0..9 {
                let (kh, kw) = (tap / 3, tap % 3);
                let (y, xx) = ((iy + 1).wrapping_sub(kh), (ix + 1).wrapping_sub(kw));
                if y >= h || xx >= wd {
                    continue;
                }
                for co in 0..c_out {
                    acc += gy[nhwc(gs, n, y, xx, co)] * w[(co * c_in + ci) * 9 + tap];
                }
            }
            acc
        })
        .collect();
    // Weight gradient: gw[co, ci, kh, kw] = sum over pixels of
    // gy[n, y, xx, co] * x[n, y + kh - 1, xx + kw - 1, ci].
    let gw: Vec<f64> = (0..w.len())
        .into_par_iter()
        .map(|i| {
            let (tap, ci, co) = (i % 9, i / 9 % c_in, i / (9 * c_in));
            let (kh, kw) = (tap / 3, tap % 3);
            let mut acc = 0.0;
            for n in 0..batch {
                for y in 0..h {
                    for xx in 0..wd {
                        let (iy, ix) = (y + kh, xx + kw);
                        if iy == 0 || ix == 0 || iy > h || ix > wd {
                            continue;
                        }
                        acc += gy[nhwc(gs, n, y, xx, co)] * x[nhwc(xs, n, iy - 1, ix - 1, ci)];
                    }
                }
            }
            acc
        })
        .collect();
    let gb = (0..c_out)
        .map(|co| gy.iter().skip(co).step_by(c_out).sum())
        .collect();
    ConvGrads {
        x: gx,
        w: gw,
        b: gb,
    }
}

/// OIHW weights of the transposed convolution that maps an output gradient back to the
/// input: taps flipped, channels swapped, `[c_in, c_out, 3, 3]`.
pub fn flipped_transposed(w: &[f64], c_in: usize, c_out: usize) -> Vec<f64> {
    let mut wt = vec![0.0; w.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for tap in 0..9 {
                wt[(ci * c_out + co) * 9 + tap] = w[(co * c_in + ci) * 9 + 8 - tap];
            }
        }
    }
    wt
}

/// `A^T` of Winograd's F(4x4, 3x3) with the interpolation points 0, ±1, ±2 and infinity
/// (Lavin and Gray, 2016), the matrices `conv3x3/winograd.rs` computes with:
/// `Y = A^T [(G g G^T) ⊙ (B^T d B)] A`.
pub const WINOGRAD_AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];
/// `B^T` of the same algorithm.
pub const WINOGRAD_BT: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
/// `G` of the same algorithm.
pub const WINOGRAD_G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `|M| t |M|^T` for the rows `m` (`r` rows of `c`) of a matrix and a `c x c` tile `t`
/// (row-major): a 2-D transform on absolute values, giving an `r x r` tile.
fn abs_2d(m: &[&[f64]], t: &[f64]) -> Vec<f64> {
    let (r, c) = (m.len(), m[0].len());
    assert_eq!(t.len(), c * c);
    let mut half = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            half[i * c + j] = (0..c).map(|k| m[i][k].abs() * t[k * c + j]).sum();
        }
    }
    let mut out = vec![0.0; r * r];
    for i in 0..r {
        for j in 0..r {
            out[i * r + j] = (0..c).map(|k| half[i * c + k] * m[j][k].abs()).sum();
        }
    }
    out
}

fn rows<const C: usize>(m: &[[f64; C]]) -> Vec<&[f64]> {
    m.iter().map(|r| &r[..]).collect()
}

/// The transpose of `m`, as rows.
fn transposed<const C: usize>(m: &[[f64; C]]) -> Vec<Vec<f64>> {
    (0..C).map(|j| m.iter().map(|r| r[j]).collect()).collect()
}

/// The 4x4 output tiles of `d`: (image, tile row, tile column).
fn tiles(d: &Dims) -> Vec<(usize, usize, usize)> {
    let (th, tw) = (d.h.div_ceil(4), d.w.div_ceil(4));
    (0..d.batch * th * tw)
        .map(|t| (t / (th * tw), t / tw % th, t % tw))
        .collect()
}

/// `|B^T| |d_c| |B|` of every tile's 6x6 input patch (zeros outside the image), per tile and
/// input channel: `[t][ci][36]`.
fn abs_input_tiles(x: &[f64], d: &Dims) -> Vec<f64> {
    let bt = rows(&WINOGRAD_BT);
    tiles(d)
        .into_par_iter()
        .flat_map_iter(|(n, tr, tc)| {
            let bt = &bt;
            (0..d.c_in).flat_map(move |ci| {
                let mut patch = [0.0; 36];
                for i in 0..6 {
                    for j in 0..6 {
                        let (iy, ix) = ((tr * 4 + i).wrapping_sub(1), (tc * 4 + j).wrapping_sub(1));
                        if iy < d.h && ix < d.w {
                            patch[i * 6 + j] = x[nhwc((d.h, d.w, d.c_in), n, iy, ix, ci)].abs();
                        }
                    }
                }
                abs_2d(bt, &patch)
            })
        })
        .collect()
}

/// The magnitude that bounds the Winograd forward kernel's rounding, per output (NHWC): the
/// algorithm run on absolute values with absolute matrices,
/// `|A^T| [sum_c (|B^T| |d_c| |B|) ⊙ (|G| |g_c| |G^T|)] |A| + |b|`.
pub fn winograd_forward_magnitude(x: &[f64], w: &[f64], b: &[f64], d: Dims) -> Vec<f64> {
    let (c_in, c_out) = (d.c_in, d.c_out);
    let (g, at) = (rows(&WINOGRAD_G), rows(&WINOGRAD_AT));
    let tiles = tiles(&d);
    let v = abs_input_tiles(x, &d);
    // Per output channel: every tile's 4x4 magnitudes.
    let per_channel: Vec<Vec<f64>> = (0..c_out)
        .into_par_iter()
        .map(|co| {
            let u: Vec<Vec<f64>> = (0..c_in)
                .map(|ci| abs_2d(&g, &abs(&w[(co * c_in + ci) * 9..][..9])))
                .collect();
            (0..tiles.len())
                .flat_map(|t| {
                    let mut m = [0.0; 36];
                    for (ci, u) in u.iter().enumerate() {
                        let v = &v[(t * c_in + ci) * 36..][..36];
                        for p in 0..36 {
                            m[p] += v[p] * u[p];
                        }
                    }
                    abs_2d(&at, &m)
                })
                .collect()
        })
        .collect();
    let mut out = vec![0.0; d.batch * d.h * d.w * c_out];
    for (co, tile_mags) in per_channel.iter().enumerate() {
        for (t, &(n, tr, tc)) in tiles.iter().enumerate() {
            for i in 0..4 {
                for j in 0..4 {
                    let (y, xx) = (tr * 4 + i, tc * 4 + j);
                    if y < d.h && xx < d.w {
                        out[nhwc((d.h, d.w, c_out), n, y, xx, co)] =
                            tile_mags[t * 16 + i * 4 + j] + b[co].abs();
                    }
                }
            }
        }
    }
    out
}

/// The magnitude that bounds the Winograd weight gradient's rounding, per weight (OIHW): the
/// adjoint run on absolute values, `|G^T| [sum_tiles (|B^T| |d| |B|) ⊙ (|A| |dY| |A^T|)] |G|`,
/// for input `x` (NHWC) and output gradient `gy` (NHWC, `c_out` channels).
pub fn winograd_weight_grad_magnitude(x: &[f64], gy: &[f64], d: Dims) -> Vec<f64> {
    let (c_in, c_out) = (d.c_in, d.c_out);
    let tiles = tiles(&d);
    let v = abs_input_tiles(x, &d);
    let a = transposed(&WINOGRAD_AT);
    let a: Vec<&[f64]> = a.iter().map(|r| &r[..]).collect();
    let gt = transposed(&WINOGRAD_G);
    let gt: Vec<&[f64]> = gt.iter().map(|r| &r[..]).collect();
    // |A| |dY| |A^T| per tile and output channel: [t][co][36].
    let dm: Vec<f64> = tiles
        .par_iter()
        .flat_map_iter(|&(n, tr, tc)| {
            let a = &a;
            (0..c_out).flat_map(move |co| {
                let mut patch = [0.0; 16];
                for i in 0..4 {
                    for j in 0..4 {
                        let (y, xx) = (tr * 4 + i, tc * 4 + j);
                        if y < d.h && xx < d.w {
                            patch[i * 4 + j] = gy[nhwc((d.h, d.w, c_out), n, y, xx, co)].abs();
                        }
                    }
                }
                abs_2d(a, &patch)
            })
        })
        .collect();
    (0..c_out)
        .into_par_iter()
        .flat_map_iter(|co| {
            let (v, dm, gt, n_tiles) = (&v, &dm, &gt, tiles.len());
            (0..c_in).flat_map(move |ci| {
                let mut s = [0.0; 36];
                for t in 0..n_tiles {
                    let v = &v[(t * c_in + ci) * 36..][..36];
                    let m = &dm[(t * c_out + co) * 36..][..36];
                    for p in 0..36 {
                        s[p] += v[p] * m[p];
                    }
                }
                abs_2d(gt, &s)
            })
        })
        .collect()
}

/// f32 error bound of the direct (im2col + gemm) forward pass, plus the f64 reference's own
/// error, from the magnitudes of [`conv_reference`]. Each output is the bias plus a gemm dot
/// product of length `9 c_in` (padding taps are exact zeros): each term sees its product, at
/// most `9 c_in - 1` additions in whatever order gemm uses, and the bias addition, so
/// `gamma_{9 c_in + 1}`. The fused ReLU is 1-Lipschitz and adds nothing.
pub fn direct_forward_bound(mag: &[f64], c_in: usize) -> Vec<f64> {
    let n = 9 * c_in + 1;
    scaled(gamma(n, U32) + gamma(n, U64), mag)
}

/// f32 error bound of the Winograd F(4x4, 3x3) forward pass (`conv3x3/winograd.rs`), from
/// [`winograd_forward_magnitude`], plus the f64 reference's error (magnitudes of
/// [`conv_reference`]): `gamma_{c_in + 15}`. Counting the roundings each term sees:
/// - `B^T d B`, in f32: at most 3 per axis (the longest paths of `input_1d` are
///   `(4 z0 - 5 z2) + z4` and its mirror: the product by 5, the subtraction, the addition;
///   products by 2 and 4 are exact), so 6;
/// - `G g G^T`, in f64 and then rounded to f32: 1, and 1 more to cover the f64 error;
/// - the gemm over input channels: `c_in`;
/// - `A^T M A`, in f32: at most 3 per axis (`(m0 + (m1 + m2)) + (m3 + m4)`, and
///   `((m1 - m2) + 8 (m3 - m4)) + m5`; products by 2, 4, 8 are exact), so 6; the bias: 1.
///
/// The first three give `gamma_{c_in + 8}` of `sum_c |V_c| ⊙ |U_c|` on `M`, which the output
/// transform carries through `|A^T| . |A|` while adding `gamma_7` of its own:
/// `gamma_a + gamma_b + gamma_a gamma_b <= gamma_{a + b}`. The magnitude exceeds the direct
/// kernel's `sum |x w|` by the transforms' growth: up to 256 times (the corner output, where
/// `|A^T| |B^T| |G|` sums to 16 times the 3 taps per axis), at least 28 times.
pub fn winograd_forward_bound(winograd_mag: &[f64], mag: &[f64], c_in: usize) -> Vec<f64> {
    plus(
        &scaled(gamma(c_in + 15, U32), winograd_mag),
        &scaled(gamma(9 * c_in + 1, U64), mag),
    )
}

/// f32 error bounds of the convolution's backward pass (`conv3x3/cpu_kernel.rs` and
/// `winograd_weight_grad.rs`) for the output gradient `gy` (already masked by the ReLU), as
/// computed by the algorithm the kernel dispatches to: Winograd where the forward pass used it
/// and both sides have at least 16 channels, im2col + gemm otherwise. The gradients start at
/// zero, as in a fresh backward pass.
pub fn conv_grad_bounds(x: &[f64], w: &[f64], gy: &[f64], d: Dims, winograd: bool) -> ConvGrads {
    use crate::model::cpu::ops::WINOGRAD_MIN_CHANNELS;
    let Dims {
        batch,
        h,
        w: wd,
        c_in,
        c_out,
    } = d;
    let winograd = winograd && c_in >= WINOGRAD_MIN_CHANNELS && c_out >= WINOGRAD_MIN_CHANNELS;
    let mags = conv_adjoint(&abs(x), &abs(w), &abs(gy), d);
    let pixels = batch * h * wd;
    let x_bound = if winograd {
        // The forward kernel run on gy with the flipped, transposed weights (c_out channels in,
        // no bias): gamma_{c_out + 15} as derived for the forward pass, +1 for the addition
        // into the gradient.
        let dt = Dims {
            c_in: c_out,
            c_out: c_in,
            ..d
        };
        let wt = flipped_transposed(w, c_in, c_out);
        scaled(
            gamma(c_out + 16, U32),
            &winograd_forward_magnitude(gy, &wt, &vec![0.0; c_in], dt),
        )
    } else {
        // A gemm of length 9 c_out accumulated into the gradient.
        scaled(gamma(9 * c_out + 1, U32), &mags.x)
    };
    let w_bound = if winograd {
        // V = B^T d B: 6; dM = A dY A^T: 2 per axis (`grad_1d`: (z0 + z2) + (z1 + z3), and
        // (z0 + 4 z2) + (2 z1 + 8 z3)), so 4; dU = sum over the T tiles of V dM by gemm, block
        // after block into one accumulator: the product and at most T additions inside the
        // blocks plus one per block (at most T), so 2T + 1; G^T dU G in f64 rounded to f32: 2;
        // the addition into the gradient: 1. In all 2T + 14.
        let tiles = batch * h.div_ceil(4) * wd.div_ceil(4);
        scaled(
            gamma(2 * tiles + 14, U32),
            &winograd_weight_grad_magnitude(x, gy, d),
        )
    } else {
        // Per weight, a sum over all pixels: the product, at most `pixels` additions inside the
        // gemms, one per im2col tile (at most `pixels`) into the group's sum, at most 15 for
        // the 16 groups, and the addition into the gradient: 2 pixels + 17, rounded up.
        scaled(gamma(2 * pixels + 18, U32), &mags.w)
    };
    // The bias gradient sums every pixel's gradient in fixed groups (im2col) or chunks
    // (Winograd), then the groups, then adds into the gradient: at most 2 pixels + 17.
    let b_bound = scaled(gamma(2 * pixels + 17, U32), &mags.b);
    ConvGrads {
        x: x_bound,
        w: w_bound,
        b: b_bound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)] // index notation, as in the formulas
    fn winograd_matrices_compute_the_convolution_with_a_growth_of_at_most_256() {
        // Sum over positions p of A^T[y][p] B^T[p][i] G[p][k] is 1 where input i feeds output
        // y through tap k (i = y + k) and 0 elsewhere: F(4, 3) in one dimension.
        let mut sums = [0.0f64; 4];
        for (y, sum) in sums.iter_mut().enumerate() {
            for i in 0..6 {
                for k in 0..3 {
                    let (exact, growth) = (0..6).fold((0.0, 0.0), |(e, g), p| {
                        let t = WINOGRAD_AT[y][p] * WINOGRAD_BT[p][i] * WINOGRAD_G[p][k];
                        (e + t, g + t.abs())
                    });
                    let want = if i == y + k { 1.0 } else { 0.0 };
                    assert!((exact - want).abs() < 1e-15, "y {y}, i {i}, k {k}: {exact}");
                    *sum += growth;
                }
            }
        }
        // On absolute values, output y's 18 (input, tap) pairs weigh 16, 17, 24 and 48 in all
        // where the direct convolution's 3 taps weigh 3: per axis a growth of 16/3 to 16, so
        // in two dimensions between 28.4 and 256 times the direct kernel's magnitude, for
        // inputs and weights of uniform size.
        let rounded = sums.map(|s| (s * 1e9).round() / 1e9);
        assert_eq!(rounded, [16.0, 17.0, 24.0, 48.0]);
    }

    #[test]
    fn dot2_keeps_what_a_plain_sum_loses() {
        let mut acc = Dot2::default();
        for t in [1.0, 1e-17, -1.0, 1e-17] {
            acc.add(t);
        }
        assert_eq!(acc.value(), 2e-17);
        let mut prod = Dot2::default();
        let a = 1.0 + f64::EPSILON;
        prod.add_product(a, a);
        prod.add(-1.0);
        // (1 + e)^2 - 1 = 2e + e^2, which a plain product rounds to 2e.
        assert_eq!(
            prod.value(),
            2.0 * f64::EPSILON + f64::EPSILON * f64::EPSILON
        );
    }
}
