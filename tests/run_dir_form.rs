//! End-to-end tests of what a run directory holds: a frozen-base train publishes its head and a
//! record of its base instead of the whole model, `pipeline export` gives the whole model back
//! bit for bit (or one clear line when the base is gone), and every published file is the
//! cache's own (a hard link), so a cached rerun stores nothing twice.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::Project;

/// The quickstart, smaller (24 images, 2 epochs): the same stages in seconds.
fn mini_quickstart(p: &Project) {
    let text =
        fs::read_to_string(common::repo().join("experiments/quickstart.toml")).expect("quickstart");
    let mini = text
        .replace("count_per_class = 120", "count_per_class = 12")
        .replace("epochs = 30", "epochs = 2");
    assert_ne!(mini, text, "the quickstart still has the parameters shrunk");
    p.write("mini.toml", &mini);
}

fn run_dir(p: &Project, record: &toml::Table) -> PathBuf {
    p.runs_dir().join(record["id"].as_str().expect("id"))
}

fn stage<'a>(record: &'a toml::Table, kind: &str) -> &'a toml::Value {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["kind"].as_str() == Some(kind))
        .expect("stage of kind")
}

fn digest_of(path: &Path) -> String {
    blake3::hash(&fs::read(path).expect("read"))
        .to_hex()
        .to_string()
}

/// The published files of a run directory by name, with their (device, inode).
fn published_inodes(dir: &Path) -> BTreeMap<String, (u64, u64, u64)> {
    fs::read_dir(dir)
        .expect("run dir")
        .map(|e| e.expect("entry"))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Written by the run itself, not stage outputs.
            !["run.toml", "experiment.toml", "report.html"].contains(&name.as_str())
        })
        .map(|e| {
            let meta = e.metadata().expect("meta");
            (
                e.file_name().to_string_lossy().into_owned(),
                (meta.dev(), meta.ino(), meta.nlink()),
            )
        })
        .collect()
}

#[test]
fn a_frozen_run_publishes_its_head_and_export_gives_the_whole_model_back() {
    let p = Project::new();
    mini_quickstart(&p);
    p.ok(&["run", "mini.toml", "--name", "mini"]);
    let record = p.latest();
    let dir = run_dir(&p, &record);
    let train = stage(&record, "train");
    let model = &train["outputs"]["model"];
    let model_digest = model["blake3"].as_str().expect("digest");
    assert!(model.get("published").is_none(), "{model:?}");
    assert!(!dir.join("model.safetensors").exists());
    // The head alone: a few hundred kB at most, not the 59 MB model.
    let head = fs::metadata(dir.join("head.safetensors")).expect("head published");
    assert!(head.len() < 200_000, "{} bytes", head.len());
    let base_record: toml::Table =
        toml::from_str(&fs::read_to_string(dir.join("base.toml")).expect("base.toml"))
            .expect("base.toml parses");
    assert_eq!(
        base_record["base"]["blake3"].as_str(),
        train["inputs"]["model"]["digest"].as_str()
    );
    assert_eq!(base_record["model"]["blake3"].as_str(), Some(model_digest));
    assert_eq!(
        base_record["model"]["size"].as_integer(),
        model["size"].as_integer()
    );

    // Bit for bit the checkpoint the train stage stored.
    p.ok(&["export", "mini", "-o", "whole.safetensors"]);
    assert_eq!(digest_of(&p.path().join("whole.safetensors")), model_digest);
    // The default name, in the current directory; never replaced unasked.
    p.ok(&["export", "latest"]);
    assert_eq!(digest_of(&p.path().join("model.safetensors")), model_digest);
    let err = p.fails(&["export", "latest"]);
    assert!(
        err.contains("model.safetensors exists: pass --force"),
        "{err}"
    );
    p.ok(&["export", "latest", "--force"]);

    // Every published file is the cache's stored file, linked; a cached rerun links the same
    // inodes again rather than storing anything twice.
    let first = published_inodes(&dir);
    assert!(first.contains_key("head.safetensors"), "{first:?}");
    assert!(first.contains_key("predictions.csv"), "{first:?}");
    for (name, (_, _, links)) in &first {
        assert!(*links >= 2, "{name} has {links} link(s)");
    }
    p.ok(&["run", "mini.toml"]);
    let rerun = p.latest();
    assert!(common::cache_uses(&rerun)
        .iter()
        .all(|u| u.ends_with("=hit")));
    let second = published_inodes(&run_dir(&p, &rerun));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, (dev, ino, _)) in &first {
        assert_eq!((dev, ino), (&second[name].0, &second[name].1), "{name}");
    }
}

#[test]
fn export_with_the_base_gone_says_what_to_do_and_writes_nothing() {
    let p = Project::new();
    mini_quickstart(&p);
    p.ok(&["run", "mini.toml", "--name", "mini"]);
    let record = p.latest();
    let base = stage(&record, "train")["inputs"]["model"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    // What the store held is collected; the run directory stays.
    p.ok(&["gc", "--keep-last", "0"]);
    let err = p.fails(&["export", "mini", "-o", "out.safetensors"]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: run {}: the base checkpoint (model.model, blake3 {}) is not in the store (removed by gc?): run the experiment again to store it, then export",
            record["id"].as_str().expect("id"),
            &base[..12]
        )
    );
    let left: Vec<String> = fs::read_dir(p.path())
        .expect("project")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.safetensors"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_fine_tuned_run_keeps_its_whole_checkpoint_stored_once() {
    let p = Project::new();
    mini_quickstart(&p);
    p.ok(&[
        "run",
        "mini.toml",
        "--set",
        "train.freeze_base=false",
        "--set",
        "train.epochs=1",
    ]);
    let record = p.latest();
    let dir = run_dir(&p, &record);
    assert!(!dir.join("head.safetensors").exists());
    assert!(!dir.join("base.toml").exists());
    let model = &stage(&record, "train")["outputs"]["model"];
    let published = dir.join(model["published"].as_str().expect("published"));
    assert_eq!(
        Some(digest_of(&published).as_str()),
        model["blake3"].as_str()
    );
    // The cache's blob and the run directory's file are one inode: no second 59 MB copy.
    let links = fs::metadata(&published).expect("model").nlink();
    assert!(links >= 2, "{links} link(s)");
    // Export of a whole published checkpoint is the same bytes.
    p.ok(&["export", "latest", "-o", "copy.safetensors"]);
    assert_eq!(
        digest_of(&p.path().join("copy.safetensors")),
        digest_of(&published)
    );
}
