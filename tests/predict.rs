//! End-to-end tests of `pipeline predict` through the binary: the quickstart's trained model on
//! its own test images gives the evaluate stage's probabilities; folders, `--csv`, and the
//! error cases; and, when the real data is present, real X-rays against the seed recipe.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{repo, shared_data, Project, FAILURE, USAGE};

/// The quickstart, run once for the whole test binary (it takes 15-30 s).
struct Trained {
    store: tempfile::TempDir,
    id: String,
    record: toml::Table,
}

fn trained() -> &'static Trained {
    static RUN: OnceLock<Trained> = OnceLock::new();
    RUN.get_or_init(|| {
        let store = tempfile::tempdir().expect("tempdir");
        let out = pipeline(store.path(), &["run", "experiments/quickstart.toml"]);
        assert!(out.status.success(), "quickstart failed:\n{}", text(&out));
        let runs = store.path().join("runs");
        let id = fs::read_dir(&runs)
            .expect("runs")
            .next()
            .expect("one run")
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let record = fs::read_to_string(runs.join(&id).join("run.toml")).expect("record");
        let record = toml::from_str(&record).expect("record parses");
        Trained { store, id, record }
    })
}

fn pipeline(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--artifacts")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_DATA_ROOT")
        .output()
        .expect("pipeline runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// `pipeline predict` on the trained run; `(stdout, stderr, exit code)`.
fn predict(args: &[&str]) -> (String, String, Option<i32>) {
    let t = trained();
    let out = pipeline(t.store.path(), &[&["predict"], args].concat());
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// Stdout lines as (path, probability, label).
fn parse_lines(stdout: &str) -> Vec<(String, f64, String)> {
    stdout
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 3, "{line:?}");
            let p = f[1];
            // Six decimals exactly, as documented.
            assert_eq!(p.split_once('.').map(|(_, d)| d.len()), Some(6), "{line:?}");
            (
                f[0].to_string(),
                p.parse().expect("probability"),
                f[2].into(),
            )
        })
        .collect()
}

/// A file one of the trained run's stages wrote, from the cache entry its record names.
fn cached_output(kind: &str, output: &str) -> PathBuf {
    let t = trained();
    let stage = t.record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["kind"].as_str() == Some(kind))
        .expect("stage of kind");
    let key = stage["key"].as_str().expect("key");
    let file = stage["outputs"][output]["file"].as_str().expect("file");
    t.store
        .path()
        .join("cache/entries")
        .join(&key[..2])
        .join(key)
        .join(file)
}

/// Writes image `row` of the load stage's `images.npy` as a 32 x 32 PNG: the size the run
/// trained at, so the resize is the identity and the pixels are the run's own.
fn write_png(pixels: &[u8], row: usize, path: &Path) {
    const LEN: usize = 32 * 32 * 3;
    let image = image::RgbImage::from_raw(32, 32, pixels[row * LEN..(row + 1) * LEN].to_vec())
        .expect("32 x 32 x 3");
    image.save(path).expect("png written");
}

/// The `name`d column of a CSV file, by row.
fn csv_column(path: &Path, name: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).expect("csv opens");
    let column = reader
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == name)
        .expect("column");
    reader
        .records()
        .map(|r| r.expect("row")[column].to_string())
        .collect()
}

#[test]
fn the_runs_own_test_images_get_the_evaluate_stages_probabilities() {
    let t = trained();
    let (shape, pixels) =
        stages::arrays::read_u8(&cached_output("load", "images")).expect("images.npy");
    assert_eq!(shape, [240, 32, 32, 3]);
    let test = stages::arrays::read_index(&cached_output("split", "test")).expect("test index");
    assert_eq!(test.len(), 48);
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<String> = test
        .iter()
        .map(|&row| {
            let path = dir.path().join(format!("row{row:03}.png"));
            write_png(&pixels, row, &path);
            path.display().to_string()
        })
        .collect();
    let csv = dir.path().join("out.csv");
    let csv_arg = csv.display().to_string();
    // An id prefix names the run; the files in test order, as predictions.csv lists them.
    let mut args = vec![&t.id[..15], "--csv", &csv_arg];
    args.extend(files.iter().map(String::as_str));
    let (stdout, stderr, code) = predict(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = parse_lines(&stdout);

    let evaluated = t
        .store
        .path()
        .join("runs")
        .join(&t.id)
        .join("predictions.csv");
    let want_p: Vec<f64> = csv_column(&evaluated, "probability")
        .iter()
        .map(|p| p.parse().expect("probability"))
        .collect();
    let want_label = csv_column(&evaluated, "predicted_label");
    assert_eq!(lines.len(), want_p.len());
    let got_p: Vec<f64> = csv_column(&csv, "probability")
        .iter()
        .map(|p| p.parse().expect("probability"))
        .collect();
    for (i, (path, p, label)) in lines.iter().enumerate() {
        assert_eq!(path, &files[i]);
        // Same pixels, same preprocessing, same weights: the same number, not a close one.
        assert!(
            (got_p[i] - want_p[i]).abs() <= 1e-6,
            "row {}: predict {} vs evaluate {}",
            test[i],
            got_p[i],
            want_p[i]
        );
        assert!((p - want_p[i]).abs() <= 5e-7 + 1e-6, "{p} vs {}", want_p[i]);
        assert_eq!(label, &want_label[i], "row {}", test[i]);
    }
    // A trained model that separates nothing would make this comparison vacuous.
    assert!(want_label.iter().any(|l| l == "COVID"));
    assert!(want_label.iter().any(|l| l == "NORMAL"));
}

#[test]
fn a_folder_gives_its_images_sorted_and_csv_matches_stdout() {
    let (_, pixels) = stages::arrays::read_u8(&cached_output("load", "images")).expect("images");
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("xrays");
    fs::create_dir_all(folder.join("nested")).expect("folders");
    // Written out of name order; the nested image, the text file and the other extension
    // case show what a folder contributes.
    write_png(&pixels, 5, &folder.join("c.png"));
    write_png(&pixels, 200, &folder.join("a.PNG"));
    image::RgbImage::from_raw(32, 32, pixels[7 * 3072..8 * 3072].to_vec())
        .expect("image")
        .save(folder.join("b.jpg"))
        .expect("jpeg written");
    write_png(&pixels, 9, &folder.join("nested/d.png"));
    fs::write(folder.join("notes.txt"), "not an image").expect("notes");
    let single = dir.path().join("single.png");
    write_png(&pixels, 5, &single);

    let csv = dir.path().join("predictions.csv");
    let (stdout, stderr, code) = predict(&[
        "latest",
        single.to_str().expect("utf-8 path"),
        folder.to_str().expect("utf-8 path"),
        "--csv",
        csv.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = parse_lines(&stdout);
    let names: Vec<String> = lines
        .iter()
        .map(|(p, _, _)| {
            Path::new(p)
                .strip_prefix(dir.path())
                .expect("under the temp dir")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["single.png", "xrays/a.PNG", "xrays/b.jpg", "xrays/c.png"]
    );
    // The same pixels give the same line whichever way the file was named.
    assert_eq!(lines[0].1, lines[3].1);
    for (_, p, label) in &lines {
        assert!(*p > 0.0 && *p < 1.0, "{p}");
        assert_eq!(label, if *p > 0.5 { "COVID" } else { "NORMAL" });
    }

    let mut reader = csv::Reader::from_path(&csv).expect("csv");
    assert_eq!(
        reader.headers().expect("header"),
        vec!["image", "probability", "label"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), lines.len());
    for (row, (path, p, label)) in rows.iter().zip(&lines) {
        assert_eq!(&row[0], path);
        let full: f64 = row[1].parse().expect("probability");
        assert!((full - p).abs() <= 5e-7, "{full} vs {p}");
        assert_eq!(&row[2], label);
    }
}

#[test]
fn bad_inputs_get_one_line_errors_naming_them() {
    let t = trained();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, pixels) = stages::arrays::read_u8(&cached_output("load", "images")).expect("images");
    let good = dir.path().join("good.png");
    write_png(&pixels, 0, &good);
    let bad = dir.path().join("broken.png");
    fs::write(&bad, b"\x89PNG but not really").expect("bad file");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("empty folder");
    fs::write(empty.join("readme.txt"), "no images here").expect("readme");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();

    // (arguments, the error's start, exit code: 3 a failure while running, 2 a usage error)
    let cases: [(Vec<String>, String, i32); 5] = [
        (
            vec!["latest".into(), s(&good), s(&bad)],
            format!("error: cannot decode image {}: ", bad.display()),
            FAILURE,
        ),
        (
            vec!["latest".into(), s(&dir.path().join("missing.jpg"))],
            format!(
                "error: cannot read image file {}: ",
                dir.path().join("missing.jpg").display()
            ),
            FAILURE,
        ),
        (
            vec!["latest".into(), s(&empty)],
            format!(
                "error: the folder {} holds no .png, .jpg or .jpeg images",
                empty.display()
            ),
            USAGE,
        ),
        (
            vec!["no-such-run".into(), s(&good)],
            "error: no run matches `no-such-run`".into(),
            USAGE,
        ),
        (
            vec![
                "latest".into(),
                s(&good),
                "--csv".into(),
                s(&dir.path().join("no/such/dir.csv")),
            ],
            format!(
                "error: cannot write {}: ",
                dir.path().join("no/such/dir.csv").display()
            ),
            FAILURE,
        ),
    ];
    for (args, want, exit) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (stdout, stderr, code) = predict(&args);
        assert_eq!(code, Some(exit), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&want), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        // All or nothing: no partial predictions before the error.
        assert_eq!(stdout, "", "{args:?}");
    }
    // No image at all is a usage error.
    let out = pipeline(t.store.path(), &["predict", "latest"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", text(&out));
}

#[test]
fn a_run_without_a_trained_model_says_so() {
    let p = Project::new();
    p.write(
        "shell.toml",
        r#"
name = "shell"
seed = 1

[stages.a]
kind = "shell"
command = "echo hi > out.txt"
outputs = ["out.txt"]
"#,
    );
    p.ok(&["run", "--allow-shell", "shell.toml", "--name", "shelly"]);
    let image = p.path().join("x.png");
    image::RgbImage::new(8, 8).save(&image).expect("png");
    let id = p.latest()["id"].as_str().expect("id").to_string();
    let err = p.fails(&["predict", "shelly", image.to_str().expect("utf-8 path")]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: run {id} has no trained checkpoint (no `train` stage published model.safetensors)"
        )
    );
}

/// Real JPEG and PNG files of every size, resized from the original files by `predict`
/// itself: the decode, orientation and resize match the load stage's, not only the model.
#[test]
fn real_xrays_get_the_evaluate_stages_probabilities() {
    let Some(data) = shared_data() else { return };
    let store = tempfile::tempdir().expect("tempdir");
    let data_root = data.to_str().expect("utf-8 path");
    // The seed recipe at 32 x 32, as tests/experiments.rs runs it.
    let out = pipeline(
        store.path(),
        &[
            &["run", "experiments/model1.toml", "--data-root", data_root][..],
            &common::MODEL1_AT_32,
            &["--name", "real"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let runs = store.path().join("runs");
    let run_dir = fs::read_dir(&runs)
        .expect("runs")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    let evaluated = run_dir.join("predictions.csv");
    let names = csv_column(&evaluated, "image");
    let want_p = csv_column(&evaluated, "probability");
    let want_label = csv_column(&evaluated, "predicted_label");
    assert_eq!(names.len(), 55);

    let csv = store.path().join("real.csv");
    let files: Vec<String> = names
        .iter()
        .map(|n| data.join(n).display().to_string())
        .collect();
    let mut args = vec![
        "predict",
        "real",
        "--csv",
        csv.to_str().expect("utf-8 path"),
    ];
    args.extend(files.iter().map(String::as_str));
    let out = pipeline(store.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(csv_column(&csv, "image"), files);
    let got_p = csv_column(&csv, "probability");
    for (i, name) in names.iter().enumerate() {
        let (got, want): (f64, f64) = (
            got_p[i].parse().expect("probability"),
            want_p[i].parse().expect("probability"),
        );
        assert!((got - want).abs() <= 1e-6, "{name}: {got} vs {want}");
    }
    assert_eq!(csv_column(&csv, "label"), want_label);
}

#[test]
fn latest_after_a_failed_run_says_which_run_it_used_and_where_the_failed_one_is() {
    let p = Project::trusting_shell();
    p.write(
        "shell.toml",
        "name = \"shell\"\nseed = 1\n[stages.a]\nkind = \"shell\"\ncommand = \"echo hi > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    p.ok(&["run", "shell.toml", "--name", "good"]);
    let good = p.latest()["id"].as_str().expect("id").to_string();
    p.fails(&[
        "run",
        "shell.toml",
        "--set",
        "a.command=exit 3",
        "--name",
        "bad",
    ]);
    let bad = p.latest()["id"].as_str().expect("id").to_string();
    assert_ne!(good, bad);
    let image = p.path().join("x.png");
    image::RgbImage::new(8, 8).save(&image).expect("png");
    // The good run has no model, so predict fails after it has said which run it took.
    let err = p.fails(&["predict", "latest", image.to_str().expect("utf-8 path")]);
    let record = p.runs_dir().join(&bad).join("run.toml");
    let note = err.lines().next().expect("a line");
    assert!(
        note.contains(&good)
            && note.contains(&bad)
            && note.contains("failed")
            && note.contains(&record.display().to_string()),
        "{err}"
    );
    // A run named by id says nothing more.
    let err = p.fails(&["predict", &good, image.to_str().expect("utf-8 path")]);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
#[cfg(unix)]
fn skip_lists_a_folders_fifo_device_link_and_dangling_link_with_their_reasons() {
    let (_, pixels) = stages::arrays::read_u8(&cached_output("load", "images")).expect("images");
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("xrays");
    fs::create_dir(&folder).expect("folder");
    write_png(&pixels, 0, &folder.join("a.png"));
    let fifo = folder.join("fifo.png");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let zero = folder.join("zero.png");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("link to /dev/zero");
    let dangling = folder.join("dangling.png");
    std::os::unix::fs::symlink(dir.path().join("gone.png"), &dangling).expect("dangling link");

    let csv = dir.path().join("predictions.csv");
    let (stdout, stderr, code) = predict(&[
        "latest",
        folder.to_str().expect("utf-8 path"),
        "--on-bad-image",
        "skip",
        "--csv",
        csv.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = parse_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0].0, folder.join("a.png").display().to_string());
    let listed: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("skipped "))
        .collect();
    assert_eq!(
        listed,
        [
            "skipped 3 of 4 images that could not be read:".to_string(),
            format!(
                "  cannot read image file {}: No such file or directory (os error 2)",
                dangling.display()
            ),
            format!(
                "  cannot read image {}: it is a FIFO, not a regular file",
                fifo.display()
            ),
            format!(
                "  cannot read image {}: it is a character device, not a regular file",
                zero.display()
            ),
        ],
        "{stderr}"
    );
    assert_eq!(
        csv_column(&csv, "label"),
        [lines[0].2.as_str(), "skipped", "skipped", "skipped"]
    );
}
