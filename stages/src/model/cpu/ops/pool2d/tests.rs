//! Pooling checks: forward against plain loops, gradients against finite differences of the
//! f64 reference, odd sizes (floor) included, each within a derived error bound (see
//! `ops/test_util.rs`).

use super::*;
use crate::model::cpu::ops::test_util::{
    assert_within, data, fd_grad, gamma, plus, scaled, to_f64, Dot2, FD_STEP, U32, U64,
};

/// Shapes of one pooling: `b` images of `h x w x c`, windows of `k x k`.
#[derive(Clone, Copy)]
struct Shape {
    k: usize,
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl Shape {
    fn out_len(&self) -> usize {
        self.b * (self.h / self.k) * (self.w / self.k) * self.c
    }

    /// The flat input indices of output `o`'s window.
    fn window(&self, o: usize) -> impl Iterator<Item = usize> {
        let Shape { k, h, w, c, .. } = *self;
        let (ow, oh) = (w / k, h / k);
        let (ch, px) = (o % c, o / c);
        let (n, y, xx) = (px / (oh * ow), px / ow % oh, px % ow);
        (0..k * k).map(move |t| ((n * h + y * k + t / k) * w + xx * k + t % k) * c + ch)
    }

    /// The output whose window holds input `i`, if any (floor sizing drops the last rows and
    /// columns when `k` does not divide the size).
    fn output_of(&self, i: usize) -> Option<usize> {
        let Shape { k, h, w, c, .. } = *self;
        let (ch, px) = (i % c, i / c);
        let (n, iy, ix) = (px / (h * w), px / w % h, px % w);
        let (y, xx) = (iy / k, ix / k);
        (y < h / k && xx < w / k).then(|| ((n * (h / k) + y) * (w / k) + xx) * c + ch)
    }
}

/// Reference pooling of output `o` in double-double: the value and its magnitude `sum |x| / k^2`
/// (average) or `|max|` (max).
fn pooled(x: &[f64], kind: PoolKind, s: Shape, o: usize) -> (f64, f64) {
    match kind {
        PoolKind::Max => {
            let m = s.window(o).map(|i| x[i]).fold(f64::NEG_INFINITY, f64::max);
            (m, m.abs())
        }
        PoolKind::Avg => {
            let mut sum = Dot2::default();
            s.window(o).for_each(|i| sum.add(x[i]));
            let kk = (s.k * s.k) as f64;
            (sum.value() / kk, sum.magnitude() / kk)
        }
    }
}

/// The part of the loss `sum_o r_o pool(x)_o` that depends on input `i`, with its magnitude,
/// as [`fd_grad`] wants it.
fn local_loss(x: &[f64], r: &[f64], kind: PoolKind, s: Shape, i: usize) -> (f64, f64) {
    let Some(o) = s.output_of(i) else {
        return (0.0, 0.0);
    };
    let (v, mag) = pooled(x, kind, s, o);
    let mut loss = Dot2::default();
    loss.add_product(r[o], v);
    (loss.value(), r[o].abs() * mag)
}

fn check_max<
    const B: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>() {
    let dev = Cpu::default();
    let s = Shape {
        k: 2,
        b: B,
        h: H,
        w: W,
        c: C,
    };
    let xv = data(B * H * W * C, 21);
    let rv = data(B * OH * OW * C, 22);
    let x = dev.tensor_from_vec(xv.clone(), (Const::<B>, Const::<H>, Const::<W>, Const::<C>));
    let r = dev.tensor_from_vec(
        rv.clone(),
        (Const::<B>, Const::<OH>, Const::<OW>, Const::<C>),
    );
    let y = try_max_pool2x2::<_, H, W, C, OH, OW, _, _>(x.leaky_trace()).unwrap();
    let (xd, rd) = (to_f64(&xv), to_f64(&rv));
    // The maximum of f32 values is one of them: exact, bound 0.
    let want: Vec<f64> = (0..s.out_len())
        .map(|o| pooled(&xd, PoolKind::Max, s, o).0)
        .collect();
    assert_within(&y.as_vec(), &want, &vec![0.0; want.len()], "max forward");
    // The finite differences are exact only if no step of h changes which element is the
    // maximum: every window's largest value must lead the next by more than 2h.
    for o in 0..s.out_len() {
        let mut vals: Vec<f64> = s.window(o).map(|i| xd[i]).collect();
        vals.sort_by(|a, b| b.total_cmp(a));
        assert!(
            vals[0] - vals[1] > 2.0 * FD_STEP,
            "window {o} has a near tie; pick another seed"
        );
    }
    let grads = (y * r).sum().backward();
    // The f32 gradient routes each r_o to one input (windows do not overlap) and adds it to a
    // zero: exact, so only the finite differences' own error remains.
    let (fd, fd_bound) = fd_grad(&xd, |q, i| local_loss(q, &rd, PoolKind::Max, s, i));
    assert_within(&grads.get(&x).as_vec(), &fd, &fd_bound, "max grad x");
}

fn check_avg<
    const K: usize,
    const B: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>() {
    let dev = Cpu::default();
    let s = Shape {
        k: K,
        b: B,
        h: H,
        w: W,
        c: C,
    };
    let xv = data(B * H * W * C, 31);
    let rv = data(B * OH * OW * C, 32);
    let x = dev.tensor_from_vec(xv.clone(), (Const::<B>, Const::<H>, Const::<W>, Const::<C>));
    let r = dev.tensor_from_vec(
        rv.clone(),
        (Const::<B>, Const::<OH>, Const::<OW>, Const::<C>),
    );
    let y = try_avg_pool::<_, K, H, W, C, OH, OW, _, _>(x.leaky_trace()).unwrap();
    let (xd, rd) = (to_f64(&xv), to_f64(&rv));
    let (want, mag): (Vec<f64>, Vec<f64>) = (0..s.out_len())
        .map(|o| pooled(&xd, PoolKind::Avg, s, o))
        .unzip();
    // The kernel adds the k^2 values in turn (at most k^2 - 1 roundings per term), then
    // multiplies by 1/k^2 rounded to f32 (2 more): gamma_{k^2 + 1} of sum |x| / k^2. The
    // reference is a double-double sum divided once, accurate to 3u (f64) of the same size.
    let kk = K * K;
    let bound = scaled(gamma(kk + 1, U32) + 3.0 * U64, &mag);
    assert_within(&y.as_vec(), &want, &bound, "avg forward");
    let grads = (y * r).sum().backward();
    // Each input in a window receives r_o times 1/k^2 rounded to f32, added to a zero: 3
    // roundings of |r_o| / k^2; inputs outside every window get an exact zero.
    let grad_bound: Vec<f64> = (0..xd.len())
        .map(|i| {
            s.output_of(i)
                .map_or(0.0, |o| gamma(3, U32) * rd[o].abs() / kk as f64)
        })
        .collect();
    // Averaging is linear: no kinks, the finite differences have rounding error only.
    let (fd, fd_bound) = fd_grad(&xd, |q, i| local_loss(q, &rd, PoolKind::Avg, s, i));
    assert_within(
        &grads.get(&x).as_vec(),
        &fd,
        &plus(&grad_bound, &fd_bound),
        "avg grad x",
    );
}

#[test]
fn max_pool_even_and_odd_sizes_floor() {
    check_max::<2, 4, 4, 3, 2, 2>();
    check_max::<2, 5, 5, 3, 2, 2>();
    check_max::<2, 7, 9, 5, 3, 4>();
    check_max::<1, 3, 2, 2, 1, 1>();
}

#[test]
fn max_pool_known_values_and_tie_goes_to_first() {
    let dev = Cpu::default();
    // One channel, 3x3 (floor -> 1x1 from the top-left 2x2 window [1, 5; 5, 0]).
    let x = dev.tensor_from_vec(
        vec![1.0, 5.0, 9.0, 5.0, 0.0, 9.0, 9.0, 9.0, 9.0],
        (Const::<1>, Const::<3>, Const::<3>, Const::<1>),
    );
    let y = try_max_pool2x2::<_, 3, 3, 1, 1, 1, _, _>(x.leaky_trace()).unwrap();
    assert_eq!(y.as_vec(), vec![5.0]);
    let g = y.sum().backward().get(&x).as_vec();
    assert_eq!(g, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn avg_pool_4x4_on_7x7_and_global() {
    check_avg::<4, 2, 7, 7, 3, 1, 1>();
    check_avg::<2, 2, 5, 7, 2, 2, 3>();
    check_avg::<5, 2, 5, 5, 4, 1, 1>();
    check_avg::<1, 1, 3, 3, 2, 3, 3>();
}

#[test]
fn flatten_keeps_hwc_order() {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(
        data(2 * 2 * 3 * 4, 5),
        (Const::<2>, Const::<2>, Const::<3>, Const::<4>),
    );
    let f = crate::model::cpu::ops::try_flatten::<_, 2, 3, 4, 24, _, _>(x.clone()).unwrap();
    assert_eq!(f.as_vec(), x.as_vec());
    assert_eq!(f.shape().1.size(), 24);
}
