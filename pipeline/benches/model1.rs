//! The seed recipe end to end on the real images, timed as a user would run it: cold, rerun
//! with nothing changed, and rerun with `--set train.epochs=20`, with the peak memory of each.
//! Run with `cargo bench -p pipeline --bench model1`; skips when `../shared/data` is absent.
//!
//! Targets (issue 5, 2-core machine): cold under 60 s, unchanged rerun under 1 s, epochs
//! change under 10 s, peak memory under 2 GB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Peak resident memory of the largest child process so far, in MB.
fn children_peak_mb() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc == 0 {
        usage.ru_maxrss as f64 / 1024.0
    } else {
        f64::NAN
    }
}

fn timed(label: &str, target_s: f64, args: &[&str]) -> f64 {
    let clock = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .args(args)
        .output();
    let seconds = clock.elapsed().as_secs_f64();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "{label}: pipeline failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{label}: cannot start pipeline: {e}");
            std::process::exit(1);
        }
    }
    let verdict = if seconds <= target_s {
        "ok"
    } else {
        "OVER TARGET"
    };
    println!("{label:<34} {seconds:>8.2} s   (target {target_s} s: {verdict})");
    seconds
}

fn main() {
    let data = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    if !data.join("covid-chestxray-dataset/metadata.csv").is_file() {
        eprintln!(
            "skipping: the real chest X-ray data is not at {}",
            data.display()
        );
        return;
    }
    let Ok(store) = tempfile::tempdir() else {
        eprintln!("cannot create a temporary store");
        std::process::exit(1);
    };
    let store_arg = store.path().to_string_lossy().into_owned();
    let data_arg = data.to_string_lossy().into_owned();
    let base = [
        "--artifacts",
        store_arg.as_str(),
        "run",
        "experiments/model1.toml",
        "--data-root",
        data_arg.as_str(),
    ];
    println!(
        "model1 on {} threads, 275 images at 237 x 237",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    timed("cold (empty cache)", 60.0, &base);
    timed("rerun, nothing changed", 1.0, &base);
    let mut epochs = base.to_vec();
    epochs.extend(["--set", "train.epochs=20"]);
    timed("rerun with --set train.epochs=20", 10.0, &epochs);
    let peak = children_peak_mb();
    let verdict = if peak <= 2048.0 { "ok" } else { "OVER TARGET" };
    println!(
        "{:<34} {peak:>8.0} MB  (target 2048 MB: {verdict})",
        "peak memory (largest run)"
    );
}
