//! How much the store grows with training variants: model1 on the real images, then ten
//! `train.epochs` variants, with the store's size (each file counted once however many hard
//! links it has) after each step. Target (issue 17): the store after model1 plus ten variants
//! is at most 1.2x its size after model1 alone.
//!
//! Run with `cargo bench -p pipeline --bench store_size` (or `--profile dev` to reuse the
//! test build: the domain is optimised there too); skips when `../shared/data` is absent.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET_RATIO: f64 = 1.2;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Bytes of the regular files under `dir`, each inode once.
fn disk_bytes(dir: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
    let Ok(read) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for item in read.flatten() {
        let Ok(meta) = fs::symlink_metadata(item.path()) else {
            continue;
        };
        if meta.is_dir() {
            total += disk_bytes(&item.path(), seen);
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

fn sizes(artifacts: &Path) -> (u64, u64) {
    let mut seen = BTreeSet::new();
    let store = disk_bytes(&artifacts.join("cache"), &mut seen);
    // Run directories: what their files add beyond the store's (large ones are links).
    let runs = disk_bytes(&artifacts.join("runs"), &mut seen);
    (store, runs)
}

fn run(artifacts: &Path, data: &Path, extra: &[&str]) {
    let mut args = vec![
        "--artifacts".to_string(),
        artifacts.display().to_string(),
        "run".into(),
        "experiments/model1.toml".into(),
        "--data-root".into(),
        data.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .args(&args)
        .env_remove("PIPELINE_REMOTE")
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "pipeline {args:?} failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot start pipeline: {e}");
            std::process::exit(1);
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let data = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    if !data.join("covid-chestxray-dataset/metadata.csv").is_file() {
        println!(
            "store_size: SKIPPED, no real chest X-ray data at {}",
            data.display()
        );
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch store");
    let artifacts = scratch.path().join("artifacts");
    run(&artifacts, &data, &[]);
    let (base_store, base_runs) = sizes(&artifacts);
    println!(
        "{:<28} store {:>8.1} MB   run directories add {:>8.1} MB",
        "model1",
        mb(base_store),
        mb(base_runs)
    );
    for epochs in 1..=10 {
        let set = format!("train.epochs={epochs}");
        run(&artifacts, &data, &["--set", &set]);
        let (store, runs) = sizes(&artifacts);
        println!(
            "{:<28} store {:>8.1} MB   run directories add {:>8.1} MB",
            format!("+ {set}"),
            mb(store),
            mb(runs)
        );
    }
    let (store, _) = sizes(&artifacts);
    let ratio = store as f64 / base_store as f64;
    let verdict = if ratio <= TARGET_RATIO {
        "ok"
    } else {
        "OVER TARGET"
    };
    println!(
        "store after model1 + 10 variants / after model1 alone: {ratio:.3} (target <= {TARGET_RATIO}: {verdict})"
    );
}
