//! Checkpoints load in PyTorch: runs the quickstart, writes its trained checkpoint with
//! `pipeline export` (a frozen-base run directory holds the head alone), then
//! `tools/torch_crosscheck.py`, which loads the base and the trained checkpoint into
//! torchvision's VGG16 `features` by name (strict) and compares PyTorch's outputs with the
//! run's features and probabilities.
//!
//! Needs a Python with torch, torchvision, safetensors and numpy: `PIPELINE_TORCH_PYTHON`,
//! else `python3`. Without one the test says so and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{repo, shared_data};

/// The script's own tolerance: PyTorch against the run, relative to the values' scale.
const TOLERANCE: f64 = 1e-4;

/// The Python to use, or `None` (after recording the calling test as skipped) when it cannot
/// import torch.
fn torch_python() -> Option<String> {
    let python = std::env::var("PIPELINE_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import numpy, safetensors, torch, torchvision"])
        .output();
    match probe {
        Ok(out) if out.status.success() => Some(python),
        _ => {
            common::skip(&format!(
                "torch/torchvision not importable by {python}; \
                 set PIPELINE_TORCH_PYTHON to a Python that has torch, torchvision, \
                 safetensors and numpy"
            ));
            None
        }
    }
}

/// Runs `pipeline` from the repository root with a store of its own.
fn pipeline(store: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--artifacts")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_DATA_ROOT")
        .output()
        .expect("pipeline runs");
    assert!(
        out.status.success(),
        "pipeline {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn only_run(store: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(store.join("runs"))
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().expect("a run")
}

fn crosscheck(python: &str, args: &[&str]) -> (Output, String) {
    let out = Command::new(python)
        .arg(repo().join("tools/torch_crosscheck.py"))
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The `rel=` figure of the script's line for `what` (`features`, `probabilities`).
fn relative_error(report: &str, what: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{what}: ")))
        .unwrap_or_else(|| panic!("no `{what}` line in:\n{report}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("rel="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rel= in `{line}`"))
}

/// The run's whole trained checkpoint, written by `pipeline export` beside the store.
fn exported(store: &Path, run: &Path) -> PathBuf {
    let file = store.with_file_name("exported.safetensors");
    let id = run.file_name().expect("run id").to_str().expect("utf-8 id");
    pipeline(
        store,
        &["export", id, "--force", "-o", file.to_str().expect("utf-8")],
    );
    file
}

/// Runs the script on `run` (with its exported checkpoint) and insists that PyTorch agrees
/// within the tolerance.
fn assert_torch_agrees(python: &str, store: &Path, run: &Path) -> String {
    let model = exported(store, run);
    let (out, report) = crosscheck(
        python,
        &[
            run.to_str().expect("utf-8 path"),
            "--model",
            model.to_str().expect("utf-8 path"),
        ],
    );
    eprintln!("{report}");
    assert!(out.status.success(), "cross-check failed:\n{report}");
    assert!(report.contains("torch-crosscheck: ok"), "{report}");
    for what in ["features", "probabilities"] {
        let rel = relative_error(&report, what);
        assert!(
            rel <= TOLERANCE,
            "{what}: relative error {rel} > {TOLERANCE}"
        );
    }
    report
}

#[test]
fn quickstart_checkpoints_give_the_same_outputs_in_torchvision() {
    let Some(python) = torch_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    pipeline(&store, &["run", "experiments/quickstart.toml"]);
    let run = only_run(&store);
    let report = assert_torch_agrees(&python, &store, &run);
    assert!(report.contains("pooling=global image_size=32"), "{report}");

    // Strict by name: the whole checkpoint's head tensors are extra for the base alone.
    let model = exported(&store, &run);
    let (out, text) = crosscheck(
        &python,
        &[
            run.to_str().expect("utf-8"),
            "--base",
            model.to_str().expect("utf-8"),
            "--model",
            model.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("Unexpected key(s)") && text.contains("head.dense1.weight"),
        "{text}"
    );
}

/// The other direction, as the README converts ImageNet weights: torchvision's own (random)
/// VGG16 weights, saved as its state dict's `features.*` entries, load as the pipeline's
/// base, arrive unchanged in the checkpoint, and give the same features there as in PyTorch.
#[test]
fn torchvision_weights_load_as_the_base_unchanged() {
    let Some(python) = torch_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("vgg16-torchvision.safetensors");
    let convert = "import sys, torch, torchvision\n\
        from safetensors.torch import save_file\n\
        torch.manual_seed(0)\n\
        sd = torchvision.models.vgg16(weights=None).state_dict()\n\
        save_file({k: v for k, v in sd.items() if k.startswith('features.')}, sys.argv[1])\n";
    let out = Command::new(&python)
        .args(["-c", convert])
        .arg(&weights)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = tmp.path().join("store");
    // Weights are named relative to the data root, as the README says: here, the tempdir.
    let data_root = tmp.path().to_string_lossy().into_owned();
    let set_weights = "model.weights=vgg16-torchvision.safetensors";
    pipeline(
        &store,
        &[
            "run",
            "experiments/quickstart.toml",
            "--data-root",
            &data_root,
            "--set",
            "load.sources=[{ type = \"synthetic\", count_per_class = 20, seed = 7 }]",
            "--set",
            set_weights,
            "--set",
            "train.epochs=2",
        ],
    );
    let run = only_run(&store);
    let same = "import sys, torch\n\
        from safetensors.torch import load_file\n\
        a, b = load_file(sys.argv[1]), load_file(sys.argv[2])\n\
        same = all(torch.equal(v, b[k]) for k, v in a.items())\n\
        print(len(a), 'tensors', 'identical' if same else 'DIFFER')\n";
    let out = Command::new(&python)
        .args(["-c", same])
        .arg(&weights)
        .arg(exported(&store, &run))
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "26 tensors identical", "{out:?}");
    assert_torch_agrees(&python, &store, &run);
}

/// The real images at 32 px with global pooling: cheap. The seed's `avg4` pooling (the
/// top-left 4x4 of the 7x7 map) needs 224 or 237 px, minutes for 275 images through both the
/// pipeline and PyTorch on two cores; run the script on a full `model1` run for that.
#[test]
fn model1_on_the_real_images_gives_the_same_outputs_in_torchvision() {
    let Some(data) = shared_data() else { return };
    let Some(python) = torch_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let data_root = data.to_string_lossy().into_owned();
    let mut args = vec!["run", "experiments/model1.toml", "--data-root", &data_root];
    args.extend(common::MODEL1_AT_32);
    pipeline(&store, &args);
    assert_torch_agrees(&python, &store, &only_run(&store));
}
