//! End-to-end tests of `report.html` through the built binary, with `shell` stages publishing a
//! tiny PNG, an SVG and a CSV: what the report embeds, links and escapes, the failed run's
//! report, `pipeline show` and `--open`, and the report as a real browser renders it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use common::Project;

/// A valid 4 x 4 RGB PNG (a colour gradient), small enough to read here.
const TINY_PNG: [u8; 98] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09,
    0x29, 0x00, 0x00, 0x00, 0x29, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x0d, 0xc7, 0x31, 0x01, 0x00,
    0x00, 0x0c, 0xc2, 0x30, 0x84, 0x21, 0x0c, 0x61, 0x15, 0x51, 0x59, 0x5b, 0xbe, 0x24, 0xb1, 0x71,
    0x91, 0x98, 0xd4, 0xd6, 0x55, 0xfa, 0x99, 0x9d, 0x9b, 0xec, 0x83, 0xc5, 0x21, 0x78, 0x17, 0xf2,
    0x17, 0xc1, 0x59, 0xa8, 0x0b, 0x3a, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
    0x60, 0x82,
];

/// Kept in the data root rather than in a command: its namespace URL would otherwise show in
/// the report's parameters, and the report must hold no `http://` at all.
const LINE_SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 20" width="400" height="200"><polyline points="0,20 20,5 40,10" fill="none" stroke="red"/></svg>"#;

/// `draw` publishes plot.png, plot.svg (same stem: not embedded) and loss.svg (embedded);
/// `table` a CSV and a text file, and carries HTML in its command.
const EXPERIMENT: &str = r#"
name = "tiny-report"
description = "a <b>tiny</b> report & its figures"
seed = 5

[stages.draw]
kind = "shell"
data = ["fig"]
command = "cp $PIPELINE_DATA_ROOT/fig/tiny.png plot.png; cp $PIPELINE_DATA_ROOT/fig/line.svg plot.svg; cp $PIPELINE_DATA_ROOT/fig/line.svg loss.svg"
outputs = ["plot.png", "plot.svg", "loss.svg"]

[stages.table]
kind = "shell"
inputs = { plot = "draw.plot.png" }
command = "printf 'epoch,loss\\n1,0.5\\n2,0.25\\n' > metrics.csv; echo '<i>note</i>' > note.txt"
outputs = ["metrics.csv", "note.txt"]
"#;

fn project() -> Project {
    let p = Project::new();
    let fig = p.path().join("data/fig");
    fs::create_dir_all(&fig).expect("mkdir");
    fs::write(fig.join("tiny.png"), TINY_PNG).expect("png");
    fs::write(fig.join("line.svg"), LINE_SVG).expect("svg");
    p.write("exp.toml", EXPERIMENT);
    p
}

fn latest_dir(p: &Project) -> PathBuf {
    let record = p.latest();
    p.runs_dir().join(record["id"].as_str().expect("id"))
}

fn report_of(p: &Project) -> String {
    fs::read_to_string(latest_dir(p).join("report.html")).expect("report.html written")
}

/// The payloads of every `data:<mime>;base64,` URI in the text, decoded.
fn data_uris(html: &str, mime: &str) -> Vec<Vec<u8>> {
    let prefix = format!("data:{mime};base64,");
    html.match_indices(&prefix)
        .map(|(at, _)| {
            let rest = &html[at + prefix.len()..];
            let end = rest.find('"').expect("URI ends at its quote");
            base64::engine::general_purpose::STANDARD
                .decode(&rest[..end])
                .expect("valid base64")
        })
        .collect()
}

fn assert_no_network(html: &str) {
    for forbidden in ["http://", "https://", "<script", "<link", "@import"] {
        assert!(
            !html.contains(forbidden),
            "report refers to `{forbidden}`:\n{html}"
        );
    }
}

#[test]
fn a_run_writes_a_self_contained_report() {
    let p = project();
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let dir = latest_dir(&p);
    let html = report_of(&p);
    let id = p.latest()["id"].as_str().expect("id").to_string();

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains(&format!("<title>tiny-report · run {id}</title>")),
        "{html}"
    );
    assert!(html.contains("<strong>draw</strong>"), "{html}");
    assert!(html.contains("<strong>table</strong>"), "{html}");
    assert_eq!(
        html.matches("<span class=\"badge miss\">miss</span>")
            .count(),
        2
    );

    // The PNG is embedded byte for byte; of the SVGs only the one without a PNG twin.
    assert_eq!(data_uris(&html, "image/png"), [TINY_PNG.to_vec()]);
    assert_eq!(data_uris(&html, "image/svg+xml"), [LINE_SVG.as_bytes()]);
    assert!(html.contains("<figcaption>plot</figcaption>"));
    assert!(html.contains("<figcaption>loss</figcaption>"));

    // Other files are linked relative to the report, and the links lead to them.
    for file in ["metrics.csv", "note.txt", "plot.svg", "run.toml"] {
        assert!(
            html.contains(&format!("<a href=\"./{file}\">{file}</a>")),
            "{file} linked:\n{html}"
        );
        assert!(dir.join(file).is_file(), "{file} next to the report");
    }

    // Text from the experiment is escaped, never interpreted.
    assert!(html.contains("a &lt;b&gt;tiny&lt;/b&gt; report &amp; its figures"));
    assert!(!html.contains("<b>tiny"));
    assert!(html.contains("echo &#39;&lt;i&gt;note&lt;/i&gt;&#39; &gt; note.txt"));
    assert!(!html.contains("<i>note"));

    // The run's circumstances.
    assert!(html.contains(&format!("<dt>Run id</dt><dd><code>{id}</code></dd>")));
    assert!(html.contains(&format!(
        "<dt>Tool version</dt><dd>{}</dd>",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(html.contains("<dt>Host CPU</dt>"));
    assert!(html.contains("<dt>Threads</dt>"));
    assert!(html.contains("<dt>Seed</dt><dd>5</dd>"));
    assert!(!html.contains("id=\"error\""));
    assert_no_network(&html);
    let leftovers: Vec<String> = fs::read_dir(&dir)
        .expect("run dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // A second run reuses both stages and says so.
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let again = report_of(&p);
    assert_eq!(
        again
            .matches("<span class=\"badge hit\">hit</span>")
            .count(),
        2
    );
    assert_eq!(data_uris(&again, "image/png"), [TINY_PNG.to_vec()]);
}

#[test]
fn a_failed_run_reports_its_error_first() {
    let p = project();
    let failing = EXPERIMENT.replace(
        "echo '<i>note</i>' > note.txt",
        "echo 'disk <on> fire & smoke' >&2; exit 3",
    );
    p.write("exp.toml", &failing);
    p.fails(&["run", "--allow-shell", "exp.toml"]);
    let html = report_of(&p);
    assert!(
        html.contains("<span class=\"badge failed\">failed</span>"),
        "{html}"
    );
    let error = html
        .find("exited with status 3: disk &lt;on&gt; fire &amp; smoke")
        .expect("the error, escaped");
    let heading = html.find("<h2>Run failed</h2>").expect("error section");
    let stages = html.find("<h2>Stages</h2>").expect("stages");
    assert!(heading < error && error < stages, "the error comes first");
    assert!(html.contains("stage `table` failed"));
    // The stage that finished is there with its figure; the failed one published nothing.
    assert!(html.contains("<strong>draw</strong>"));
    assert!(!html.contains("<strong>table</strong>"));
    assert_eq!(data_uris(&html, "image/png"), [TINY_PNG.to_vec()]);
    assert_no_network(&html);
}

#[test]
fn show_ends_with_the_report_path_and_writes_a_missing_one() {
    let p = project();
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let report = latest_dir(&p).join("report.html");
    let expected = format!("report: {}", report.display());
    let out = p.pipeline(&["show", "latest"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some(expected.as_str()), "{stdout}");

    // A run killed before its end has no report: `show` writes one.
    fs::remove_file(&report).expect("remove");
    let out = p.ok(&["show", "latest"]);
    assert!(out.ends_with(&format!("{expected}\n")), "{out}");
    assert!(fs::read_to_string(&report)
        .expect("rewritten")
        .contains("<strong>table</strong>"));
}

/// A directory holding fake `xdg-open` and `open` commands running `body`.
fn fake_openers(p: &Project, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = p.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    for name in ["xdg-open", "open"] {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

#[test]
fn show_open_hands_the_report_to_the_opener() {
    let p = project();
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let report = latest_dir(&p).join("report.html");
    let opened = p.path().join("opened.txt");
    let bin = fake_openers(&p, &format!("echo \"$1\" > '{}'", opened.display()));
    let out = p
        .command(&["show", "latest", "--open"])
        .env("PATH", &bin)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&opened).expect("the opener ran"),
        format!("{}\n", report.display())
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with(&format!("report: {}\n", report.display())));
}

#[test]
fn show_open_without_a_working_opener_only_warns() {
    let p = project();
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let report = latest_dir(&p).join("report.html");
    let last_line = format!("report: {}", report.display());

    let empty = p.path().join("empty-bin");
    fs::create_dir_all(&empty).expect("mkdir");
    let out = p
        .command(&["show", "latest", "--open"])
        .env("PATH", &empty)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: cannot start `"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some(last_line.as_str()));

    let bin = fake_openers(&p, "exit 4");
    let out = p
        .command(&["show", "latest", "--open"])
        .env("PATH", &bin)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("could not open the report"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some(last_line.as_str()));
}

/// Chromium, at /usr/bin/chromium or on PATH.
fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// Runs headless Chromium on `page` with `args`, with no network, extensions or profile of
/// the user's; returns stdout. Fails the test if it hangs or fails.
fn headless(chromium: &Path, page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    while child.try_wait().expect("chromium status").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_browser_renders_the_report() {
    let Some(chromium) = chromium() else {
        common::skip("chromium not installed (apt-get install chromium)");
        return;
    };
    let p = project();
    p.ok(&["run", "--allow-shell", "exp.toml"]);
    let id = p.latest()["id"].as_str().expect("id").to_string();
    let report = latest_dir(&p).join("report.html");

    // The DOM after parsing: the browser read the title and both figures as images.
    let dom = headless(&chromium, &report, &["--dump-dom"]);
    assert!(
        dom.contains(&format!("<title>tiny-report · run {id}</title>")),
        "{dom}"
    );
    assert_eq!(
        dom.matches("<img src=\"data:image/png;base64,").count(),
        1,
        "{dom}"
    );
    assert_eq!(
        dom.matches("<img src=\"data:image/svg+xml;base64,").count(),
        1,
        "{dom}"
    );
    assert_eq!(data_uris(&dom, "image/png"), [TINY_PNG.to_vec()]);
    assert!(dom.contains("a &lt;b&gt;tiny&lt;/b&gt; report &amp; its figures"));

    // And it draws: a screenshot of the window's size comes out.
    let shot = p.path().join("shot.png");
    headless(
        &chromium,
        &report,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,1400",
        ],
    );
    let png = fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), (1000, 1400));
}

/// Stages added to the quickstart: an external set (synthetic, another seed, 7 NORMAL and 6
/// COVID images) evaluated by the trained model, as model1.toml does with real X-rays.
const EXTERNAL_SET: &str = r#"
[stages.external_load]
kind = "load"
image_size = 32

[[stages.external_load.sources]]
type = "synthetic"
count = 13
seed = 8

[stages.external_normalize]
kind = "normalize"
inputs = { images = "external_load.images" }
mode = "scale"

[stages.external_features]
kind = "features"
inputs = { base = "model.base", images = "external_normalize.images" }

[stages.external]
kind = "evaluate"
inputs = { model = "train.model", features = "external_features.features", labels = "external_load.labels", index = "external_load.index" }
"#;

#[test]
fn an_external_set_s_confusion_matrix_and_roc_curve_sit_beside_the_test_split_s() {
    let quickstart =
        fs::read_to_string(common::repo().join("experiments/quickstart.toml")).expect("quickstart");
    // Smaller and shorter than the quickstart: the figures are the point here.
    let small = quickstart
        .replace("count_per_class = 120", "count_per_class = 30")
        .replace("epochs = 30", "epochs = 3");
    assert_ne!(
        small, quickstart,
        "the quickstart's sizes moved: update this test"
    );
    let p = Project::new();
    p.write("exp.toml", &format!("{small}{EXTERNAL_SET}"));
    p.ok(&["run", "exp.toml"]);
    let dir = latest_dir(&p);

    // Each evaluation's figures, PNG and SVG, in the run directory; the titles name the set.
    let titles = [
        ("confusion", "Confusion matrix: "),
        (
            "external-confusion",
            "Confusion matrix, external set: 6 COVID, 7 NORMAL",
        ),
        ("roc", "ROC curve on the test set"),
        ("external-roc", "ROC curve, external set: 6 COVID, 7 NORMAL"),
    ];
    for (stem, title) in titles {
        assert!(dir.join(format!("{stem}.png")).is_file(), "no {stem}.png");
        let svg = fs::read_to_string(dir.join(format!("{stem}.svg"))).expect("svg");
        assert!(svg.contains(title), "{stem}.svg has no title {title:?}");
    }
    let test_svg = fs::read_to_string(dir.join("confusion.svg")).expect("svg");
    assert!(test_svg.contains("test images correct"), "{test_svg}");

    // The report embeds every PNG byte for byte, each external figure beside its test-split
    // twin, then the plot stage's figures.
    let html = report_of(&p);
    let order = [
        "confusion",
        "external-confusion",
        "roc",
        "external-roc",
        "accuracy",
        "loss",
        "predictions",
    ];
    let expected: Vec<Vec<u8>> = order
        .iter()
        .map(|stem| fs::read(dir.join(format!("{stem}.png"))).expect("png"))
        .collect();
    assert!(
        data_uris(&html, "image/png") == expected,
        "report.html does not embed the figures in the order {order:?}"
    );
    for stem in order {
        assert!(
            html.contains(&format!("<figcaption>{stem}</figcaption>")),
            "no caption {stem}"
        );
    }
}
