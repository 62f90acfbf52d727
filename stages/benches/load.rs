//! Load-stage throughput on the shared real images (275 chest X-rays at 237 x 237).
//!
//! Run with `cargo bench -p stages --bench load` (or `cargo test -p stages --bench load`,
//! whose profile also optimises this crate). Prints images/second and MB/s of source files for
//! the full load on 1 thread and on all threads, and the decode-only time of the same files,
//! so one can see whether decoding or resizing dominates. Skips with a message when the data
//! is absent. Data folder: `PIPELINE_TEST_DATA`, else `../../shared/data` from this crate.
//! `PIPELINE_BENCH_KEEP=<dir>` copies the last run's `images.npy`, `labels.npy` and
//! `index.csv` there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stages::data::load::{input_files, load, LoadConfig};
use stages::data::resize::resize_u8;
use stages::progress::NoProgress;

const SEED_TOML: &str = r#"
image_size = 237

[[sources]]
type = "cohen"
path = "covid-chestxray-dataset"
label = "COVID"
filters = { finding = "COVID-19", modality = "X-ray", view = ["PA", "AP", "AP Supine", "AP semi erect"] }
exclude_extensions = [".gz"]

[[sources]]
type = "folder"
path = "chest_xray/train/NORMAL"
label = "NORMAL"
limit = 100
"#;

fn main() {
    let root = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if !root.join("covid-chestxray-dataset/metadata.csv").is_file() {
        eprintln!(
            "skipping load benchmark: data not found at {}",
            root.display()
        );
        return;
    }
    let cfg: LoadConfig = toml::from_str(SEED_TOML).expect("benchmark config parses");
    let files = input_files(&cfg, &root).expect("seed selection");
    let images: Vec<&PathBuf> = files
        .iter()
        .filter(|f| !f.ends_with("metadata.csv"))
        .collect();

    // Warm the page cache so that every run measures CPU work, not the disk.
    let bytes: Vec<Vec<u8>> = images
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    let total_bytes: usize = bytes.iter().map(Vec::len).sum();
    let mb = total_bytes as f64 / 1e6;

    // Per-image phases on this thread, timed in CPU time (robust on a shared machine).
    let (mut decode_cpu, mut resize_cpu, mut pixels) = (0.0, 0.0, 0u64);
    for b in &bytes {
        let t = thread_cpu();
        let img = image::load_from_memory(b).expect("decode");
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (raw, c) = match img.color().channel_count() {
            1 | 2 => (img.into_luma8().into_raw(), 1),
            _ => (img.into_rgb8().into_raw(), 3),
        };
        let t2 = thread_cpu();
        let small = resize_u8(&raw, w, h, c, 237, 237);
        let t3 = thread_cpu();
        assert_eq!(small.len(), 237 * 237 * c);
        decode_cpu += t2 - t;
        resize_cpu += t3 - t2;
        pixels += (w * h) as u64;
    }
    println!(
        "per-phase CPU time, 1 thread: decode (+ to 8-bit L/RGB) {decode_cpu:.2} s ({:.0} Mpixel/s), resize {resize_cpu:.2} s ({:.0} Mpixel/s)",
        pixels as f64 / 1e6 / decode_cpu,
        pixels as f64 / 1e6 / resize_cpu
    );
    drop(bytes);

    let threads = rayon::current_num_threads();
    for n in [1, threads] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("thread pool");
        let (mut best, mut cpu_of_best) = (f64::INFINITY, 0.0);
        for _ in 0..3 {
            let out = tempfile::tempdir().expect("tempdir");
            let (t, c) = (Instant::now(), process_cpu());
            let report = pool
                .install(|| load(&cfg, &root, out.path(), &NoProgress))
                .expect("load");
            let wall = t.elapsed().as_secs_f64();
            if wall < best {
                (best, cpu_of_best) = (wall, process_cpu() - c);
            }
            assert_eq!(report.images, 275);
            if let Some(keep) = std::env::var_os("PIPELINE_BENCH_KEEP") {
                // For comparing the arrays with another implementation by hand.
                for f in ["images.npy", "labels.npy", "index.csv"] {
                    std::fs::copy(out.path().join(f), Path::new(&keep).join(f)).expect("keep");
                }
            }
        }
        println!(
            "full load (read + hash + decode + resize + write), {n} thread(s): best of 3 {best:.2} s wall, {:.1} images/s, {:.1} MB/s, {cpu_of_best:.2} s CPU ({:.2} cores busy)",
            images.len() as f64 / best,
            mb / best,
            cpu_of_best / best
        );
    }
}

/// CPU time of the calling thread in seconds, from `/proc/thread-self/schedstat` (Linux).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// CPU time of the whole process (user + system) in seconds, from `/proc/self/stat`.
fn process_cpu() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        });
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    ticks.map_or(0.0, |t| t / 100.0)
}
