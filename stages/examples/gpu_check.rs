//! The GPU checks of `tools/gpu-check.sh`, as one program built here and run on the GPU
//! machine: library and version smoke test; each op against a naive reference; features,
//! probabilities and one fine-tuning step against the CPU backend; bitwise repeatability;
//! throughput at batch 8/16/32/64 in fp32 and TF32; the CPU's step time for the speed-up
//! target. Prints one line per figure; exits 1 if a bound was broken, 2 if there is no GPU.
//!
//! `gpu_check [--quick]`: `--quick` skips the TF32 pass and the CPU baseline.

#[cfg(feature = "cuda")]
fn main() -> std::process::ExitCode {
    use stages::model::cuda::check::{self, Report};
    use stages::model::cuda::{probe, CudaBackend};
    use stages::model::GpuMath;
    use std::process::ExitCode;

    let quick = std::env::args().any(|a| a == "--quick");
    let mut report = Report::default();
    let facts = match probe(true) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
    let maths: &[GpuMath] = if quick {
        &[GpuMath::Fp32]
    } else {
        &[GpuMath::Fp32, GpuMath::Tf32]
    };
    let mut step_ms = None;
    for &math in maths {
        let started = std::time::Instant::now();
        let backend = match CudaBackend::new(math) {
            Ok(b) => b,
            Err(e) => {
                report.fail(&format!("open the GPU ({})", math.name()), e);
                continue;
            }
        };
        report.fact(
            &format!("open the GPU and compile the kernels ({}) s", math.name()),
            format!("{:.2}", started.elapsed().as_secs_f64()),
        );
        let mut run = |name: &str, r: Result<(), stages::model::ModelError>| {
            if let Err(e) = r {
                report.fail(name, e);
            }
        };
        let mut sub = Report::default();
        let results = [
            check::ops(&backend, &mut sub),
            check::features(&backend, 224, &mut sub),
            check::features(&backend, 237, &mut sub),
            check::fine_tuning_step(&backend, 237, &mut sub),
            check::throughput(&backend, 237, &mut sub),
        ];
        for (i, r) in results.into_iter().enumerate() {
            run(&format!("check {i} ({})", math.name()), r);
        }
        for f in sub.failed() {
            report.fail(f, "bound broken (above)");
        }
        if math == GpuMath::Fp32 {
            step_ms = check::step_ms(&backend, 237, 8).ok();
        }
    }
    if !quick {
        match check::cpu_step_seconds(237, 2) {
            Ok(cpu_s) => {
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
            Err(e) => report.fail("CPU baseline", e),
        }
    }
    if report.failed().is_empty() {
        println!("gpu_check: every bound held");
        ExitCode::SUCCESS
    } else {
        println!("gpu_check: FAILED: {}", report.failed().join("; "));
        ExitCode::from(1)
    }
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("error: built without the `cuda` feature");
    std::process::exit(2);
}
