//! Pillow-compatible bicubic resampling of interleaved 8-bit images.
//!
//! The seed experiment resized with Pillow's `Image.resize` and its default filter, which for
//! modes L, RGB and RGBA is `BICUBIC` since Pillow 7 (2020). This module reimplements that exact
//! algorithm (Pillow's `src/libImaging/Resample.c`) rather than calling the `image` crate's
//! `CatmullRom`, which uses the same kernel but computes in `f32`, samples rows before columns
//! and so differs from Pillow by ±1 on many pixels. Reproducing Pillow's arithmetic keeps our
//! arrays byte-comparable with the seed's, and needs no extra dependency:
//!
//! - Keys cubic convolution with `a = -0.5`, support 2, widened by the scale factor when
//!   shrinking (so downscaling averages every source pixel, i.e. antialiases);
//! - weights normalised in `f64`, then rounded to 22-bit fixed point;
//! - a horizontal pass first, rounded and clamped to `u8`, then a vertical pass.

/// Bits of fixed-point precision of the weights, as Pillow's `PRECISION_BITS` (32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (`a = -0.5`, i.e. Catmull-Rom).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point weights of every output position along one axis.
struct Coeffs {
    /// Taps per output position (unused trailing taps are zero).
    ksize: usize,
    /// First source index and number of taps, per output position.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output position.
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a full-image box.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut pre = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates with a C cast; both ends are clamped, so truncation of a negative
        // value and flooring agree after the clamp.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, p) in pre.iter_mut().enumerate().take(n) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *p = w;
            ww += w;
        }
        let k = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (kx, p) in k.iter_mut().zip(&pre).take(n) {
            let w = if ww != 0.0 { p / ww } else { *p };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *kx = if w < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: rounds a fixed-point sum (already offset by one half) to `u8`.
#[inline]
fn clip8(v: i32) -> u8 {
    if v >= 1 << (PRECISION_BITS + 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// The horizontal pass for `C` channels, compiled for AVX2 when the CPU has it: the default
/// x86-64 target lacks a packed 32-bit multiply, which leaves this loop scalar, and it is the
/// bulk of the work (every source pixel times about four taps per channel).
fn horizontal<const C: usize>(rows: &[u8], width: usize, horiz: &Coeffs, out_w: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { horizontal_avx2::<C>(rows, width, horiz, out_w) };
    }
    horizontal_impl::<C>(rows, width, horiz, out_w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn horizontal_avx2<const C: usize>(
    rows: &[u8],
    width: usize,
    horiz: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    horizontal_impl::<C>(rows, width, horiz, out_w)
}

/// Deinterleaves each row into `C` planes, then takes one contiguous dot product per output
/// sample, a loop the compiler vectorises. Integer sums are exact (weights have 22 bits, so no
/// sum can overflow), so any order of the additions gives Pillow's result bit for bit; the
/// wrapping operations only spare the loop the overflow checks of test builds, which would
/// stop vectorisation.
#[inline(always)]
fn horizontal_impl<const C: usize>(
    rows: &[u8],
    width: usize,
    horiz: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let n_rows = rows.len() / (width * C);
    let mut tmp = vec![0u8; n_rows * out_w * C];
    let mut planes = vec![0u8; if C == 1 { 0 } else { width * C }];
    for (in_row, out_row) in rows
        .chunks_exact(width * C)
        .zip(tmp.chunks_exact_mut(out_w * C))
    {
        if C > 1 {
            for (x, px) in in_row.chunks_exact(C).enumerate() {
                for c in 0..C {
                    planes[c * width + x] = px[c];
                }
            }
        }
        for c in 0..C {
            let plane = if C == 1 {
                in_row
            } else {
                &planes[c * width..(c + 1) * width]
            };
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..][..n];
                let ss = k
                    .iter()
                    .zip(&plane[xmin..xmin + n])
                    .fold(half, |a, (&w, &p)| {
                        a.wrapping_add(w.wrapping_mul(i32::from(p)))
                    });
                out_row[xx * C + c] = clip8(ss);
            }
        }
    }
    tmp
}

/// The horizontal pass for any channel count (not used by the stages; kept for completeness).
fn horizontal_any(
    rows: &[u8],
    width: usize,
    channels: usize,
    horiz: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let n_rows = rows.len() / (width * channels);
    let mut tmp = vec![0u8; n_rows * out_w * channels];
    for (in_row, out_row) in rows
        .chunks_exact(width * channels)
        .zip(tmp.chunks_exact_mut(out_w * channels))
    {
        for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
            let k = &horiz.weights[xx * horiz.ksize..][..n];
            let px = &in_row[xmin * channels..(xmin + n) * channels];
            for c in 0..channels {
                let mut ss = half;
                for (&w, p) in k.iter().zip(px.chunks_exact(channels)) {
                    ss += i32::from(p[c]) * w;
                }
                out_row[xx * channels + c] = clip8(ss);
            }
        }
    }
    tmp
}

/// Resizes an interleaved `width x height x channels` 8-bit image to `out_w x out_h`.
///
/// Zero-sized inputs give a black image.
///
/// # Panics
/// If `src.len() != width * height * channels` (a caller bug: decoders return exactly that).
pub fn resize_u8(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        width * height * channels,
        "resize_u8: buffer does not hold {width}x{height}x{channels} bytes"
    );
    if width == 0 || height == 0 {
        return vec![0; out_w * out_h * channels];
    }
    let vert = coeffs(height, out_h);
    // Only the source rows the vertical pass reads need the horizontal pass.
    let first_row = vert.bounds.first().map_or(0, |b| b.0);
    let last_row = vert.bounds.last().map_or(height, |b| b.0 + b.1);

    let (tmp, tmp_w, row0) = if out_w != width {
        let horiz = coeffs(width, out_w);
        let rows = &src[first_row * width * channels..last_row * width * channels];
        let tmp = match channels {
            1 => horizontal::<1>(rows, width, &horiz, out_w),
            3 => horizontal::<3>(rows, width, &horiz, out_w),
            4 => horizontal::<4>(rows, width, &horiz, out_w),
            _ => horizontal_any(rows, width, channels, &horiz, out_w),
        };
        (tmp, out_w, first_row)
    } else {
        (src.to_vec(), width, 0)
    };

    if out_h == height {
        return tmp;
    }
    vertical(&tmp, tmp_w * channels, row0, &vert, out_h)
}

/// The vertical pass over rows of `stride` bytes (the first being source row `row0`), with the
/// same AVX2 dispatch as [`horizontal`].
fn vertical(tmp: &[u8], stride: usize, row0: usize, vert: &Coeffs, out_h: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { vertical_avx2(tmp, stride, row0, vert, out_h) };
    }
    vertical_impl(tmp, stride, row0, vert, out_h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_avx2(tmp: &[u8], stride: usize, row0: usize, vert: &Coeffs, out_h: usize) -> Vec<u8> {
    vertical_impl(tmp, stride, row0, vert, out_h)
}

#[inline(always)]
fn vertical_impl(tmp: &[u8], stride: usize, row0: usize, vert: &Coeffs, out_h: usize) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i32; stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, n) = vert.bounds[yy];
        let k = &vert.weights[yy * vert.ksize..][..n];
        acc.fill(half);
        // Row-at-a-time accumulation keeps the inner loop contiguous (and vectorisable).
        for (i, &w) in k.iter().enumerate() {
            let row = &tmp[(ymin - row0 + i) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(w.wrapping_mul(i32::from(p)));
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 separable bicubic with Pillow's geometry but no fixed point, written
    /// independently of the code above (per-pixel, vertical sums over a float temp image).
    fn naive(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<f64> {
        fn axis(in_size: usize, out_size: usize) -> Vec<Vec<(usize, f64)>> {
            let scale = in_size as f64 / out_size as f64;
            let fs = scale.max(1.0);
            (0..out_size)
                .map(|o| {
                    let center = (o as f64 + 0.5) * scale;
                    let taps: Vec<(usize, f64)> = (0..in_size)
                        .map(|i| (i, bicubic((i as f64 + 0.5 - center) / fs)))
                        .filter(|&(_, w)| w != 0.0)
                        .collect();
                    let sum: f64 = taps.iter().map(|t| t.1).sum();
                    taps.into_iter().map(|(i, w)| (i, w / sum)).collect()
                })
                .collect()
        }
        let hx = axis(w, ow);
        let vy = axis(h, oh);
        let mut tmp = vec![0.0; ow * h];
        for y in 0..h {
            for (x, taps) in hx.iter().enumerate() {
                let v: f64 = taps.iter().map(|&(i, wt)| wt * src[y * w + i] as f64).sum();
                // Pillow stores the intermediate as u8.
                tmp[y * ow + x] = v.round().clamp(0.0, 255.0);
            }
        }
        let mut out = vec![0.0; ow * oh];
        for (y, taps) in vy.iter().enumerate() {
            for x in 0..ow {
                out[y * ow + x] = taps.iter().map(|&(i, wt)| wt * tmp[i * ow + x]).sum();
            }
        }
        out
    }

    fn pattern(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                ((x * 37 + y * 11 + (x * y) % 23) % 256) as u8
            })
            .collect()
    }

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        // Keys' cubic at 0.5 with a = -0.5: (1.5 * 0.125) - (2.5 * 0.25) + 1 = 0.5625.
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 50 * 40 * 3];
        let out = resize_u8(&src, 50, 40, 3, 7, 9);
        assert_eq!(out.len(), 7 * 9 * 3);
        assert!(out.iter().all(|&v| v == 77), "{out:?}");
    }

    #[test]
    fn matches_naive_float_resize_within_one() {
        for &(w, h, ow, oh) in &[(64, 48, 13, 11), (30, 20, 45, 37), (237, 300, 237, 64)] {
            let src = pattern(w, h);
            let fast = resize_u8(&src, w, h, 1, ow, oh);
            let slow = naive(&src, w, h, ow, oh);
            let mut exact = 0;
            for (i, (&f, &s)) in fast.iter().zip(&slow).enumerate() {
                let s8 = s.round().clamp(0.0, 255.0);
                assert!(
                    (f as f64 - s8).abs() <= 1.0,
                    "{w}x{h}->{ow}x{oh} pixel {i}: {f} vs {s}"
                );
                exact += usize::from(f as f64 == s8);
            }
            assert!(
                exact * 10 >= fast.len() * 9,
                "only {exact} of {} exact",
                fast.len()
            );
        }
    }

    /// Values produced by Pillow 13.0.0:
    /// `Image.frombytes("L", (64, 48), bytes(pattern)).resize((13, 11))` (default BICUBIC),
    /// first row and last row of the result.
    #[test]
    fn matches_pillow_reference() {
        let out = resize_u8(&pattern(64, 48), 64, 48, 1, 13, 11);
        assert_eq!(&out[..13], &PILLOW_FIRST_ROW);
        assert_eq!(&out[10 * 13..], &PILLOW_LAST_ROW);
    }

    const PILLOW_FIRST_ROW: [u8; 13] = [
        108, 115, 141, 128, 110, 130, 126, 116, 118, 144, 131, 120, 128,
    ];
    const PILLOW_LAST_ROW: [u8; 13] = [
        112, 128, 137, 125, 127, 135, 126, 113, 128, 136, 122, 123, 142,
    ];

    #[test]
    fn channels_are_independent() {
        let gray = pattern(40, 30);
        let g = resize_u8(&gray, 40, 30, 1, 9, 8);
        let inv = resize_u8(
            &gray.iter().map(|v| 255 - v).collect::<Vec<_>>(),
            40,
            30,
            1,
            9,
            8,
        );
        for channels in 2..=4 {
            let multi: Vec<u8> = gray
                .iter()
                .flat_map(|&v| [v, 255 - v, v, 255 - v][..channels].to_vec())
                .collect();
            let c = resize_u8(&multi, 40, 30, channels, 9, 8);
            for (i, (&v, &w)) in g.iter().zip(&inv).enumerate() {
                assert_eq!(c[i * channels], v, "{channels} channels, pixel {i}");
                assert_eq!(c[i * channels + 1], w, "{channels} channels, pixel {i}");
            }
        }
    }
}
