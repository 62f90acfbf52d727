//! The GPU checks of `tools/gpu-check.sh`, as one program built here and run on the GPU
//! machine: library and version smoke test; each op against a naive reference; features,
//! probabilities and one fine-tuning step against the CPU backend; bitwise repeatability;
//! throughput at batch 8/16/32/64 in fp32 and TF32, and whether TF32 engaged the tensor
//! cores; the CPU's step time for the speed-up target. Prints one line per figure; exits 1
//! if a bound was broken or a check failed, 2 if there is no GPU.
//!
//! Each check runs on its own (`Report::run`): one that fails or panics is reported as that
//! check's failure and the others still run, so the script always finds every figure that
//! could be measured.
//!
//! `gpu_check [--quick]`: `--quick` skips the TF32 pass and the CPU baseline.

#[cfg(feature = "cuda")]
fn main() -> std::process::ExitCode {
    use stages::model::cuda::check::{self, Report, THROUGHPUT_BATCHES};
    use stages::model::cuda::libs;
    use stages::model::cuda::{probe, CudaBackend};
    use stages::model::GpuMath;
    use std::process::ExitCode;

    let quick = std::env::args().any(|a| a == "--quick");
    let mut report = Report::default();
    let facts = match report.run("find the GPU", |_| {
        Ok::<_, std::convert::Infallible>(probe(true))
    }) {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            // Each library's attempts with the loader's messages, for what the line above
            // sums up.
            for line in libs::load_all(&libs::IN_ORDER).details() {
                eprintln!("         {line}");
            }
            return ExitCode::from(2);
        }
        None => return finish(&report),
    };
    report.fact(
        "device",
        format!(
            "{} ({}, {} MiB)",
            facts.name,
            facts.arch,
            facts.memory_bytes >> 20
        ),
    );
    report.fact("driver (CUDA)", &facts.driver);
    report.fact("cuDNN", &facts.cudnn);
    report.fact("cuBLAS", &facts.cublas);
    report.fact("NVRTC", &facts.nvrtc);
    for (what, from) in &facts.libraries {
        report.fact(&format!("library {what}"), from);
    }
    for failure in libs::load_failures() {
        report.fact("library that did not load", failure);
    }
    if let Ok(v) = std::env::var("NVIDIA_TF32_OVERRIDE") {
        report.fact("NVIDIA_TF32_OVERRIDE (0 keeps cuDNN from TF32)", v);
    }
    let maths: &[GpuMath] = if quick {
        &[GpuMath::Fp32]
    } else {
        &[GpuMath::Fp32, GpuMath::Tf32]
    };
    let mut step_ms = None;
    let mut rates = Vec::new();
    for &math in maths {
        let m = math.name();
        let started = std::time::Instant::now();
        let Some(backend) = report.run(&format!("open the GPU ({m})"), |_| CudaBackend::new(math))
        else {
            continue;
        };
        report.fact(
            &format!("open the GPU and compile the kernels ({m}) s"),
            format!("{:.2}", started.elapsed().as_secs_f64()),
        );
        report.run(&format!("ops ({m})"), |r| check::ops(&backend, r));
        for size in [224, 237] {
            report.run(&format!("features at {size} ({m})"), |r| {
                check::features(&backend, size, r)
            });
        }
        report.run(&format!("fine-tuning step at 237 ({m})"), |r| {
            check::fine_tuning_step(&backend, 237, r)
        });
        if let Some(r) = report.run(&format!("throughput ({m})"), |r| {
            check::throughput(&backend, 237, r)
        }) {
            rates.push((math, r));
        }
        if math == GpuMath::Fp32 && !quick {
            step_ms = report.run(
                "training step at 237, batch 8 (fp32), for the speed-up",
                |_| check::step_ms(&backend, 237, 8),
            );
        }
    }
    let rate_of = |math| rates.iter().find(|(m, _)| *m == math).map(|(_, r)| r);
    if let (Some(fp32), Some(tf32)) = (rate_of(GpuMath::Fp32), rate_of(GpuMath::Tf32)) {
        let last = THROUGHPUT_BATCHES.len() - 1;
        report.fact(
            &format!(
                "tensor cores used in tf32 (features/s at 237, batch {})",
                THROUGHPUT_BATCHES[last]
            ),
            check::tensor_core_verdict(fp32[last], tf32[last]),
        );
    }
    if !quick {
        if let Some(cpu_s) = report.run("CPU baseline", |_| check::cpu_step_seconds(237, 2)) {
            report.fact(
                "fine-tuning step on 2 CPU threads, 237, batch 8 (s)",
                format!("{cpu_s:.2}"),
            );
            if let Some(ms) = step_ms {
                let speedup = cpu_s * 1e3 / ms;
                let line = "fine-tuning step speed-up over 2 CPU threads (target >= 50x)";
                if speedup >= 50.0 {
                    report.fact(line, format!("{speedup:.0}x"));
                } else {
                    report.fail(line, format!("{speedup:.1}x"));
                }
            }
        }
    }
    finish(&report)
}

/// The last line: every bound held, or the failed checks by name.
#[cfg(feature = "cuda")]
fn finish(report: &stages::model::cuda::check::Report) -> std::process::ExitCode {
    if report.failed().is_empty() {
        println!("gpu_check: every bound held");
        std::process::ExitCode::SUCCESS
    } else {
        println!("gpu_check: FAILED: {}", report.failed().join("; "));
        std::process::ExitCode::from(1)
    }
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("error: built without the `cuda` feature");
    std::process::exit(2);
}
