//! Device choice end to end (`--device cpu|cuda|auto`, `PIPELINE_DEVICE`): on a machine
//! without a usable GPU, `cuda` fails with one line naming what is missing and where it was
//! looked for, and `auto` falls back to the CPU and records why. On a machine with one, the
//! GPU tests run; without one they skip with a message, or fail when `PIPELINE_REQUIRE_GPU=1`
//! (how `tools/gpu-check.sh` runs them).

mod common;

use std::collections::BTreeMap;

use common::{Project, FAILURE, USAGE};

/// Six synthetic images per class at 32 x 32, the base and its features: the stages whose
/// bytes do (features) and do not (load, normalize, model) depend on the device.
const FEATURES_EXP: &str = r#"
name = "device"
seed = 3

[stages.load]
kind = "load"
image_size = 32

[[stages.load.sources]]
type = "synthetic"
count_per_class = 6
seed = 3

[stages.normalize]
kind = "normalize"
inputs = { images = "load.images" }
mode = "scale"

[stages.model]
kind = "model"
image_size = 32
weights = "random-he"
pooling = "global"
units = 16

[stages.features]
kind = "features"
inputs = { base = "model.base", images = "normalize.images" }
"#;

/// Whether this machine has a usable GPU, as the binary sees it.
fn gpu_usable(p: &Project) -> bool {
    p.pipeline(&["--device", "cuda", "status", "exp.toml"])
        .status
        .success()
}

/// Skips (recorded) when there is no GPU, or fails under `PIPELINE_REQUIRE_GPU=1`.
fn require_gpu(p: &Project) -> bool {
    if gpu_usable(p) {
        return true;
    }
    let why = String::from_utf8_lossy(
        &p.pipeline(&["--device", "cuda", "status", "exp.toml"])
            .stderr,
    )
    .trim()
    .to_string();
    if std::env::var("PIPELINE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("PIPELINE_REQUIRE_GPU=1 but no usable GPU: {why}");
    }
    common::skip(&format!("no usable GPU ({why})"));
    false
}

fn keys(record: &toml::Table) -> BTreeMap<String, String> {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["key"].as_str().expect("key").to_string(),
            )
        })
        .collect()
}

#[test]
fn cuda_without_a_usable_gpu_is_one_line_naming_what_is_missing_and_where() {
    let p = Project::new();
    p.write("exp.toml", FEATURES_EXP);
    if gpu_usable(&p) {
        common::skip("a GPU is usable here: the no-GPU error cannot be shown");
        return;
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let out = p
        .command(&["--device", "cuda", "run", "exp.toml"])
        .env("PIPELINE_CUDA_LIB_DIRS", empty.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FAILURE), "{err}");
    assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    assert!(err.starts_with("error: CUDA is not usable: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // It names what is missing, and the folder it was told to look in.
    assert!(err.contains("libcuda"), "{err}");
    assert!(
        err.contains(&format!(
            "PIPELINE_CUDA_LIB_DIRS ({})",
            empty.path().display()
        )),
        "{err}"
    );
    // Nothing ran.
    assert!(!p.runs_dir().exists(), "no run was started");
    // The same through the environment.
    let out = p
        .command(&["run", "exp.toml"])
        .env("PIPELINE_DEVICE", "cuda")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(FAILURE));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: CUDA is not usable: "));
}

#[test]
fn auto_falls_back_to_the_cpu_records_why_and_shares_the_cpu_cache() {
    let p = Project::new();
    p.write("exp.toml", FEATURES_EXP);
    if gpu_usable(&p) {
        common::skip("a GPU is usable here: auto would not fall back");
        return;
    }
    let out = p.ok(&["--device", "auto", "run", "exp.toml"]);
    assert!(
        out.contains(
            "device: cpu (auto (--device): no usable GPU, so the CPU: CUDA is not usable: "
        ),
        "{out}"
    );
    let record = p.latest();
    let device = record["device"].as_table().expect("[device] in run.toml");
    assert_eq!(device["class"].as_str(), Some("cpu"));
    assert_eq!(device["requested"].as_str(), Some("auto"));
    let reason = device["reason"].as_str().expect("reason");
    assert!(
        reason.contains("no usable GPU") && reason.contains("libcuda"),
        "{reason}"
    );
    let shown = p.ok(&["show", "latest"]);
    assert!(
        shown.contains("device      cpu (asked: auto; auto (--device): no usable GPU"),
        "{shown}"
    );
    let features = &record["stages"].as_array().expect("stages")[3];
    assert_eq!(features["name"].as_str(), Some("features"));
    assert_eq!(features["device_class"].as_str(), Some("cpu"));

    // The CPU chosen by auto is the CPU: a plain run finds everything cached.
    let auto_keys = keys(&record);
    p.ok(&["run", "exp.toml"]);
    let plain = p.latest();
    assert_eq!(keys(&plain), auto_keys);
    assert!(
        common::cache_uses(&plain)
            .iter()
            .all(|u| u.ends_with("=hit")),
        "{:?}",
        common::cache_uses(&plain)
    );
    let device = plain["device"].as_table().expect("[device]");
    assert_eq!(device["requested"].as_str(), Some("cpu"));
    assert_eq!(device["reason"].as_str(), Some("the default chose the CPU"));
}

#[test]
fn a_device_that_is_not_one_is_a_usage_error() {
    let p = Project::new();
    p.write("exp.toml", FEATURES_EXP);
    let err = p.rejects(&["--device", "gpu", "status", "exp.toml"]);
    assert!(err.contains("invalid value 'gpu'"), "{err}");
    let out = p
        .command(&["status", "exp.toml"])
        .env("PIPELINE_DEVICE", "gpu")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(USAGE));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: PIPELINE_DEVICE=\"gpu\" is not a device: use cpu, cuda or auto"
    );
}

/// On a GPU: the features stage computes there, its key names the device class (so CPU and
/// GPU results are cached apart), the other stages' keys do not change, run.toml names the
/// device and its libraries, a rerun is bit-identical, and `diff` against the CPU run says it
/// compared through the metrics.
#[test]
fn on_a_gpu_the_features_are_keyed_by_device_class_and_rerun_bit_identical() {
    let p = Project::new();
    p.write("exp.toml", FEATURES_EXP);
    if !require_gpu(&p) {
        return;
    }
    p.ok(&["run", "exp.toml", "--name", "on-cpu"]);
    let cpu = p.latest();
    p.ok(&["--device", "cuda", "run", "exp.toml", "--name", "on-gpu"]);
    let gpu = p.latest();
    let device = gpu["device"].as_table().expect("[device]");
    assert_eq!(device["class"].as_str(), Some("cuda-fp32"));
    let facts = device["facts"].as_table().expect("facts");
    for fact in ["name", "driver_cuda", "cudnn", "cublas", "nvrtc", "arch"] {
        assert!(facts.contains_key(fact), "{fact} missing from {facts:?}");
    }
    let (kc, kg) = (keys(&cpu), keys(&gpu));
    for stage in ["load", "normalize", "model"] {
        assert_eq!(
            kc[stage], kg[stage],
            "{stage} does not depend on the device"
        );
    }
    assert_ne!(
        kc["features"], kg["features"],
        "features are keyed by device class"
    );

    p.ok(&[
        "--device",
        "cuda",
        "run",
        "exp.toml",
        "--no-cache",
        "--name",
        "on-gpu-again",
    ]);
    let again = p.latest();
    let digest = |r: &toml::Table| {
        r["stages"].as_array().expect("stages")[3]["outputs"]["features"]["blake3"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    assert_eq!(
        digest(&gpu),
        digest(&again),
        "a rerun on the GPU is bit-identical"
    );

    let out = p.ok(&["diff", "on-cpu", "on-gpu"]);
    assert!(out.contains("device: cpu -> cuda-fp32"), "{out}");
    let out = p.ok(&["--device", "cuda", "verify", "on-gpu"]);
    assert!(out.contains("reproduces bit for bit"), "{out}");
}
