//! Convolution checks: the forward pass against an f64 reference, the gradients of x, w and b
//! against finite differences of it, and bit-identical results on 1 and 2 threads.
//!
//! Every tolerance is a rounding-error bound derived for the algorithm that runs (see
//! `ops/test_util.rs`), computed element by element from the reference's terms. It holds for
//! any summation order, so on gemm's AVX2 and AVX-512 kernels and whatever blocking a machine's
//! caches give them; the bit-for-bit checks are for one machine and stay exact.

use super::*;
use crate::model::cpu::ops::test_util::{
    abs, assert_within, conv_adjoint, conv_at, conv_grad_bounds, conv_reference, data,
    direct_forward_bound, fd_grad, gamma, plus, scaled, to_f64, winograd_forward_bound,
    winograd_forward_magnitude, Dot2, U64,
};

/// `max(0, z)` when `relu`, else `z`.
fn activate(z: &[f64], relu: bool) -> Vec<f64> {
    z.iter()
        .map(|&v| if relu { v.max(0.0) } else { v })
        .collect()
}

/// The f32 forward pass's error bound for `algorithm` (Winograd only runs from
/// [`WINOGRAD_MIN_CHANNELS`] input channels; narrower layers run direct), given the reference's
/// magnitudes `mag`.
fn forward_bound(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    d: Dims,
    mag: &[f64],
    algorithm: ConvAlgorithm,
) -> Vec<f64> {
    if algorithm == ConvAlgorithm::Winograd && d.c_in >= WINOGRAD_MIN_CHANNELS {
        winograd_forward_bound(&winograd_forward_magnitude(x, w, b, d), mag, d.c_in)
    } else {
        direct_forward_bound(mag, d.c_in)
    }
}

/// The part of the loss `sum_o r_o on_o z_o` made of `outputs` (flat NHWC indices), in
/// double-double, with its magnitude `sum |r_o| * (|b| + sum |x w|)`: the contract of
/// [`fd_grad`]. `on` is the ReLU's pattern as the f32 forward pass set it (`None`: no ReLU):
/// where a pre-activation is within rounding of zero the f32 pass may switch the ReLU either
/// way, and its backward pass then differentiates the piece of the function it chose.
fn local_loss(
    (x, w, b): (&[f64], &[f64], &[f64]),
    r: &[f64],
    d: Dims,
    on: Option<&[bool]>,
    outputs: impl Iterator<Item = usize>,
) -> (f64, f64) {
    let (mut loss, mut magnitude) = (Dot2::default(), 0.0);
    for o in outputs {
        if on.is_some_and(|on| !on[o]) {
            continue;
        }
        let (co, px) = (o % d.c_out, o / d.c_out);
        let z = conv_at(x, w, b, d, px / (d.h * d.w), px / d.w % d.h, px % d.w, co);
        loss.add_product(r[o], z.value());
        magnitude += r[o].abs() * z.magnitude();
    }
    (loss.value(), magnitude)
}

/// The outputs that input element `i` (flat NHWC index) feeds: its 3x3 neighbourhood, every
/// output channel.
fn fed_by_input(i: usize, d: Dims) -> impl Iterator<Item = usize> {
    let px = i / d.c_in;
    let (n, iy, ix) = (px / (d.h * d.w), px / d.w % d.h, px % d.w);
    let rows = iy.saturating_sub(1)..(iy + 2).min(d.h);
    rows.flat_map(move |y| {
        (ix.saturating_sub(1)..(ix + 2).min(d.w)).flat_map(move |xx| {
            (0..d.c_out).map(move |co| ((n * d.h + y) * d.w + xx) * d.c_out + co)
        })
    })
}

/// Every output of channel `co`.
fn of_channel(co: usize, d: Dims) -> impl Iterator<Item = usize> {
    (co..d.batch * d.h * d.w * d.c_out).step_by(d.c_out)
}

/// Runs forward and backward through dfdx with loss = sum(r * y), the convolution computed
/// by `algorithm`, and checks the output against the f64 reference and the gradients against
/// its finite differences, each within the sum of the f32 bound and the differences' own.
fn check_with<const B: usize, const H: usize, const W: usize, const CI: usize, const CO: usize>(
    act: Activation,
    algorithm: ConvAlgorithm,
) {
    let dev = Cpu::default();
    let d = Dims {
        batch: B,
        h: H,
        w: W,
        c_in: CI,
        c_out: CO,
    };
    let what = format!("{algorithm:?} {B}x{H}x{W}x{CI}->{CO} {act:?}");
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
    let (z, mag) = conv_reference(&xd, &wd, &bd, d);
    let bound = forward_bound(&xd, &wd, &bd, d, &mag, algorithm);
    let y32 = y.as_vec();
    assert_within(
        &y32,
        &activate(&z, relu),
        &bound,
        &format!("{what} forward"),
    );

    let grads = (y * r).sum().backward();
    let on: Vec<bool> = y32.iter().map(|v| *v > 0.0).collect();
    let on = relu.then_some(&on[..]);
    // The output gradient the backward pass sees: r, masked where the ReLU is off.
    let gy: Vec<f64> = rd
        .iter()
        .enumerate()
        .map(|(o, r)| if on.is_some_and(|on| !on[o]) { 0.0 } else { *r })
        .collect();
    let bounds = conv_grad_bounds(&xd, &wd, &gy, d, algorithm == ConvAlgorithm::Winograd);
    let (fd, fd_bound) = fd_grad(&xd, |q, i| {
        local_loss((q, &wd, &bd), &rd, d, on, fed_by_input(i, d))
    });
    assert_within(
        &grads.get(&x).as_vec(),
        &fd,
        &plus(&bounds.x, &fd_bound),
        &format!("{what} grad x"),
    );
    let (fd, fd_bound) = fd_grad(&wd, |q, i| {
        local_loss((&xd, q, &bd), &rd, d, on, of_channel(i / (9 * CI), d))
    });
    assert_within(
        &grads.get(&w).as_vec(),
        &fd,
        &plus(&bounds.w, &fd_bound),
        &format!("{what} grad w"),
    );
    let (fd, fd_bound) = fd_grad(&bd, |q, i| {
        local_loss((&xd, &wd, q), &rd, d, on, of_channel(i, d))
    });
    assert_within(
        &grads.get(&b).as_vec(),
        &fd,
        &plus(&bounds.b, &fd_bound),
        &format!("{what} grad b"),
    );
}

/// [`check_with`] for the direct (im2col + gemm) algorithm.
fn check<const B: usize, const H: usize, const W: usize, const CI: usize, const CO: usize>(
    act: Activation,
) {
    check_with::<B, H, W, CI, CO>(act, ConvAlgorithm::Direct);
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
fn direct_on_wide_layers_matches_reference_and_finite_differences() {
    // Wide enough for gemm's blocking and SIMD kernels to matter (the narrow cases above are
    // mostly edge handling).
    check::<1, 6, 5, 40, 24>(Activation::Relu);
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
    // Winograd kernel (not the direct fallback) runs.
    let winograd = ConvAlgorithm::Winograd;
    check_with::<2, 5, 7, 16, 5>(Activation::Identity, winograd);
    check_with::<2, 9, 6, 17, 9>(Activation::Relu, winograd);
    check_with::<1, 3, 2, 24, 3>(Activation::Relu, winograd);
    // At least 16 channels on both sides: the gradients are computed with Winograd too.
    check_with::<2, 5, 7, 16, 17>(Activation::Relu, winograd);
    check_with::<1, 6, 9, 20, 16>(Activation::Identity, winograd);
}

#[test]
fn the_bounds_reject_a_kernel_off_by_one_tap() {
    // A kernel that read its weights one tap to the side would compute this convolution
    // instead; at every size above, the bounds must reject it. Shown here for the loosest
    // bound (Winograd's) on the smallest channel count (the fewest terms to average out).
    let d = Dims {
        batch: 2,
        h: 5,
        w: 7,
        c_in: 16,
        c_out: 5,
    };
    let x = to_f64(&data(d.batch * d.h * d.w * d.c_in, 1));
    let w = to_f64(&data(d.c_out * d.c_in * 9, 2));
    let b = to_f64(&data(d.c_out, 3));
    let shifted: Vec<f64> = (0..w.len())
        .map(|i| w[i - i % 3 + (i % 3 + 1) % 3])
        .collect();
    let (z, mag) = conv_reference(&x, &w, &b, d);
    let (wrong, _) = conv_reference(&x, &shifted, &b, d);
    let bound = forward_bound(&x, &w, &b, d, &mag, ConvAlgorithm::Winograd);
    let ratios: Vec<f64> = wrong
        .iter()
        .zip(&z)
        .zip(&bound)
        .map(|((a, z), b)| (a - z).abs() / b)
        .collect();
    let rejected = ratios.iter().filter(|r| **r > 1.0).count();
    let worst = ratios.iter().fold(0.0f64, |a, r| a.max(*r));
    assert!(
        rejected * 10 > ratios.len() * 9,
        "only {rejected} of {} outputs out of bounds",
        ratios.len()
    );
    assert!(worst > 30.0, "off by at most {worst} bounds");
}

/// The output, then the input, weight and bias gradients of a wide VGG-like layer under
/// `algorithm`, for a fixed output gradient.
fn forward_and_gradients(dev: &Cpu, algorithm: ConvAlgorithm) -> [Vec<f32>; 4] {
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
    let out = y.as_vec();
    let grads = (y * r).sum().backward();
    [
        out,
        grads.get(&x).as_vec(),
        grads.get(&w).as_vec(),
        grads.get(&b).as_vec(),
    ]
}

#[test]
fn winograd_gradients_run_on_wide_layers_within_their_bounds() {
    let d = Dims {
        batch: 2,
        h: 13,
        w: 11,
        c_in: 48,
        c_out: 40,
    };
    let x = to_f64(&data(2 * 13 * 11 * 48, 31));
    let w = to_f64(&data(40 * 48 * 9, 32));
    let b = to_f64(&data(40, 33));
    let r = to_f64(&data(2 * 13 * 11 * 40, 34));
    let (z, mag) = conv_reference(&x, &w, &b, d);

    let dev = Cpu::default();
    let direct = forward_and_gradients(&dev, ConvAlgorithm::Direct);
    let winograd = forward_and_gradients(&dev, ConvAlgorithm::Winograd);
    for (algorithm, got) in [
        (ConvAlgorithm::Direct, &direct),
        (ConvAlgorithm::Winograd, &winograd),
    ] {
        let bound = forward_bound(&x, &w, &b, d, &mag, algorithm);
        assert_within(
            &got[0],
            &activate(&z, true),
            &bound,
            &format!("{algorithm:?} output"),
        );
        // The exact gradients of the piece of the function this forward pass chose (see
        // `local_loss`), in plain f64: at most 2 * 13 * 11 terms each, whose own error
        // widens the bound.
        let gy: Vec<f64> = r
            .iter()
            .zip(&got[0])
            .map(|(r, y)| if *y > 0.0 { *r } else { 0.0 })
            .collect();
        let exact = conv_adjoint(&x, &w, &gy, d);
        let mags = conv_adjoint(&abs(&x), &abs(&w), &abs(&gy), d);
        let reference_error = |m: &[f64]| scaled(gamma(2 * 13 * 11 + 9 * 40, U64), m);
        let bounds = conv_grad_bounds(&x, &w, &gy, d, algorithm == ConvAlgorithm::Winograd);
        for (name, got, want, bound, mag) in [
            ("input", &got[1], &exact.x, &bounds.x, &mags.x),
            ("weight", &got[2], &exact.w, &bounds.w, &mags.w),
            ("bias", &got[3], &exact.b, &bounds.b, &mags.b),
        ] {
            let bound = plus(bound, &reference_error(mag));
            assert_within(got, want, &bound, &format!("{algorithm:?} {name} gradient"));
        }
    }
    // Different bits prove the Winograd path ran.
    assert_ne!(
        winograd[1], direct[1],
        "the input gradient did not go through Winograd"
    );
    assert_ne!(
        winograd[2], direct[2],
        "the weight gradient did not go through Winograd"
    );
}

#[test]
fn winograd_and_direct_stay_within_their_bounds_on_a_vgg_like_layer() {
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
    let (x, w, b) = (to_f64(&xv), to_f64(&wv), to_f64(&bv));
    let (z, mag) = conv_reference(&x, &w, &b, d);
    let want = activate(&z, true);
    let winograd = super::winograd::conv3x3_winograd_nhwc(&xv, &wv, &bv, d, true);
    let mut direct = vec![f32::NAN; want.len()];
    let wm = oihw_to_gemm(&wv, d.c_in, d.c_out);
    cpu_kernel::conv3x3_nhwc(&xv, &wm, Some(&bv), &mut direct, d, false, true);
    for (algorithm, got) in [
        (ConvAlgorithm::Winograd, &winograd),
        (ConvAlgorithm::Direct, &direct),
    ] {
        let bound = forward_bound(&x, &w, &b, d, &mag, algorithm);
        assert_within(
            got,
            &want,
            &bound,
            &format!("{algorithm:?} 128-channel layer"),
        );
    }
    // Not a bound but a statistic over 37,584 outputs, which no summation order can flip:
    // Winograd's transforms round about ten times more than the direct kernel does (its
    // bound is 28 to 256 times larger), so its root-mean-square error is the larger.
    let rms = |got: &[f32]| {
        let sum: f64 = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (*g as f64 - w).powi(2))
            .sum();
        (sum / want.len() as f64).sqrt()
    };
    let (ew, ed) = (rms(&winograd), rms(&direct));
    eprintln!("rms error: winograd {ew:.2e}, direct {ed:.2e}");
    assert!(
        ew > ed,
        "winograd should round more than direct ({ew:e} vs {ed:e})"
    );
}
