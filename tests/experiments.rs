//! End-to-end tests of the shipped experiments through the binary: the quickstart on
//! synthetic images (always), and the seed recipe on the real chest X-rays when
//! `../shared/data` is present (skipped with a message otherwise).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cache_uses, csv_rows, repo, shared_data};

/// Runs `pipeline` from the repository root with a store of its own.
fn pipeline(store: &Path, args: &[&str], threads: Option<usize>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.current_dir(repo())
        .arg("--artifacts")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_DATA_ROOT");
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    let out = cmd.output().expect("pipeline runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "pipeline {args:?} failed:\n{text}");
    text
}

fn latest_record(store: &Path) -> (PathBuf, toml::Table) {
    let runs = store.join("runs");
    let mut ids: Vec<String> = fs::read_dir(&runs)
        .expect("runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    let dir = runs.join(ids.last().expect("a run"));
    let text = fs::read_to_string(dir.join("run.toml")).expect("record");
    (dir, toml::from_str(&text).expect("record parses"))
}

/// Every non-volatile output digest of a run, as `stage.output`.
fn digests(record: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stage in record["stages"].as_array().expect("stages") {
        let name = stage["name"].as_str().expect("name");
        for (output, rec) in stage["outputs"].as_table().expect("outputs") {
            if rec.get("volatile").and_then(toml::Value::as_bool) == Some(true) {
                continue;
            }
            out.insert(
                format!("{name}.{output}"),
                rec["blake3"].as_str().expect("digest").to_string(),
            );
        }
    }
    out
}

fn metrics(dir: &Path) -> BTreeMap<String, f64> {
    csv_rows(&dir.join("metrics.csv"))
        .into_iter()
        .map(|row| {
            let value = row["value"].parse::<f64>().expect("a number");
            (row["name"].clone(), value)
        })
        .collect()
}

#[test]
fn quickstart_end_to_end_cached_and_bit_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    pipeline(&a, &["run", "experiments/quickstart.toml"], Some(2));
    let (dir, record) = latest_record(&a);
    assert_eq!(record["status"].as_str(), Some("succeeded"));

    // Every published output exists and parses.
    let epochs = record["params"]["train"]["epochs"]
        .as_integer()
        .expect("epochs");
    let history = csv_rows(&dir.join("history.csv"));
    assert_eq!(history.len() as i64, epochs, "one history row per epoch");
    for (i, row) in history.iter().enumerate() {
        assert_eq!(row["epoch"], (i + 1).to_string());
        let loss: f64 = row["loss"].parse().expect("loss");
        assert!(loss.is_finite() && loss > 0.0, "{row:?}");
        let acc: f64 = row["val_accuracy"].parse().expect("val_accuracy");
        assert!((0.0..=1.0).contains(&acc));
    }
    for figure in ["accuracy", "loss", "confusion", "roc", "predictions"] {
        let png = fs::read(dir.join(format!("{figure}.png"))).expect("figure");
        assert_eq!(&png[1..4], b"PNG", "{figure}.png is a PNG");
        let svg = fs::read_to_string(dir.join(format!("{figure}.svg"))).expect("svg");
        assert!(svg.contains("<svg"), "{figure}.svg");
    }
    let summary = fs::read_to_string(dir.join("summary.txt")).expect("summary");
    assert!(summary.contains("Total params: 14,747,585"), "{summary}");

    // The metrics agree with the predictions they were computed from.
    let predictions = csv_rows(&dir.join("predictions.csv"));
    let m = metrics(&dir);
    assert_eq!(predictions.len() as f64, m["n_test"]);
    let mut cells = BTreeMap::new();
    for p in &predictions {
        let prob: f64 = p["probability"].parse().expect("probability");
        let predicted = if prob > 0.5 { "COVID" } else { "NORMAL" };
        assert_eq!(p["predicted_label"], predicted, "{p:?}");
        assert!(p["image"].starts_with("synthetic:seed=7#"), "{p:?}");
        *cells
            .entry((p["true_label"].clone(), predicted.to_string()))
            .or_insert(0.0) += 1.0;
    }
    let cell = |t: &str, p: &str| *cells.get(&(t.to_string(), p.to_string())).unwrap_or(&0.0);
    assert_eq!(m["true_positives"], cell("COVID", "COVID"));
    assert_eq!(m["true_negatives"], cell("NORMAL", "NORMAL"));
    assert_eq!(m["false_positives"], cell("NORMAL", "COVID"));
    assert_eq!(m["false_negatives"], cell("COVID", "NORMAL"));
    let right = cell("COVID", "COVID") + cell("NORMAL", "NORMAL");
    assert!((m["test_accuracy"] - right / m["n_test"]).abs() < 1e-12);
    for row in csv_rows(&dir.join("confusion.csv")) {
        let count: f64 = row["count"].parse().expect("count");
        assert_eq!(count, cell(&row["true_label"], &row["predicted_label"]));
    }
    // The task is learnable: clearly better than chance on the held-out images.
    assert!(m["roc_auc"] > 0.6, "AUC {}", m["roc_auc"]);
    assert_eq!(
        record["stages"][6]["metrics"]["test_accuracy"].as_float(),
        Some(m["test_accuracy"]),
        "the run record carries the same headline numbers"
    );

    // A rerun reuses every stage.
    pipeline(&a, &["run", "experiments/quickstart.toml"], Some(2));
    let (_, rerun) = latest_record(&a);
    assert!(
        cache_uses(&rerun).iter().all(|u| u.ends_with("=hit")),
        "{:?}",
        cache_uses(&rerun)
    );

    // Changing the epochs reruns only the training and what follows it.
    pipeline(
        &a,
        &[
            "run",
            "experiments/quickstart.toml",
            "--set",
            "train.epochs=3",
        ],
        Some(2),
    );
    let (_, fewer) = latest_record(&a);
    let uses = cache_uses(&fewer);
    assert_eq!(
        uses,
        [
            "load=hit",
            "normalize=hit",
            "split=hit",
            "model=hit",
            "features=hit",
            "train=miss",
            "evaluate=miss",
            "plot=miss"
        ]
    );
    // A head change rebuilds the model but the base, and so the features, are reused.
    pipeline(
        &a,
        &[
            "run",
            "experiments/quickstart.toml",
            "--set",
            "model.units=32",
        ],
        Some(2),
    );
    let (_, head) = latest_record(&a);
    assert_eq!(
        cache_uses(&head)[3..5],
        ["model=miss".to_string(), "features=hit".to_string()]
    );

    // A cold run on one thread gives the same bytes: checkpoints, features, metrics, figures.
    pipeline(
        &b,
        &["run", "experiments/quickstart.toml", "--no-cache"],
        Some(1),
    );
    let (_, single) = latest_record(&b);
    assert_eq!(digests(&record), digests(&single));
    assert!(digests(&record).contains_key("train.model"));
}

#[test]
fn model1_recipe_on_the_real_images_at_a_small_size() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let data_root = data.to_string_lossy().into_owned();
    // The seed recipe, shrunk to 32 x 32 so the test stays quick; the full size is a benchmark.
    let mut args = vec!["run", "experiments/model1.toml", "--data-root", &data_root];
    args.extend(common::MODEL1_AT_32);
    pipeline(&store, &args, None);
    let (dir, record) = latest_record(&store);
    let load = &record["stages"][0];
    assert_eq!(load["notes"]["images"].as_integer(), Some(275));
    let counts: Vec<(String, i64)> = load["notes"]["class_counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| {
            (
                c["class"].as_str().expect("class").to_string(),
                c["count"].as_integer().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("NORMAL".to_string(), 100), ("COVID".to_string(), 175)]
    );
    let m = metrics(&dir);
    assert_eq!(m["n_test"], 55.0, "20 % of 275, rounded up");
    assert_eq!(csv_rows(&dir.join("history.csv")).len(), 5);
    let predictions = csv_rows(&dir.join("predictions.csv"));
    assert!(predictions
        .iter()
        .all(|p| p["image"].starts_with("covid-chestxray-dataset/")
            || p["image"].starts_with("chest_xray/")));

    pipeline(&store, &args, None);
    let (_, rerun) = latest_record(&store);
    assert!(cache_uses(&rerun).iter().all(|u| u.ends_with("=hit")));
}

#[test]
fn fine_tuning_updates_the_base_and_evaluates_with_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    pipeline(
        &store,
        &[
            "run",
            "experiments/quickstart.toml",
            "--set",
            "load.sources=[{ type = \"synthetic\", count_per_class = 20, seed = 7 }]",
            "--set",
            "train.freeze_base=false",
            "--set",
            "train.epochs=1",
        ],
        None,
    );
    let (dir, record) = latest_record(&store);
    let stage = |name: &str| {
        record["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .cloned()
            .expect("stage")
    };
    let digest = |name: &str, output: &str| {
        stage(name)["outputs"][output]["blake3"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    // The frozen pass and the trained model see different features: the base was trained.
    assert_ne!(digest("features", "features"), digest("train", "features"));
    assert_eq!(
        stage("evaluate")["inputs"]["features"]["digest"].as_str(),
        Some(digest("train", "features").as_str()),
        "evaluation uses the fine-tuned base's features"
    );
    assert_eq!(csv_rows(&dir.join("history.csv")).len(), 1);
    assert_eq!(metrics(&dir)["n_test"], 8.0, "20 % of 40, rounded up");

    // With the base frozen, the trained model's features are the frozen pass's, byte for byte.
    pipeline(
        &store,
        &[
            "run",
            "experiments/quickstart.toml",
            "--set",
            "load.sources=[{ type = \"synthetic\", count_per_class = 20, seed = 7 }]",
            "--set",
            "train.epochs=1",
        ],
        None,
    );
    let (_, frozen) = latest_record(&store);
    let find = |name: &str| {
        frozen["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .cloned()
            .expect("stage")
    };
    assert_eq!(
        find("features")["outputs"]["features"]["blake3"],
        find("train")["outputs"]["features"]["blake3"]
    );
}

#[test]
fn winograd_and_direct_convolutions_give_the_same_predictions() {
    // The quickstart runs Winograd convolutions; the direct kernel computes the same function
    // with different rounding. The features differ in the last bits, so the head trains to
    // slightly different weights, but no prediction may move by more than 1e-4 or change label.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path();
    pipeline(store, &["run", "experiments/quickstart.toml"], None);
    let (fast_dir, fast) = latest_record(store);
    pipeline(
        store,
        &[
            "run",
            "experiments/quickstart.toml",
            "--set",
            "model.conv=direct",
        ],
        None,
    );
    let (direct_dir, direct) = latest_record(store);
    assert_eq!(fast["params"]["model"]["conv"].as_str(), Some("winograd"));
    assert_eq!(direct["params"]["model"]["conv"].as_str(), Some("direct"));
    assert_ne!(
        digests(&fast)["features.features"],
        digests(&direct)["features.features"],
        "the conv parameter must reach the features stage"
    );
    let (a, b) = (
        csv_rows(&fast_dir.join("predictions.csv")),
        csv_rows(&direct_dir.join("predictions.csv")),
    );
    assert_eq!(a.len(), 48);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["image"], y["image"]);
        assert_eq!(x["predicted_label"], y["predicted_label"], "{x:?} vs {y:?}");
        let p: f64 = x["probability"].parse().expect("probability");
        let q: f64 = y["probability"].parse().expect("probability");
        assert!((p - q).abs() < 1e-4, "{x:?} vs {y:?}");
    }
}
