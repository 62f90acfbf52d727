//! VGG16 base forward at 237x237, batch 8, on all cores, with the direct (im2col + gemm) and
//! the Winograd convolutions, against a plain gemm of one big layer's size measured in the
//! same run; then a training step (forward + backward) with each.
//!
//! GFLOP/s are the direct convolution's 33.46 GFLOP per image over the time taken, for both
//! algorithms: for Winograd that is an effective rate (it does fewer multiplications).
//!
//! Run with `cargo bench -p stages --bench vgg16` (add `VGG16_LAYERS=1` for a per-layer
//! breakdown). Best of 3 after a warm-up.

use dfdx::prelude::*;
use stages::model::cpu::vgg16::{Vgg16Base, Vgg16Features};
use stages::model::{BaseWeights, ConvAlgorithm};
use std::hint::black_box;
use std::time::Instant;

/// FLOPs of the VGG16 base per 237x237 image (2 per multiply-add, floor pooling).
const GFLOP_PER_IMAGE: f64 = 33.46;
const BATCH: usize = 8;

fn best_of_3<R>(mut f: impl FnMut() -> R) -> f64 {
    black_box(f()); // warm-up
    (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = stages::model::init::SplitMix64::new(seed);
    (0..n).map(|_| rng.next_unit_f32()).collect()
}

/// One gemm with all cores (gemm's own rayon parallelism), the size of block3_conv2 on a
/// batch of 8 at 237 (59 x 59 pixels, 256 -> 256 channels, k = 9 * 256).
struct PlainGemm {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl PlainGemm {
    fn new() -> Self {
        let (m, k, n) = (BATCH * 59 * 59, 9 * 256, 256);
        let (a, b) = (pseudo_random(m * k, 1), pseudo_random(k * n, 2));
        Self {
            m,
            k,
            n,
            a,
            b,
            c: vec![0.0; m * n],
        }
    }

    fn gflop(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64 / 1e9
    }

    fn run(&mut self) -> f32 {
        let (m, k, n) = (self.m, self.k, self.n);
        // SAFETY: a is m x k, b is k x n, c is m x n, all row-major and in bounds.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.c.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.a.as_ptr(),
                1,
                k as isize,
                self.b.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            )
        }
        self.c[0]
    }
}

/// Seconds of one call of `f`.
fn time<R>(f: &mut impl FnMut() -> R) -> f64 {
    let t = Instant::now();
    black_box(f());
    t.elapsed().as_secs_f64()
}

/// Times one conv layer (input `S x S x CI`, batch 8) alone, forward only, both algorithms.
fn time_conv<const S: usize, const CI: usize, const CO: usize>(dev: &Cpu, name: &str) {
    use stages::model::cpu::ops::{try_conv3x3, Activation};
    let x = dev.tensor_from_vec(
        pseudo_random(BATCH * S * S * CI, 4),
        (BATCH, Const::<S>, Const::<S>, Const::<CI>),
    );
    let w: Tensor<Rank4<CO, CI, 3, 3>, f32, Cpu> =
        dev.tensor_from_vec(pseudo_random(CO * CI * 9, 5), Default::default());
    let b: Tensor<Rank1<CO>, f32, Cpu> = dev.zeros();
    let gflop = 2.0 * (BATCH * S * S * CI * 9 * CO) as f64 / 1e9;
    let [direct, winograd] = [ConvAlgorithm::Direct, ConvAlgorithm::Winograd]
        .map(|a| best_of_3(|| try_conv3x3(x.clone(), w.clone(), b.clone(), Activation::Relu, a)));
    println!(
        "  {name:<14} direct {:>7.1} ms {:>6.1} GFLOP/s | winograd {:>7.1} ms {:>6.1} GFLOP/s | {:.2}x",
        direct * 1e3,
        gflop / direct,
        winograd * 1e3,
        gflop / winograd,
        direct / winograd
    );
}

/// Per-layer breakdown (set VGG16_LAYERS=1): where the forward time goes.
fn layer_breakdown(dev: &Cpu) {
    println!("per-layer forward, batch {BATCH}:");
    time_conv::<237, 3, 64>(dev, "block1_conv1");
    time_conv::<237, 64, 64>(dev, "block1_conv2");
    time_conv::<118, 64, 128>(dev, "block2_conv1");
    time_conv::<118, 128, 128>(dev, "block2_conv2");
    time_conv::<59, 128, 256>(dev, "block3_conv1");
    time_conv::<59, 256, 256>(dev, "block3_conv2");
    time_conv::<29, 256, 512>(dev, "block4_conv1");
    time_conv::<29, 512, 512>(dev, "block4_conv2");
    time_conv::<14, 512, 512>(dev, "block5_conv1");
}

fn main() {
    // As the pipeline binary does (see stages::memory).
    stages::memory::reuse_large_allocations();
    let dev = Cpu::default();
    let threads = rayon::current_num_threads();
    println!("VGG16 base, 237x237x3, batch {BATCH}, {threads} threads");
    #[cfg(target_arch = "x86_64")]
    println!(
        "CPU: avx512f {}, avx2 {} (gemm dispatches at run time)",
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx2")
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        // Timings on a shared machine: say how busy it was.
        println!("load average at start: {}", load.trim());
    }
    if std::env::var_os("VGG16_LAYERS").is_some() {
        layer_breakdown(&dev);
    }
    // The base at the seed's input size: 237 -> 118 -> 59 -> 29 -> 14 -> 7.
    let base = Vgg16Base::<118, 59, 29, 14, 7, f32, Cpu> {
        features: Vgg16Features::from_weights(&dev, &BaseWeights::glorot(0))
            .expect("weights of the table's shapes"),
        conv: ConvAlgorithm::Direct,
    };
    let winograd = Vgg16Base::<118, 59, 29, 14, 7, f32, Cpu> {
        features: base.features.clone(),
        conv: ConvAlgorithm::Winograd,
    };
    let images = pseudo_random(BATCH * 237 * 237 * 3, 3);
    let shape = (BATCH, Const::<237>, Const::<237>, Const::<3>);

    // The forwards and the reference gemm alternate, so all see the same machine load.
    let mut gemm = PlainGemm::new();
    let mut direct = || {
        let x = dev.tensor_from_vec(images.clone(), shape);
        base.forward(x)
    };
    let mut fast = || {
        let x = dev.tensor_from_vec(images.clone(), shape);
        winograd.forward(x)
    };
    let mut reference = || gemm.run();
    black_box(direct());
    black_box(fast());
    black_box(reference());
    let (mut direct_secs, mut fast_secs, mut gemm_secs) =
        (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        direct_secs = direct_secs.min(time(&mut direct));
        fast_secs = fast_secs.min(time(&mut fast));
        gemm_secs = gemm_secs.min(time(&mut reference));
    }
    let gemm_gflops = gemm.gflop() / gemm_secs;
    println!(
        "plain gemm ({} x {} x {}): {gemm_gflops:.1} GFLOP/s",
        BATCH * 59 * 59,
        9 * 256,
        256
    );
    for (name, secs) in [("direct", direct_secs), ("winograd", fast_secs)] {
        let per_image = secs / BATCH as f64;
        let rate = GFLOP_PER_IMAGE / per_image;
        println!(
            "forward ({name:<8}): {per_image:.4} s/image, {rate:.1} GFLOP/s, {:.2}x the plain gemm",
            rate / gemm_gflops
        );
    }

    for (name, model) in [("direct", &base), ("winograd", &winograd)] {
        let mut grads = model.alloc_grads();
        let train_secs = best_of_3(|| {
            let x = dev.tensor_from_vec(images.clone(), shape);
            let y = model.forward(x.trace(grads.clone()));
            let g = y.mean().backward();
            grads = g;
            model.zero_grads(&mut grads);
        });
        println!(
            "training step ({name:<8}, forward + backward through the base, batch {BATCH}): {:.4} s/image",
            train_secs / BATCH as f64
        );
    }
}
