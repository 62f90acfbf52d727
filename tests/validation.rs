//! End-to-end tests of parameter validation through the built binary: every bad value of every
//! kind's parameters is refused before anything runs, in one line that names the key actually
//! at fault (from the file with its line and column, or from the `--set` flag); a huge file
//! of problems is reported quickly with a capped list; and a `shell` stage's command runs only
//! with the user's explicit permission.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{repo, Project, USAGE};

const QUICKSTART: &str = "experiments/quickstart.toml";

/// `pipeline status` of the quickstart from the repository root, with a throwaway store:
/// `status` validates exactly as `run` does, and runs nothing if validation wrongly passes.
fn quickstart_status(store: &Path, sets: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.current_dir(repo())
        .arg("--artifacts")
        .arg(store)
        .args(["status", QUICKSTART])
        .env_remove("PIPELINE_DATA_ROOT")
        .env_remove("PIPELINE_ALLOW_SHELL");
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.output().expect("pipeline runs")
}

/// The one line of a refused command's error, asserting there is exactly one and exit code 2 (usage).
fn one_line_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(USAGE),
        "{what}: expected a refusal:\n{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: one line expected:\n{stderr}"
    );
    stderr.trim_end().to_string()
}

/// A `--set` flag with a bad value, and the parameter its error must name.
const BAD_SETS: &[(&str, &str)] = &[
    ("seed=-1", "seed"),
    ("train.epochs=0", "epochs"),
    ("train.batch_size=0", "batch_size"),
    ("train.batch_size=-8", "batch_size"),
    ("train.learning_rate=nan", "learning_rate"),
    ("train.learning_rate=inf", "learning_rate"),
    ("train.learning_rate=0", "learning_rate"),
    ("train.learning_rate=-0.001", "learning_rate"),
    ("train.beta1=1", "beta1"),
    ("train.beta1=nan", "beta1"),
    ("train.beta2=-0.5", "beta2"),
    ("train.beta2=nan", "beta2"),
    ("train.epsilon=0", "epsilon"),
    ("train.epsilon=nan", "epsilon"),
    ("train.validation_fraction=1", "validation_fraction"),
    ("train.validation_fraction=nan", "validation_fraction"),
    ("train.seed=-3", "seed"),
    ("model.image_size=100", "image_size"),
    ("model.image_size=-32", "image_size"),
    ("model.units=48", "units"),
    ("model.units=-64", "units"),
    ("model.dropout=1", "dropout"),
    ("model.dropout=nan", "dropout"),
    ("model.seed=-1", "seed"),
    ("model.pooling=avg4", "pooling"),
    ("model.weights=/etc/vgg16.safetensors", "weights"),
    ("model.weights=../vgg16.safetensors", "weights"),
    ("model.weights=weights/../../vgg16.safetensors", "weights"),
    ("split.test_fraction=0", "test_fraction"),
    ("split.test_fraction=1", "test_fraction"),
    ("split.test_fraction=nan", "test_fraction"),
    ("split.seed=-1", "seed"),
    ("evaluate.threshold=nan", "threshold"),
    ("evaluate.threshold=1.5", "threshold"),
    ("plot.threshold=-0.1", "threshold"),
    ("plot.threshold=inf", "threshold"),
    ("load.image_size=-32", "image_size"),
    ("load.image_size=5000000000", "image_size"),
];

#[test]
fn every_bad_set_value_is_refused_on_its_own_key() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut wrong = Vec::new();
    for (flag, param) in BAD_SETS {
        let out = quickstart_status(store.path(), &[flag]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected = format!("error: {QUICKSTART}: --set {flag}: `{param}` ");
        let right = out.status.code() == Some(USAGE)
            && stderr.lines().count() == 1
            && stderr.contains(&expected);
        if !right {
            wrong.push(format!(
                "--set {flag}: expected `{expected}...`, got: {stderr}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        !store.path().join("runs").exists()
            || fs::read_dir(store.path().join("runs"))
                .expect("runs")
                .count()
                == 0,
        "nothing was recorded"
    );
}

/// 1-based line and column of a byte offset in ASCII text.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[test]
fn bad_values_in_the_file_are_refused_on_their_own_key_and_place() {
    let quickstart = fs::read_to_string(repo().join(QUICKSTART)).expect("quickstart");
    // (text to replace, its replacement, the bad value as written, the key at fault, message)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "seed = 7\n\n[stages.load]",
            "seed = -1\n\n[stages.load]",
            "-1",
            "seed",
            "must not be negative, not -1",
        ),
        (
            "batch_size = 8",
            "batch_size = 0",
            "0",
            "stages.train.batch_size",
            "must be at least 1, not 0",
        ),
        (
            "learning_rate = 1e-3",
            "learning_rate = nan",
            "nan",
            "stages.train.learning_rate",
            "must be a finite number above 0, not NaN",
        ),
        (
            "validation_fraction = 0.1",
            "validation_fraction = -0.1",
            "-0.1",
            "stages.train.validation_fraction",
            "must be in [0, 1), not -0.1",
        ),
        (
            "learning_rate = 1e-3",
            "learning_rate = 1e-3\nbeta2 = inf",
            "inf",
            "stages.train.beta2",
            "must be in [0, 1), not inf",
        ),
        (
            "dropout = 0.2",
            "dropout = nan",
            "nan",
            "stages.model.dropout",
            "must be in [0, 1), not NaN",
        ),
        (
            "units = 64",
            "units = 0",
            "0",
            "stages.model.units",
            "0 is not supported",
        ),
        (
            "weights = \"random-he\"",
            "weights = \"../vgg16.safetensors\"",
            "\"../",
            "stages.model.weights",
            "must be a path relative to the data root without `..`",
        ),
        (
            "image_size = 32\nweights",
            "image_size = 100\nweights",
            "100",
            "stages.model.image_size",
            "image size 100 is not supported",
        ),
        (
            "test_fraction = 0.2",
            "test_fraction = nan",
            "nan",
            "stages.split.test_fraction",
            "must be strictly between 0 and 1, not NaN",
        ),
        (
            "kind = \"evaluate\"",
            "kind = \"evaluate\"\nthreshold = nan",
            "nan",
            "stages.evaluate.threshold",
            "must be in [0, 1], not NaN",
        ),
        (
            "image_size = 32\n\n[[",
            "image_size = -32\n\n[[",
            "-32",
            "stages.load.image_size",
            "must not be negative, not -32",
        ),
        (
            "image_size = 32\n\n[[",
            "image_size = 0\n\n[[",
            "0",
            "stages.load.image_size",
            "must be between 1 and 16384, not 0",
        ),
        (
            "image_size = 32\n\n[[",
            "image_size = 20000\n\n[[",
            "20000",
            "stages.load.image_size",
            "must be between 1 and 16384, not 20000",
        ),
        (
            "kind = \"load\"",
            "kind = \"load\"\nclasses = [\"A\", \"A\"]",
            "[\"A\", \"A\"]",
            "stages.load.classes",
            "must hold 1 to 256 distinct, non-empty names",
        ),
    ];
    let p = Project::new();
    for (from, to, value, key, message) in cases {
        assert!(quickstart.contains(from), "{from}");
        let text = quickstart.replacen(from, to, 1);
        p.write("exp.toml", &text);
        let start = text.find(to).expect("replaced");
        let assignment = format!("= {value}");
        let at = start
            + text[start..]
                .find(&assignment)
                .expect("value in the replacement")
            + 2;
        let (line, col) = position(&text, at);
        let err = one_line_error(&p.pipeline(&["status", "exp.toml"]), key);
        let expected = format!("error: exp.toml:{line}:{col}: {key}: {message}");
        assert!(
            err.starts_with(&expected),
            "expected `{expected}...`, got:\n{err}"
        );
    }
}

#[test]
fn a_huge_file_of_unknown_keys_gets_a_capped_report() {
    // About 10 MB: 530,000 unknown parameters in the last stage. Every problem is counted,
    // the first 50 in file order are shown with their place, then how many more there are.
    let quickstart = fs::read_to_string(repo().join(QUICKSTART)).expect("quickstart");
    let first_line = quickstart.lines().count() + 1;
    let keys = 530_000;
    let mut text = quickstart.clone();
    for i in 0..keys {
        text.push_str(&format!("unknown_{i:06} = 1\n"));
    }
    assert!(text.len() > 10_000_000, "{} bytes", text.len());
    let p = Project::new();
    p.write("big.toml", &text);
    let out = p.pipeline(&["status", "big.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(USAGE),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 52, "{}", &stderr[..stderr.len().min(2000)]);
    assert_eq!(lines[0], format!("error: {keys} problems in big.toml:"));
    for (i, line) in lines[1..51].iter().enumerate() {
        let expected = format!(
            "big.toml:{}:1: stages.plot.unknown_{i:06}: unknown parameter for kind `plot`",
            first_line + i
        );
        assert!(
            line.starts_with(&expected),
            "expected `{expected}`, got `{line}`"
        );
    }
    assert_eq!(lines[51], format!("... and {} more problems", keys - 50));
}

/// Three shell stages; `b` would leave a mark outside the store if it ever ran.
fn shell_experiment(marker: &Path) -> String {
    format!(
        r#"name = "shells"
seed = 1

[stages.a]
kind = "shell"
command = "echo a > a.txt"
outputs = ["a.txt"]

[stages.b]
kind = "shell"
inputs = {{ a = "a.a.txt" }}
command = "touch '{}'; cat $PIPELINE_IN_A > b.txt"
outputs = ["b.txt"]

[stages.c]
kind = "load"
image_size = 32
sources = [{{ type = "synthetic", count = 4, seed = 1 }}]
"#,
        marker.display()
    )
}

#[test]
fn shell_commands_run_only_with_permission() {
    let p = Project::new();
    let marker = p.path().join("ran");
    p.write("exp.toml", &shell_experiment(&marker));
    let refused = |args: &[&str]| {
        let out = p
            .command(args)
            .env_remove("PIPELINE_ALLOW_SHELL")
            .output()
            .expect("runs");
        one_line_error(&out, &args.join(" "))
    };
    let err = refused(&["run", "exp.toml"]);
    for part in [
        "exp.toml: ",
        "stages.a.command = \"echo a > a.txt\"",
        &format!(
            "stages.b.command = \"touch '{}'; cat $PIPELINE_IN_A > b.txt\"",
            marker.display()
        ),
        "--allow-shell",
        "PIPELINE_ALLOW_SHELL=1",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    assert!(
        !err.contains("stages.c"),
        "a load stage runs no command: {err}"
    );
    assert!(!marker.exists(), "the command ran without permission");
    assert!(!p.runs_dir().exists(), "nothing ran, nothing was recorded");
    for args in [
        &["lock", "exp.toml"][..],
        &["run", "exp.toml", "--no-cache"],
    ] {
        assert!(refused(args).contains("--allow-shell"));
    }
    assert!(!marker.exists());

    // `status` shows what would run, and needs no permission since it runs nothing.
    let status = p.ok(&["status", "exp.toml"]);
    assert!(status.contains("echo a > a.txt"), "{status}");
    assert!(status.contains("cat $PIPELINE_IN_A > b.txt"), "{status}");
    assert!(!marker.exists());

    // With the flag, or the environment variable, the commands run.
    p.ok(&["run", "exp.toml", "--allow-shell"]);
    assert!(marker.exists(), "the command ran with --allow-shell");
    fs::remove_file(&marker).expect("remove marker");
    let out = p
        .command(&["run", "exp.toml", "--no-cache"])
        .env("PIPELINE_ALLOW_SHELL", "1")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        marker.exists(),
        "the command ran with PIPELINE_ALLOW_SHELL=1"
    );
    fs::remove_file(&marker).expect("remove marker");

    // Re-executing a recorded run runs its commands again: it needs permission too.
    assert!(refused(&["verify", "latest"]).contains("--allow-shell"));
    assert!(!marker.exists());
    p.ok(&["verify", "latest", "--allow-shell"]);
    p.ok(&["lock", "exp.toml", "--allow-shell"]);
    fs::remove_file(&marker).expect("remove marker");
    assert!(refused(&["verify", "--lock", "exp.lock"]).contains("--allow-shell"));
    assert!(!marker.exists());
    p.ok(&["verify", "--lock", "exp.lock", "--allow-shell"]);
}

#[test]
fn shell_data_stays_under_the_data_root() {
    let p = Project::new();
    for bad in ["../secret.txt", "/etc/passwd", "data/../../x"] {
        let text = format!(
            "name = \"d\"\n\n[stages.a]\nkind = \"shell\"\ncommand = \"true\"\noutputs = [\"o.txt\"]\ndata = [\"ok.txt\", \"{bad}\"]\n"
        );
        p.write("exp.toml", &text);
        let err = one_line_error(&p.pipeline(&["status", "exp.toml"]), bad);
        let expected = format!("error: exp.toml:7:8: stages.a.data: `{bad}` must be a path relative to the data root without `..`");
        assert!(
            err.starts_with(&expected),
            "expected `{expected}...`, got:\n{err}"
        );
    }
}

#[test]
fn a_load_source_outside_the_data_root_is_refused_before_anything_runs() {
    let p = Project::new();
    p.write(
        "exp.toml",
        "name = \"x\"\n[stages.load]\nkind = \"load\"\nimage_size = 32\n\
         [[stages.load.sources]]\ntype = \"folder\"\npath = \"../outside\"\nlabel = \"COVID\"\n",
    );
    let err = one_line_error(&p.pipeline(&["status", "exp.toml"]), "sources");
    assert!(
        err.contains("stages.load.sources: must be a path relative to the data root without `..`"),
        "{err}"
    );
    assert!(!p.path().join("artifacts/runs").exists(), "nothing ran");
}
