//! Pooling checks: forward against plain loops, gradients against finite differences of the
//! f64 reference, odd sizes (floor) included.

use super::*;
use crate::model::cpu::ops::test_util::{assert_close, data, fd_grad, to_f64};

/// Plain-loop reference pooling of NHWC x.
fn naive(x: &[f64], kind: PoolKind, k: usize, b: usize, h: usize, w: usize, c: usize) -> Vec<f64> {
    let (oh, ow) = (h / k, w / k);
    let mut out = Vec::with_capacity(b * oh * ow * c);
    for n in 0..b {
        for y in 0..oh {
            for xx in 0..ow {
                for ch in 0..c {
                    let vals = (0..k * k)
                        .map(|t| x[((n * h + y * k + t / k) * w + xx * k + t % k) * c + ch]);
                    out.push(match kind {
                        PoolKind::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                        PoolKind::Avg => vals.sum::<f64>() / (k * k) as f64,
                    });
                }
            }
        }
    }
    out
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
    let xv = data(B * H * W * C, 21);
    let rv = data(B * OH * OW * C, 22);
    let x = dev.tensor_from_vec(xv.clone(), (Const::<B>, Const::<H>, Const::<W>, Const::<C>));
    let r = dev.tensor_from_vec(
        rv.clone(),
        (Const::<B>, Const::<OH>, Const::<OW>, Const::<C>),
    );
    let y = try_max_pool2x2::<_, H, W, C, OH, OW, _, _>(x.leaky_trace()).unwrap();
    let xd = to_f64(&xv);
    assert_close(
        &y.as_vec(),
        &naive(&xd, PoolKind::Max, 2, B, H, W, C),
        0.0,
        "max forward",
    );
    let grads = (y * r).sum().backward();
    let loss = |p: &[f64]| -> f64 {
        naive(p, PoolKind::Max, 2, B, H, W, C)
            .iter()
            .zip(&rv)
            .map(|(a, r)| a * *r as f64)
            .sum()
    };
    assert_close(
        &grads.get(&x).as_vec(),
        &fd_grad(&xd, loss),
        1e-5,
        "max grad x",
    );
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
    let xv = data(B * H * W * C, 31);
    let rv = data(B * OH * OW * C, 32);
    let x = dev.tensor_from_vec(xv.clone(), (Const::<B>, Const::<H>, Const::<W>, Const::<C>));
    let r = dev.tensor_from_vec(
        rv.clone(),
        (Const::<B>, Const::<OH>, Const::<OW>, Const::<C>),
    );
    let y = try_avg_pool::<_, K, H, W, C, OH, OW, _, _>(x.leaky_trace()).unwrap();
    let xd = to_f64(&xv);
    assert_close(
        &y.as_vec(),
        &naive(&xd, PoolKind::Avg, K, B, H, W, C),
        1e-6,
        "avg forward",
    );
    let grads = (y * r).sum().backward();
    let loss = |p: &[f64]| -> f64 {
        naive(p, PoolKind::Avg, K, B, H, W, C)
            .iter()
            .zip(&rv)
            .map(|(a, r)| a * *r as f64)
            .sum()
    };
    assert_close(
        &grads.get(&x).as_vec(),
        &fd_grad(&xd, loss),
        1e-5,
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
