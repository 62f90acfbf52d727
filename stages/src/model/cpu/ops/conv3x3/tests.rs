//! Convolution checks: forward against plain loops (f64), gradients of x, w and b against
//! finite differences of the f64 reference, and bit-identical results on 1 and 2 threads.

use super::*;
use crate::model::cpu::ops::test_util::{assert_close, data, fd_grad, to_f64};

/// Plain-loop reference: NHWC x, OIHW w, stride 1, padding 1, then the activation.
fn naive(x: &[f64], w: &[f64], b: &[f64], d: Dims, relu: bool) -> Vec<f64> {
    let Dims {
        batch,
        h,
        w: wd,
        c_in,
        c_out,
    } = d;
    let mut out = vec![0.0; batch * h * wd * c_out];
    for n in 0..batch {
        for y in 0..h {
            for xx in 0..wd {
                for co in 0..c_out {
                    let mut acc = b[co];
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (iy, ix) =
                                (y as isize + kh as isize - 1, xx as isize + kw as isize - 1);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for ci in 0..c_in {
                                let xv = x[((n * h + iy as usize) * wd + ix as usize) * c_in + ci];
                                acc += xv * w[((co * c_in + ci) * 3 + kh) * 3 + kw];
                            }
                        }
                    }
                    out[((n * h + y) * wd + xx) * c_out + co] =
                        if relu { acc.max(0.0) } else { acc };
                }
            }
        }
    }
    out
}

/// Runs forward and backward through dfdx with loss = sum(r * y) and compares everything
/// with the f64 reference.
fn check<const B: usize, const H: usize, const W: usize, const CI: usize, const CO: usize>(
    act: Activation,
) {
    check_with::<B, H, W, CI, CO>(act, ConvAlgorithm::Direct, 1e-5);
}

/// [`check`] with the convolution computed by `algorithm`, forward compared within
/// `forward_tol`; gradients against finite differences as always.
fn check_with<const B: usize, const H: usize, const W: usize, const CI: usize, const CO: usize>(
    act: Activation,
    algorithm: ConvAlgorithm,
    forward_tol: f64,
) {
    let dev = Cpu::default();
    let d = Dims {
        batch: B,
        h: H,
        w: W,
        c_in: CI,
        c_out: CO,
    };
    let relu = act == Activation::Relu;
    let (xv, wv, bv) = (data(B * H * W * CI, 1), data(CO * CI * 9, 2), data(CO, 3));
    let rv = data(B * H * W * CO, 4);
    let x = dev.tensor_from_vec(
        xv.clone(),
        (Const::<B>, Const::<H>, Const::<W>, Const::<CI>),
    );
    let w: Tensor<Rank4<CO, CI, 3, 3>, f32, Cpu> =
        dev.tensor_from_vec(wv.clone(), Default::default());
    let b: Tensor<Rank1<CO>, f32, Cpu> = dev.tensor_from_vec(bv.clone(), Default::default());
    let r = dev.tensor_from_vec(
        rv.clone(),
        (Const::<B>, Const::<H>, Const::<W>, Const::<CO>),
    );

    let y = try_conv3x3(x.leaky_trace(), w.retaped(), b.retaped(), act, algorithm).unwrap();
    let (xd, wd, bd, rd) = (to_f64(&xv), to_f64(&wv), to_f64(&bv), to_f64(&rv));
    assert_close(
        &y.as_vec(),
        &naive(&xd, &wd, &bd, d, relu),
        forward_tol,
        "forward",
    );

    let grads = (y * r).sum().backward();
    let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
        naive(x, w, b, d, relu)
            .iter()
            .zip(&rd)
            .map(|(a, b)| a * b)
            .sum()
    };
    assert_close(
        &grads.get(&x).as_vec(),
        &fd_grad(&xd, |p| loss(p, &wd, &bd)),
        1e-4,
        "grad x",
    );
    assert_close(
        &grads.get(&w).as_vec(),
        &fd_grad(&wd, |p| loss(&xd, p, &bd)),
        1e-4,
        "grad w",
    );
    assert_close(
        &grads.get(&b).as_vec(),
        &fd_grad(&bd, |p| loss(&xd, &wd, p)),
        1e-4,
        "grad b",
    );
}

#[test]
fn conv_5x5_matches_reference_and_finite_differences() {
    check::<2, 5, 5, 3, 5>(Activation::Identity);
}

#[test]
fn conv_7x9_relu_matches_reference_and_finite_differences() {
    check::<2, 7, 9, 3, 5>(Activation::Relu);
}

#[test]
fn conv_9x7_and_1x1_images() {
    check::<2, 9, 7, 3, 5>(Activation::Identity);
    check::<1, 1, 1, 4, 2>(Activation::Relu);
    check::<2, 2, 3, 2, 3>(Activation::Identity);
}

#[test]
fn weight_layout_conversions_are_inverse_views() {
    // oihw_to_gemm puts w[co][ci][kh][kw] at row (kh * 3 + kw) * c_in + ci, column co.
    let w: Vec<f32> = (0..2 * 3 * 9).map(|v| v as f32).collect();
    let wm = oihw_to_gemm(&w, 3, 2);
    let (co, ci, kh, kw) = (1, 1, 1, 2);
    assert_eq!(
        wm[((kh * 3 + kw) * 3 + ci) * 2 + co],
        w[((co * 3 + ci) * 3 + kh) * 3 + kw]
    );
}

/// Forward + backward on a size with several tiles per image and several weight-gradient
/// groups (and several Winograd blocks), returning every output bit.
fn run_bits(dev: &Cpu, algorithm: ConvAlgorithm) -> Vec<u32> {
    type X = (Const<3>, Const<40>, Const<36>, Const<64>);
    let x = dev.tensor_from_vec(data(3 * 40 * 36 * 64, 11), X::default());
    let w: Tensor<Rank4<32, 64, 3, 3>, f32, Cpu> =
        dev.tensor_from_vec(data(32 * 64 * 9, 12), Default::default());
    let b: Tensor<Rank1<32>, f32, Cpu> = dev.tensor_from_vec(data(32, 13), Default::default());
    let y = try_conv3x3(
        x.leaky_trace(),
        w.retaped(),
        b.retaped(),
        Activation::Relu,
        algorithm,
    )
    .unwrap();
    let yv = y.as_vec();
    let grads = y.square().sum().backward();
    let mut all = yv;
    all.extend(grads.get(&x).as_vec());
    all.extend(grads.get(&w).as_vec());
    all.extend(grads.get(&b).as_vec());
    all.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn results_are_bit_identical_on_one_and_two_threads() {
    let dev = Cpu::default();
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::Winograd] {
        let one = pool(1).install(|| run_bits(&dev, algorithm));
        let two = pool(2).install(|| run_bits(&dev, algorithm));
        let again = pool(2).install(|| run_bits(&dev, algorithm));
        assert_eq!(
            one.len(),
            3 * 40 * 36 * 32 + 3 * 40 * 36 * 64 + 32 * 64 * 9 + 32
        );
        assert!(
            one == two,
            "{algorithm:?}: 1-thread and 2-thread results differ"
        );
        assert!(two == again, "{algorithm:?}: two 2-thread runs differ");
    }
}

#[test]
fn winograd_forward_and_gradients_on_odd_sizes() {
    // Sizes that are not multiples of the 4x4 output tile, channels not multiples of the
    // 8 transform lanes, one image smaller than a tile; at least 16 input channels so the
    // Winograd kernel (not the direct fallback) runs. Its rounding error is larger than the
    // direct kernel's, hence the looser forward tolerance.
    check_with::<2, 5, 7, 16, 5>(Activation::Identity, ConvAlgorithm::Winograd, 2e-5);
    check_with::<2, 9, 6, 17, 9>(Activation::Relu, ConvAlgorithm::Winograd, 2e-5);
    check_with::<1, 3, 2, 24, 3>(Activation::Relu, ConvAlgorithm::Winograd, 2e-5);
    // At least 16 channels on both sides: the gradients are computed with Winograd too.
    check_with::<2, 5, 7, 16, 17>(Activation::Relu, ConvAlgorithm::Winograd, 2e-5);
    check_with::<1, 6, 9, 20, 16>(Activation::Identity, ConvAlgorithm::Winograd, 2e-5);
}

/// The input, weight and bias gradients of a wide VGG-like layer under `algorithm`, for a
/// fixed output gradient.
fn gradients(dev: &Cpu, algorithm: ConvAlgorithm) -> [Vec<f32>; 3] {
    type X = (Const<2>, Const<13>, Const<11>, Const<48>);
    let x = dev.tensor_from_vec(data(2 * 13 * 11 * 48, 31), X::default());
    let w: Tensor<Rank4<40, 48, 3, 3>, f32, Cpu> =
        dev.tensor_from_vec(data(40 * 48 * 9, 32), Default::default());
    let b: Tensor<Rank1<40>, f32, Cpu> = dev.tensor_from_vec(data(40, 33), Default::default());
    let r = dev.tensor_from_vec(
        data(2 * 13 * 11 * 40, 34),
        (Const::<2>, Const::<13>, Const::<11>, Const::<40>),
    );
    let y = try_conv3x3(
        x.leaky_trace(),
        w.retaped(),
        b.retaped(),
        Activation::Relu,
        algorithm,
    )
    .unwrap();
    let grads = (y * r).sum().backward();
    [
        grads.get(&x).as_vec(),
        grads.get(&w).as_vec(),
        grads.get(&b).as_vec(),
    ]
}

#[test]
fn winograd_gradients_run_on_wide_layers_and_agree_with_direct() {
    let dev = Cpu::default();
    let direct = gradients(&dev, ConvAlgorithm::Direct);
    let winograd = gradients(&dev, ConvAlgorithm::Winograd);
    for (name, (got, want)) in ["input", "weight"].iter().zip(winograd.iter().zip(&direct)) {
        let want: Vec<f64> = want.iter().map(|v| *v as f64).collect();
        let err = rel_error(got, &want);
        // Different bits prove the Winograd path ran; the size of the difference is the
        // rounding of the transforms.
        assert!(err > 0.0, "the {name} gradient did not go through Winograd");
        assert!(err < 2e-5, "winograd {name} gradient off by {err:e}");
    }
    // The bias gradient is the same sum either way, in an order of its own.
    let want: Vec<f64> = direct[2].iter().map(|v| *v as f64).collect();
    assert!(rel_error(&winograd[2], &want) < 1e-6);
}

/// Largest error of `got` against `want`, relative to the largest `|want|`.
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |a, (g, w)| a.max((*g as f64 - w).abs()));
    err / scale
}

#[test]
fn winograd_rounds_more_than_direct_but_within_2e_5_of_the_output_scale() {
    // A VGG-like layer: 128 input channels, several blocks of tiles, a partial last tile.
    let d = Dims {
        batch: 2,
        h: 29,
        w: 27,
        c_in: 128,
        c_out: 24,
    };
    let (xv, wv, bv) = (
        data(d.batch * d.h * d.w * d.c_in, 21),
        data(d.c_out * d.c_in * 9, 22),
        data(d.c_out, 23),
    );
    let want = naive(&to_f64(&xv), &to_f64(&wv), &to_f64(&bv), d, true);
    let winograd = super::winograd::conv3x3_winograd_nhwc(&xv, &wv, &bv, d, true);
    let mut direct = vec![f32::NAN; want.len()];
    let wm = oihw_to_gemm(&wv, d.c_in, d.c_out);
    cpu_kernel::conv3x3_nhwc(&xv, &wm, Some(&bv), &mut direct, d, false, true);
    let (ew, ed) = (rel_error(&winograd, &want), rel_error(&direct, &want));
    // Measured: direct about 5e-7, Winograd about 6e-6 of the output scale.
    assert!(ed < 2e-6, "direct kernel error {ed:e}");
    assert!(ew < 2e-5, "winograd kernel error {ew:e}");
    assert!(
        ew > ed,
        "winograd should round more than direct ({ew:e} vs {ed:e})"
    );
}
