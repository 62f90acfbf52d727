//! The GPU checks `tools/gpu-check.sh` runs on a machine with a GPU (through the `gpu_check`
//! example): each op against a naive f64 reference on the CPU, the features and
//! probabilities of the whole base against the CPU backend, one fine-tuning step's gradients
//! against the CPU backend, bitwise repeatability, and throughput. Every check prints its
//! number and its bound; [`Report::failed`] says whether any bound was broken.
//!
//! Bounds (from the issue; max|diff| / max|ref| unless said): ops 1e-4; features 5e-4,
//! probabilities 1e-4 absolute (TF32: 1e-2 and 5e-3); fine-tuning gradients 1e-3.

use std::time::Instant;

use super::layout::{ParamArena, ALIGN};
use super::ops::Gpu;
use super::{CudaBackend, GpuMath};
use crate::model::backend::Backend;
use crate::model::cpu::CpuBackend;
use crate::model::size::{ImageSize, Pooling};
use crate::model::spec::{AdamSettings, ConvAlgorithm, HeadSpec, NetworkSpec};
use crate::model::weights::{BaseWeights, HeadWeights, ModelWeights};
use crate::model::ModelError;

/// Every check's line, and whether one failed.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
}

impl Report {
    /// Prints `name: value (bound)`, remembering a broken bound.
    pub fn bound(&mut self, name: &str, value: f64, bound: f64) {
        let ok = value <= bound && value.is_finite();
        println!(
            "{:<8} {name}: {value:.3e} (bound {bound:.0e})",
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            self.failures.push(name.to_string());
        }
    }

    pub fn fact(&self, name: &str, value: impl std::fmt::Display) {
        println!("{:<8} {name}: {value}", "info");
    }

    pub fn fail(&mut self, name: &str, why: impl std::fmt::Display) {
        println!("FAILED   {name}: {why}");
        self.failures.push(name.to_string());
    }

    pub fn failed(&self) -> &[String] {
        &self.failures
    }

    /// Runs one check so that neither its error nor its panic ends the program: either is
    /// reported as the failure of `name`, and the caller goes on to the next check (a panic
    /// would otherwise end the process, and every figure after it would be missing). The
    /// check's value when it finished.
    ///
    /// `AssertUnwindSafe`: what a panic can leave half-done is the check's own state, dropped
    /// with it; the report only ever gains whole lines. A GPU left in a bad state by the panic
    /// makes the later checks fail with errors, which are reported the same way.
    pub fn run<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        check: impl FnOnce(&mut Report) -> Result<T, E>,
    ) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(self))) {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.fail(name, e);
                None
            }
            Err(payload) => {
                self.fail(
                    name,
                    format!("panicked: {}", panic_message(payload.as_ref())),
                );
                None
            }
        }
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// The largest `|v|`, or NaN when any `v` is not finite. `f64::max` skips NaN (`0.max(NaN)`
/// is 0), so a plain fold would report an all-NaN GPU result as a difference of 0: an "ok".
fn max_abs(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0f64, |m, v| {
        if m.is_finite() && v.is_finite() {
            m.max(v.abs())
        } else {
            f64::NAN
        }
    })
}

/// max|a - b| / max|b|; NaN when any value of either is not finite, which breaks every bound.
pub fn relative(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared lengths");
    let scale = max_abs(b.iter().copied());
    if !scale.is_finite() {
        return f64::NAN;
    }
    let diff = max_abs(a.iter().zip(b).map(|(x, y)| *x as f64 - y));
    diff / scale.max(f64::MIN_POSITIVE)
}

/// max|a - b|; NaN when any value of either is not finite.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared lengths");
    max_abs(a.iter().zip(b).map(|(x, y)| x - y))
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Deterministic values in [-1, 1).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = crate::model::init::SplitMix64::new(seed);
    (0..len).map(|_| rng.next_unit_f32() * 2.0 - 1.0).collect()
}

fn at4(c: usize, h: usize, n: usize, ci: usize, i: isize, j: isize) -> Option<usize> {
    (i >= 0 && j >= 0 && (i as usize) < h && (j as usize) < h)
        .then(|| ((n * c + ci) * h + i as usize) * h + j as usize)
}

/// The naive conv 3x3 (padding 1) + bias + ReLU, in f64: the reference of `conv_relu`.
fn conv_relu_ref(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; n * co * h * h];
    for s in 0..n {
        for o in 0..co {
            for i in 0..h {
                for j in 0..h {
                    let mut acc = b[o] as f64;
                    for c in 0..ci {
                        for r in 0..3 {
                            for q in 0..3 {
                                if let Some(at) = at4(
                                    ci,
                                    h,
                                    s,
                                    c,
                                    i as isize + r as isize - 1,
                                    j as isize + q as isize - 1,
                                ) {
                                    acc += x[at] as f64 * w[((o * ci + c) * 3 + r) * 3 + q] as f64;
                                }
                            }
                        }
                    }
                    y[((s * co + o) * h + i) * h + j] = acc.max(0.0);
                }
            }
        }
    }
    y
}

/// The naive gradients of conv + bias + ReLU at input, weights and bias, in f64.
#[allow(clippy::too_many_arguments)]
fn conv_relu_backward_ref(
    x: &[f32],
    w: &[f32],
    y: &[f64],
    dy: &[f32],
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let g: Vec<f64> = dy
        .iter()
        .zip(y)
        .map(|(d, y)| if *y > 0.0 { *d as f64 } else { 0.0 })
        .collect();
    let (mut dx, mut dw, mut db) = (vec![0f64; x.len()], vec![0f64; w.len()], vec![0f64; co]);
    for s in 0..n {
        for o in 0..co {
            for i in 0..h {
                for j in 0..h {
                    let gv = g[((s * co + o) * h + i) * h + j];
                    db[o] += gv;
                    for c in 0..ci {
                        for r in 0..3 {
                            for q in 0..3 {
                                if let Some(at) = at4(
                                    ci,
                                    h,
                                    s,
                                    c,
                                    i as isize + r as isize - 1,
                                    j as isize + q as isize - 1,
                                ) {
                                    let wi = ((o * ci + c) * 3 + r) * 3 + q;
                                    dw[wi] += gv * x[at] as f64;
                                    dx[at] += gv * w[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// A [`Gpu`] on `backend`'s device.
pub fn gpu(backend: &CudaBackend) -> Result<Gpu, ModelError> {
    Gpu::new(&backend.ctx, &backend.image, backend.math)
}

/// Each op against its naive reference: conv + bias + ReLU forward, its input, weight and
/// bias gradients, max-pool 2x2 forward and backward (odd side), the head's average pool
/// forward and backward. Bound 1e-4 in fp32, 1e-2 in TF32 (convolutions only).
pub fn ops(backend: &CudaBackend, report: &mut Report) -> Result<(), ModelError> {
    const N: usize = 2;
    const CI: usize = 16;
    const CO: usize = 32;
    const H: usize = 9;
    const OH: usize = 4;
    let g = gpu(backend)?;
    let conv_bound = match backend.math {
        GpuMath::Fp32 => 1e-4,
        GpuMath::Tf32 => 1e-2,
    };
    let x = values(1, N * CI * H * H);
    let w: Vec<f32> = values(2, CO * CI * 9).iter().map(|v| v * 0.2).collect();
    let b: Vec<f32> = values(3, CO).iter().map(|v| v * 0.1).collect();
    let w_len = w.len();
    let b_at = w_len.div_ceil(ALIGN) * ALIGN;
    let arena = ParamArena {
        convs: vec![(0, w_len, b_at, CO)],
        len: (b_at + CO).div_ceil(ALIGN) * ALIGN,
    };
    let mut flat = vec![0f32; arena.len];
    flat[..w_len].copy_from_slice(&w);
    flat[b_at..b_at + CO].copy_from_slice(&b);
    let params = g.upload(&flat)?;
    let xg = Gpu::map::<CI, H>(g.upload(&x)?, N)?;
    let yg = g.conv_relu::<CI, CO, H>(&xg, &params, &arena, 0)?;
    let y_ref = conv_relu_ref(&x, &w, &b, N, CI, CO, H);
    report.bound(
        "op conv+bias+relu forward",
        relative(&g.download(&yg.data)?, &y_ref),
        conv_bound,
    );

    let dy = values(4, N * CO * H * H);
    let mut grads = g.zeros(arena.len)?;
    let dyg = Gpu::map::<CO, H>(g.upload(&dy)?, N)?;
    let dxg = g
        .conv_relu_backward::<CI, CO, H>(&xg, &yg, dyg, &params, &mut grads, &arena, 0, true)?
        .ok_or_else(|| ModelError::Device("no input gradient".into()))?;
    let (dx_ref, dw_ref, db_ref) = conv_relu_backward_ref(&x, &w, &y_ref, &dy, N, CI, CO, H);
    let grads_host = g.download(&grads)?;
    report.bound(
        "op conv input gradient",
        relative(&g.download(&dxg.data)?, &dx_ref),
        conv_bound,
    );
    report.bound(
        "op conv weight gradient",
        relative(&grads_host[..w_len], &dw_ref),
        conv_bound,
    );
    report.bound(
        "op conv bias gradient",
        relative(&grads_host[b_at..b_at + CO], &db_ref),
        1e-4,
    );

    // Max-pool 2x2 on an odd side: the last row and column are dropped (floor).
    let pooled = g.max_pool::<CI, H, OH>(&xg)?;
    let mut pool_ref = vec![0f64; N * CI * OH * OH];
    let mut argmax = vec![0usize; pool_ref.len()];
    for s in 0..N * CI {
        for i in 0..OH {
            for j in 0..OH {
                let mut best = (f64::NEG_INFINITY, 0);
                for (r, q) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let at = (s * H + 2 * i + r) * H + 2 * j + q;
                    if (x[at] as f64) > best.0 {
                        best = (x[at] as f64, at);
                    }
                }
                pool_ref[(s * OH + i) * OH + j] = best.0;
                argmax[(s * OH + i) * OH + j] = best.1;
            }
        }
    }
    report.bound(
        "op max-pool forward",
        relative(&g.download(&pooled.data)?, &pool_ref),
        0.0,
    );
    let dpool = values(5, pool_ref.len());
    let dpool_g = Gpu::map::<CI, OH>(g.upload(&dpool)?, N)?;
    let dxp = g.max_pool_backward::<CI, H, OH>(&xg, &pooled, &dpool_g)?;
    let mut dxp_ref = vec![0f64; x.len()];
    for (k, &at) in argmax.iter().enumerate() {
        dxp_ref[at] += dpool[k] as f64;
    }
    report.bound(
        "op max-pool backward",
        relative(&g.download(&dxp.data)?, &dxp_ref),
        0.0,
    );

    // The seed's head pool: 4x4 window, top-left, of a 7x7 map.
    let m = values(6, N * CI * 7 * 7);
    let mg = Gpu::map::<CI, 7>(g.upload(&m)?, N)?;
    let avg = g.avg_pool::<CI, 7, 4>(&mg)?;
    let mut avg_ref = vec![0f64; N * CI];
    for (s, out) in avg_ref.iter_mut().enumerate() {
        for i in 0..4 {
            for j in 0..4 {
                *out += m[(s * 7 + i) * 7 + j] as f64;
            }
        }
        *out /= 16.0;
    }
    report.bound(
        "op average pool forward",
        relative(&g.download(&avg.data)?, &avg_ref),
        1e-6,
    );
    let davg = g.avg_pool_backward::<CI, 7, 4>(&avg)?;
    let mut davg_ref = vec![0f64; m.len()];
    for s in 0..N * CI {
        for i in 0..4 {
            for j in 0..4 {
                davg_ref[(s * 7 + i) * 7 + j] = avg_ref[s] / 16.0;
            }
        }
    }
    report.bound(
        "op average pool backward",
        relative(&g.download(&davg.data)?, &davg_ref),
        1e-6,
    );
    Ok(())
}

/// `n` deterministic NHWC images of side `size` in [0, 1], as the `scale` normalisation gives.
pub fn images(n: usize, size: usize, seed: u64) -> Vec<f32> {
    values(seed, n * size * size * 3)
        .into_iter()
        .map(|v| v * 0.5 + 0.5)
        .collect()
}

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// Features of 16 images at `size` (the seed's avg4 pooling at 224 and 237), and the
/// probabilities of a head on them, against the CPU backend; then bitwise repeatability.
pub fn features(backend: &CudaBackend, size: u32, report: &mut Report) -> Result<(), ModelError> {
    let (fbound, pbound) = match backend.math {
        GpuMath::Fp32 => (5e-4, 1e-4),
        GpuMath::Tf32 => (1e-2, 5e-3),
    };
    let spec = NetworkSpec::new(
        ImageSize::from_pixels(size)?,
        Pooling::Avg4,
        ConvAlgorithm::Direct,
    )?;
    let base = BaseWeights::he(11);
    let n = 16;
    let imgs = images(n, size as usize, 12);
    let cpu = CpuBackend
        .feature_extractor(spec, &base)?
        .pooled_features(&imgs, n)?;
    let gpu_fx = backend.feature_extractor(spec, &base)?;
    let gpu = gpu_fx.pooled_features(&imgs, n)?;
    report.bound(
        &format!(
            "features of {n} images at {size} vs CPU ({})",
            backend.math.name()
        ),
        relative(&gpu, &widen(&cpu)),
        fbound,
    );
    let head = HeadSpec::new(64, 0.2)?;
    let trainer = CpuBackend.head_trainer(
        head,
        &HeadWeights::glorot(&head, 13),
        AdamSettings::default(),
        None,
        1,
    )?;
    let p_cpu: Vec<f64> = trainer
        .logits(cpu.clone(), n)?
        .into_iter()
        .map(sigmoid)
        .collect();
    let p_gpu: Vec<f64> = trainer
        .logits(gpu.clone(), n)?
        .into_iter()
        .map(sigmoid)
        .collect();
    let dp = max_abs_diff(&p_gpu, &p_cpu);
    report.bound(
        &format!("probabilities at {size} vs CPU (absolute)"),
        dp,
        pbound,
    );
    let again = gpu_fx.pooled_features(&imgs, n)?;
    let same = again
        .iter()
        .zip(&gpu)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    if same {
        report.fact(&format!("features at {size} rerun"), "bit-identical");
    } else {
        report.fail(&format!("features at {size} rerun"), "NOT bit-identical");
    }
    Ok(())
}

/// One fine-tuning step (whole network, batch 4 at `size`) on the GPU and on the CPU: the
/// gradients, read back through an Adam step whose epsilon dwarfs them (the update is then
/// `-lr * g / (|g| + eps)`: `lr / eps` times the gradient, to 1e-5 relative), within 1e-3; a
/// rerun of the step on the GPU is bit-identical.
pub fn fine_tuning_step(
    backend: &CudaBackend,
    size: u32,
    report: &mut Report,
) -> Result<(), ModelError> {
    let spec = NetworkSpec::new(
        ImageSize::from_pixels(size)?,
        Pooling::Global,
        ConvAlgorithm::Direct,
    )?;
    let head = HeadSpec::new(64, 0.0)?;
    let weights = ModelWeights {
        base: BaseWeights::he(21),
        head: HeadWeights::glorot(&head, 22),
    };
    // `lr = 1e3 * eps`: the update is about 1e3 times the gradient, large beside the
    // weights, so that `before - after` keeps the gradient's digits.
    let adam = AdamSettings {
        learning_rate: 1e7,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e4,
    };
    let n = 4;
    let imgs = images(n, size as usize, 23);
    let targets = vec![1.0, 0.0, 1.0, 0.0];
    let step = |b: &dyn Backend| -> Result<ModelWeights, ModelError> {
        let mut t = b.network_trainer(spec, head, &weights, adam, None, 5)?;
        t.step(imgs.clone(), targets.clone())?;
        let mut out = weights.clone();
        t.export(&mut out)?;
        Ok(out)
    };
    let grads = |after: &ModelWeights| -> Vec<f32> {
        after
            .base
            .convs()
            .iter()
            .zip(weights.base.convs())
            .flat_map(|(a, w)| {
                a.weight
                    .iter()
                    .zip(&w.weight)
                    .map(|(a, w)| w - a)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let started = Instant::now();
    let cpu = step(&CpuBackend)?;
    report.fact(
        "fine-tuning step on the CPU (s, incl. set-up)",
        format!("{:.2}", started.elapsed().as_secs_f64()),
    );
    let gpu = step(backend)?;
    let (gc, gg) = (grads(&cpu), grads(&gpu));
    report.bound(
        &format!(
            "fine-tuning gradients at {size} vs CPU ({})",
            backend.math.name()
        ),
        relative(&gg, &widen(&gc)),
        match backend.math {
            GpuMath::Fp32 => 1e-3,
            GpuMath::Tf32 => 2e-2,
        },
    );
    let again = step(backend)?;
    let same = grads(&again)
        .iter()
        .zip(&gg)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    if same {
        report.fact("fine-tuning step rerun", "bit-identical");
    } else {
        report.fail("fine-tuning step rerun", "NOT bit-identical");
    }
    Ok(())
}

/// The batch sizes [`throughput`] measures features per second at.
pub const THROUGHPUT_BATCHES: [usize; 4] = [8, 16, 32, 64];

/// Features per second at `size` for each of [`THROUGHPUT_BATCHES`] (returned, in that
/// order), and the time of one training step.
pub fn throughput(
    backend: &CudaBackend,
    size: u32,
    report: &mut Report,
) -> Result<Vec<f64>, ModelError> {
    let spec = NetworkSpec::new(
        ImageSize::from_pixels(size)?,
        Pooling::Avg4,
        ConvAlgorithm::Direct,
    )?;
    let base = BaseWeights::he(31);
    let fx = backend.feature_extractor(spec, &base)?;
    let mut rates = Vec::with_capacity(THROUGHPUT_BATCHES.len());
    for batch in THROUGHPUT_BATCHES {
        let imgs = images(batch, size as usize, 32);
        fx.pooled_features(&imgs, batch)?; // warm-up: workspaces, memory check
        let rounds = (512 / batch).max(2);
        let started = Instant::now();
        for _ in 0..rounds {
            fx.pooled_features(&imgs, batch)?;
        }
        let per_s = (rounds * batch) as f64 / started.elapsed().as_secs_f64();
        report.fact(
            &format!(
                "features/s at {size}, batch {batch:>2} ({})",
                backend.math.name()
            ),
            format!("{per_s:.0}"),
        );
        rates.push(per_s);
    }
    for batch in [8, 32] {
        let ms = step_ms(backend, size, batch)?;
        report.fact(
            &format!(
                "training step at {size}, batch {batch:>2} ({}) ms",
                backend.math.name()
            ),
            format!("{ms:.1}"),
        );
    }
    Ok(rates)
}

/// Whether TF32 engaged the tensor cores, judged from the features per second of the same
/// batch in TF32 and in fp32. On an A100 or H100 the tensor cores give several times the
/// fp32 FMA throughput, so a TF32 pass no faster than fp32 means cuDNN ran its FMA kernels
/// (a math type that does not allow TF32, or `NVIDIA_TF32_OVERRIDE=0`). A guess in between
/// is said to be one.
pub fn tensor_core_verdict(fp32_per_s: f64, tf32_per_s: f64) -> String {
    let ratio = tf32_per_s / fp32_per_s;
    let verdict = if !ratio.is_finite() {
        "unknown"
    } else if ratio >= 1.3 {
        "yes"
    } else if ratio < 1.1 {
        "no"
    } else {
        "unclear"
    };
    format!("{verdict} (throughput tf32/fp32 = {ratio:.2}x)")
}

/// Milliseconds per whole-network training step at `size` and `batch` (after a warm-up).
pub fn step_ms(backend: &CudaBackend, size: u32, batch: usize) -> Result<f64, ModelError> {
    let spec = NetworkSpec::new(
        ImageSize::from_pixels(size)?,
        Pooling::Avg4,
        ConvAlgorithm::Direct,
    )?;
    let head = HeadSpec::new(64, 0.2)?;
    let weights = ModelWeights {
        base: BaseWeights::he(31),
        head: HeadWeights::glorot(&head, 33),
    };
    let mut t = backend.network_trainer(spec, head, &weights, AdamSettings::default(), None, 1)?;
    let imgs = images(batch, size as usize, 34);
    let targets: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
    t.step(imgs.clone(), targets.clone())?; // warm-up
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        t.step(imgs.clone(), targets.clone())?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / rounds as f64)
}

/// The CPU's time for one fine-tuning step at `size`, batch 8, on `threads` threads: the
/// baseline of the "50x faster than 2 CPU cores" target.
pub fn cpu_step_seconds(size: u32, threads: usize) -> Result<f64, ModelError> {
    let spec = NetworkSpec::new(
        ImageSize::from_pixels(size)?,
        Pooling::Avg4,
        ConvAlgorithm::Winograd,
    )?;
    let head = HeadSpec::new(64, 0.2)?;
    let weights = ModelWeights {
        base: BaseWeights::he(41),
        head: HeadWeights::glorot(&head, 42),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ModelError::Device(format!("thread pool: {e}")))?;
    pool.install(|| {
        let mut t =
            CpuBackend.network_trainer(spec, head, &weights, AdamSettings::default(), None, 1)?;
        let imgs = images(8, size as usize, 43);
        let targets: Vec<f32> = (0..8).map(|i| (i % 2) as f32).collect();
        let started = Instant::now();
        t.step(imgs, targets)?;
        Ok(started.elapsed().as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The references themselves, on a case small enough to write out: a 1x1x3x3 image of
    /// ones through one 3x3 filter of ones gives the number of in-bounds taps plus the bias.
    #[test]
    fn the_naive_references_count_padding_right() {
        let x = vec![1.0f32; 9];
        let w = vec![1.0f32; 9];
        let y = conv_relu_ref(&x, &w, &[0.5], 1, 1, 1, 3);
        assert_eq!(y, [4.5, 6.5, 4.5, 6.5, 9.5, 6.5, 4.5, 6.5, 4.5]);
        let dy = vec![1.0f32; 9];
        let (dx, dw, db) = conv_relu_backward_ref(&x, &w, &y, &dy, 1, 1, 1, 3);
        assert_eq!(db, [9.0]);
        // Each weight tap sees the in-bounds part of the image: 4 at corners, 6 edges, 9 centre.
        assert_eq!(dw, [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        assert_eq!(dx, [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        assert_eq!(relative(&[1.0, 2.0], &[1.0, 2.5]), 0.2);
    }

    /// A check that panics is reported as that check's failure, with the panic's message, and
    /// the checks after it still run; an error is reported the same way.
    #[test]
    fn a_panicking_check_fails_alone_and_the_next_checks_run() {
        let mut report = Report::default();
        let grads: std::collections::HashMap<&str, f32> = [("head", 0.5)].into();
        let first: Option<f32> = report.run("first", |_| -> Result<f32, String> {
            Ok(*grads
                .get("features")
                .expect("a gradient that backward() dropped"))
        });
        assert_eq!(first, None);
        let second = report.run("second", |r| -> Result<u32, String> {
            r.bound("a figure", 1e-6, 1e-4);
            Ok(7)
        });
        assert_eq!(second, Some(7), "the check after a panic ran");
        let third: Option<()> = report.run("third", |_| Err(format!("cuDNN {}", "failed")));
        assert_eq!(third, None);
        let fourth: Option<()> = report.run("fourth", |_| -> Result<(), String> {
            panic!("at batch {}", 8)
        });
        assert_eq!(fourth, None);
        assert_eq!(report.failed(), ["first", "third", "fourth"]);
        let payload = std::panic::catch_unwind(|| panic!("at batch {}", 8)).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "at batch 8");
        let payload = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "plain");
    }

    #[test]
    fn tensor_cores_are_judged_from_the_tf32_speed_up() {
        assert_eq!(
            tensor_core_verdict(1000.0, 2500.0),
            "yes (throughput tf32/fp32 = 2.50x)"
        );
        assert_eq!(
            tensor_core_verdict(1000.0, 1010.0),
            "no (throughput tf32/fp32 = 1.01x)"
        );
        assert_eq!(
            tensor_core_verdict(1000.0, 1200.0),
            "unclear (throughput tf32/fp32 = 1.20x)"
        );
        assert_eq!(
            tensor_core_verdict(0.0, 0.0),
            "unknown (throughput tf32/fp32 = NaNx)"
        );
    }

    /// A GPU result of NaNs (or infinities) must break every bound: `f64::max` skips NaN, so a
    /// fold with it alone would report an all-NaN result as a difference of 0.
    #[test]
    fn a_non_finite_result_breaks_the_bound() {
        let reference = [1.0, -2.0, 0.5];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let all = [bad; 3];
            let one = [1.0, bad, 0.5];
            for gpu in [&all[..], &one[..]] {
                let d = relative(gpu, &reference);
                assert!(!d.is_finite(), "{gpu:?} gave the difference {d}");
                let mut report = Report::default();
                report.bound("a non-finite result", d, 1e-4);
                assert_eq!(report.failed(), ["a non-finite result"]);
            }
        }
        // A non-finite reference is no basis for a pass either.
        assert!(!relative(&[1.0, 2.0], &[1.0, f64::NAN]).is_finite());
        assert!(!max_abs_diff(&[0.5, f64::NAN], &[0.5, 0.5]).is_finite());
        assert_eq!(max_abs_diff(&[0.5, 0.25], &[0.5, 0.5]), 0.25);
        // Finite values still give the plain max|a - b| / max|b|.
        assert_eq!(relative(&[1.0, 2.0], &[1.0, 2.5]), 0.2);
    }

    /// On a machine with a GPU, every op within its bound; skipped (recorded) without one,
    /// failed instead under `PIPELINE_REQUIRE_GPU=1`.
    #[test]
    fn on_a_gpu_every_op_matches_its_reference() {
        let backend = match CudaBackend::new(GpuMath::Fp32) {
            Ok(b) => b,
            Err(e) => {
                assert!(
                    std::env::var("PIPELINE_REQUIRE_GPU").map_or(true, |v| v != "1"),
                    "PIPELINE_REQUIRE_GPU=1 but {e}"
                );
                crate::test_skip::skip(&format!("no usable GPU: {e}"));
                return;
            }
        };
        let mut report = Report::default();
        ops(&backend, &mut report).expect("ops run");
        assert!(report.failed().is_empty(), "{:?}", report.failed());
    }
}
