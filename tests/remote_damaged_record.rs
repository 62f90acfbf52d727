//! End-to-end test of a damaged record on a folder remote (`file://`): a manifest
//! (`ac/<key>`) cut in half is reported once, replaced by the recomputation's push, and
//! fetched intact by the next machine, instead of being reported and recomputed forever.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{cache_uses, Project};

const EXP: &str = r#"
name = "shared"
seed = 1

[stages.gen]
kind = "shell"
command = "seq 1 500 > numbers.txt"
outputs = ["numbers.txt"]
"#;

/// One machine's project using the folder remote `url`; runs `EXP` and returns its output.
fn run_on(url: &str) -> (Project, String) {
    let p = Project::trusting_shell();
    p.write("exp.toml", EXP);
    let out = p
        .command(&["run", "exp.toml"])
        .env("PIPELINE_REMOTE", url)
        .output()
        .expect("pipeline runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "pipeline run failed:\n{text}");
    (p, text)
}

fn manifests(remote: &std::path::Path) -> Vec<PathBuf> {
    fs::read_dir(remote.join("ac"))
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_truncated_remote_manifest_is_replaced_by_the_recomputation() {
    let shared = tempfile::tempdir().expect("remote");
    let url = format!("file://{}", shared.path().display());
    let (a, _) = run_on(&url);
    assert_eq!(cache_uses(&a.latest()), ["gen=miss"]);
    let [manifest] = manifests(shared.path())
        .try_into()
        .expect("one pushed manifest");
    let whole = fs::read(&manifest).expect("manifest");
    fs::write(&manifest, &whole[..whole.len() / 2]).expect("cut the manifest in half");

    // The next machine reports the damage and recomputes...
    let (b, text) = run_on(&url);
    assert!(
        text.contains("warning: remote") && text.contains("damaged"),
        "the damage is reported:\n{text}"
    );
    assert_eq!(
        cache_uses(&b.latest()),
        ["gen=miss"],
        "recomputed, not fetched"
    );
    // ...and its push replaced the damaged manifest: the one after fetches it, with no warning.
    // (The new manifest names machine b's run, so it is not a's byte for byte.)
    let now = fs::read_to_string(&manifest).expect("manifest");
    assert!(
        now.len() > whole.len() / 2 && now.contains("[[files]]"),
        "the half manifest is still there:\n{now}"
    );
    let (c, text) = run_on(&url);
    assert!(!text.contains("damaged"), "{text}");
    assert_eq!(cache_uses(&c.latest()), ["gen=remote"]);
}
