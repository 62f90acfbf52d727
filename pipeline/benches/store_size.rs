//! How much the artifacts folder (cache and run directories, each file counted once however
//! many hard links it has) grows, against issue 26's targets, each printed beside its
//! measured figure:
//! - the quickstart, then one more `train.epochs` variant: the variant adds at most 3 MB;
//! - the quickstart again, unchanged and fully cached: the rerun adds under 1 MB;
//! - model1 on the real images, then ten `train.epochs` variants: at most 1.2x model1 alone
//!   (issue 17; skipped when `../shared/data` is absent).
//!
//! Run with `cargo bench -p pipeline --bench store_size` (or `--profile dev` to reuse the
//! test build: the domain is optimised there too).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET_RATIO: f64 = 1.2;
/// Growth of the whole artifacts folder for one more quickstart epoch variant.
const TARGET_VARIANT_BYTES: u64 = 3_000_000;
/// Growth of the whole artifacts folder for a fully cached rerun.
const TARGET_RERUN_BYTES: u64 = 1_000_000;

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
    // Run directories: what their files add beyond the store's (they are links to it).
    let runs = disk_bytes(&artifacts.join("runs"), &mut seen);
    (store, runs)
}

/// The whole artifacts folder, each inode once.
fn total(artifacts: &Path) -> u64 {
    let (store, runs) = sizes(artifacts);
    store + runs
}

fn run(artifacts: &Path, experiment: &str, data: Option<&Path>, extra: &[&str]) {
    let mut args = vec![
        "--artifacts".to_string(),
        artifacts.display().to_string(),
        "run".into(),
        experiment.into(),
    ];
    if let Some(data) = data {
        args.extend(["--data-root".to_string(), data.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .args(&args)
        .env_remove("PIPELINE_REMOTE")
        .env_remove("PIPELINE_DATA_ROOT")
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

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "OVER TARGET"
    }
}

/// The quickstart's two growth targets: one more epoch variant, and a fully cached rerun.
fn quickstart_targets() {
    let scratch = tempfile::tempdir().expect("scratch store");
    let artifacts = scratch.path().join("artifacts");
    let quickstart = "experiments/quickstart.toml";
    run(&artifacts, quickstart, None, &[]);
    let first = total(&artifacts);
    println!("{:<28} artifacts {:>8.1} MB", "quickstart", mb(first));
    run(&artifacts, quickstart, None, &["--set", "train.epochs=31"]);
    let variant = total(&artifacts);
    let grew = variant.saturating_sub(first);
    println!(
        "{:<28} artifacts {:>8.1} MB   one more epoch variant adds {:.2} MB (target <= {:.0} MB: {})",
        "+ train.epochs=31",
        mb(variant),
        mb(grew),
        mb(TARGET_VARIANT_BYTES),
        verdict(grew <= TARGET_VARIANT_BYTES)
    );
    run(&artifacts, quickstart, None, &[]);
    let rerun = total(&artifacts);
    let grew = rerun.saturating_sub(variant);
    println!(
        "{:<28} artifacts {:>8.1} MB   a fully cached rerun adds {:.2} MB (target < {:.0} MB: {})",
        "quickstart again (cached)",
        mb(rerun),
        mb(grew),
        mb(TARGET_RERUN_BYTES),
        verdict(grew < TARGET_RERUN_BYTES)
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    quickstart_targets();
    let data = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"));
    if !data.join("covid-chestxray-dataset/metadata.csv").is_file() {
        println!(
            "store_size: model1 SKIPPED, no real chest X-ray data at {}",
            data.display()
        );
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch store");
    let artifacts = scratch.path().join("artifacts");
    let model1 = "experiments/model1.toml";
    run(&artifacts, model1, Some(&data), &[]);
    let (base_store, base_runs) = sizes(&artifacts);
    println!(
        "{:<28} store {:>8.1} MB   run directories add {:>8.1} MB",
        "model1",
        mb(base_store),
        mb(base_runs)
    );
    for epochs in 1..=10 {
        let set = format!("train.epochs={epochs}");
        run(&artifacts, model1, Some(&data), &["--set", &set]);
        let (store, runs) = sizes(&artifacts);
        println!(
            "{:<28} store {:>8.1} MB   run directories add {:>8.1} MB",
            format!("+ {set}"),
            mb(store),
            mb(runs)
        );
    }
    let ratio = total(&artifacts) as f64 / (base_store + base_runs) as f64;
    println!(
        "artifacts after model1 + 10 variants / after model1 alone: {ratio:.3} (target <= {TARGET_RATIO}: {})",
        verdict(ratio <= TARGET_RATIO)
    );
}
