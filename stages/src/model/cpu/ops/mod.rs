//! Tensor operations dfdx 0.13 lacks on stable Rust, with their CPU kernels: 3x3 convolution,
//! max/average pooling and flattening, all on NHWC tensors with compile-time shapes.
//!
//! Each operation is a folder after dfdx's layout: `mod.rs` holds the public function, the
//! plain op struct and the device-kernel trait; `cpu_kernel.rs` the CPU implementation;
//! `tests.rs` checks against naive loops and finite differences. These run inside dfdx's
//! graph on its `Cpu` device only (dfdx 0.13 keeps a `Cuda` tensor's memory private): another
//! device is a backend of its own behind [`crate::model::backend`], not a kernel here.

pub mod conv3x3;
mod gemm;
pub mod pool2d;

pub use conv3x3::{
    try_conv3x3, Activation, Conv3x3Kernel, Conv3x3Op, ConvAlgorithm, Nhwc, WINOGRAD_MIN_CHANNELS,
};
pub use pool2d::{try_avg_pool, try_max_pool2x2, Pool2dKernel, Pool2dOp, PoolKind};

use dfdx::prelude::*;

/// A batch of flat feature vectors `[B, F]`.
pub type Flat<B, const F: usize, D, T> = Tensor<(B, Const<F>), f32, D, T>;

/// Flattens NHWC `[B, H, W, C]` to `[B, F]` in (h, w, c) order, `F = H * W * C` checked at
/// build time. Keras' `Flatten` on channels-last data uses the same order; PyTorch's
/// `flatten` of NCHW uses (c, h, w), which is the same whenever `H = W = 1`.
pub fn try_flatten<B: Dim, const H: usize, const W: usize, const C: usize, const F: usize, D, T>(
    x: Nhwc<B, H, W, C, D, T>,
) -> Result<Flat<B, F, D, T>, D::Err>
where
    D: Device<f32>,
    T: Tape<f32, D>,
{
    const {
        assert!(F == H * W * C, "flatten size must be H * W * C");
    }
    let (batch, _, _, _) = *x.shape();
    x.try_reshape_like(&(batch, Const::<F>))
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the op tests: deterministic data and finite differences.

    /// Deterministic values in [-1, 1) from a seed (SplitMix64), for reproducible tests.
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

    /// Central finite-difference gradient of `f` at `p` (f64, step 1e-6).
    pub fn fd_grad(p: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let h = 1e-6;
        let mut q = p.to_vec();
        (0..p.len())
            .map(|i| {
                q[i] = p[i] + h;
                let up = f(&q);
                q[i] = p[i] - h;
                let down = f(&q);
                q[i] = p[i];
                (up - down) / (2.0 * h)
            })
            .collect()
    }

    /// Asserts `got` (f32) matches `want` (f64) within `tol` relative to max(1, |want|).
    pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let err = (*g as f64 - w).abs() / w.abs().max(1.0);
            assert!(
                err <= tol,
                "{what}[{i}]: got {g}, want {w} (rel err {err:e})"
            );
        }
    }

    pub fn to_f64(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }
}
