//! End-to-end tests of hostile and broken inputs through the binary: decompression bombs,
//! truncated images, a stray quote in `metadata.csv`, symbolic links out of the data root,
//! an `image_size` no memory can hold, and `predict` on devices, FIFOs and huge files. Each
//! must end in one clear line naming the file at fault (exit 1), never an abort, a hang, a
//! silent half-image or a file read from outside the data root.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Project, FAILURE};

// ---- files made here ----

/// The CRC-32 of PNG chunks (ISO 3309, reflected polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

fn png_bytes(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png encodes");
    out.into_inner()
}

fn jpeg_bytes(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg encodes");
    out.into_inner()
}

/// A gradient with some structure, so that every part of a JPEG's scan carries data.
fn picture(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 5 + y) as u8, (y * 3) as u8, ((x ^ y) * 7) as u8])
    }))
}

/// A valid small PNG whose header is rewritten to claim `w x h` pixels (CRC fixed up): a few
/// hundred bytes that a decoder trusting the header would allocate `w * h * 3` bytes for.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = png_bytes(&picture(4, 4));
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A valid small JPEG whose frame header (SOF0) is rewritten to claim `w x h` pixels.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = jpeg_bytes(&picture(16, 16));
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline frame header");
    // Marker (2), length (2), precision (1), then height and width.
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

// ---- experiments ----

/// A project whose data root holds `imgs/` (one good PNG) and a load-only experiment over it.
fn folder_project() -> Project {
    let p = Project::new();
    fs::create_dir_all(p.path().join("data/imgs")).expect("data");
    fs::write(
        p.path().join("data/imgs/good.png"),
        png_bytes(&picture(20, 12)),
    )
    .expect("png");
    p.write(
        "exp.toml",
        r#"name = "bad-input"
seed = 1
[stages.load]
kind = "load"
image_size = 8
classes = ["A"]
[[stages.load.sources]]
type = "folder"
path = "imgs"
label = "A"
"#,
    );
    p
}

/// `run exp.toml` with extra arguments; exit code and stderr.
fn run(p: &Project, extra: &[&str]) -> (Option<i32>, String) {
    let out = p.pipeline(&[&["run", "exp.toml"], extra].concat());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The one `error:` line of a failed command, after checking there is exactly one.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{stderr}");
    lines[0].to_string()
}

/// The newest run's load stage notes (its report), as TOML.
fn load_notes(p: &Project) -> toml::Table {
    let record = p.latest();
    let stage = record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["kind"].as_str() == Some("load"))
        .expect("load stage")
        .clone();
    stage["notes"].as_table().expect("notes").clone()
}

fn skipped_paths(notes: &toml::Table) -> Vec<String> {
    notes["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["path"].as_str().expect("path").to_string())
        .collect()
}

// ---- load ----

#[test]
fn decompression_bombs_are_refused_by_their_header() {
    for (name, bytes) in [
        ("bomb.png", png_claiming(30_000, 30_000)),
        ("bomb.jpg", jpeg_claiming(30_000, 30_000)),
    ] {
        let p = folder_project();
        assert!(bytes.len() < 1000, "{name} is {} bytes", bytes.len());
        fs::write(p.path().join("data/imgs").join(name), &bytes).expect("bomb");
        let (code, stderr) = run(&p, &[]);
        assert_eq!(code, Some(FAILURE), "{stderr}");
        let line = error_line(&stderr);
        assert!(
            line.contains(name) && line.contains("30000 x 30000"),
            "{line}"
        );
        assert!(line.contains("decompression bomb"), "{line}");

        // Under on_bad_image = "skip" it is left out and listed with the reason.
        p.ok(&["run", "exp.toml", "--set", "load.on_bad_image=skip"]);
        let notes = load_notes(&p);
        assert_eq!(notes["images"].as_integer(), Some(1));
        assert_eq!(skipped_paths(&notes), [format!("imgs/{name}")]);
        let reason = notes["skipped"][0]["reason"].as_str().expect("reason");
        assert!(reason.contains("30000 x 30000"), "{reason}");
    }
}

#[test]
fn truncated_images_are_errors_unless_skipped_or_allowed() {
    let full_jpeg = jpeg_bytes(&picture(64, 48));
    let full_png = png_bytes(&picture(64, 48));
    for (name, bytes) in [
        ("half.jpg", &full_jpeg[..full_jpeg.len() / 2]),
        ("noend.jpg", &full_jpeg[..full_jpeg.len() - 2]),
        ("half.png", &full_png[..full_png.len() / 2]),
    ] {
        let p = folder_project();
        fs::write(p.path().join("data/imgs").join(name), bytes).expect("truncated");
        let (code, stderr) = run(&p, &[]);
        assert_eq!(code, Some(FAILURE), "{name}: {stderr}");
        let line = error_line(&stderr);
        assert!(line.contains(name), "{line}");
        if name.ends_with(".jpg") {
            assert!(line.contains("truncated"), "{line}");
            assert!(line.contains("allow_truncated_images"), "{line}");
        }

        p.ok(&["run", "exp.toml", "--set", "load.on_bad_image=skip"]);
        let notes = load_notes(&p);
        assert_eq!(skipped_paths(&notes), [format!("imgs/{name}")]);
        assert_eq!(notes["images"].as_integer(), Some(1));
    }

    // The explicit allowance loads a cut JPEG (the missing part gray, as the decoder fills it).
    let p = folder_project();
    fs::write(
        p.path().join("data/imgs/half.jpg"),
        &full_jpeg[..full_jpeg.len() / 2],
    )
    .expect("truncated");
    p.ok(&[
        "run",
        "exp.toml",
        "--set",
        "load.allow_truncated_images=true",
    ]);
    let notes = load_notes(&p);
    assert_eq!(notes["images"].as_integer(), Some(2));
    assert!(skipped_paths(&notes).is_empty());
}

/// A Cohen-style collection: `rows` after the header, and one PNG per named file.
fn cohen_project(csv: &str, files: &[&str]) -> Project {
    let p = Project::new();
    let dir = p.path().join("data/coll");
    fs::create_dir_all(dir.join("images")).expect("images");
    fs::write(dir.join("metadata.csv"), csv).expect("csv");
    for (i, f) in files.iter().enumerate() {
        let img = picture(10 + i as u32, 10);
        fs::write(dir.join("images").join(f), png_bytes(&img)).expect("png");
    }
    p.write(
        "exp.toml",
        r#"name = "cohen"
seed = 1
[stages.load]
kind = "load"
image_size = 8
classes = ["COVID"]
[[stages.load.sources]]
type = "cohen"
path = "coll"
label = "COVID"
filters = { finding = "COVID-19" }
"#,
    );
    p
}

#[test]
fn a_stray_quote_in_metadata_csv_is_an_error_naming_file_and_line() {
    let files = ["a.png", "b.png", "c.png", "d.png"];
    let header = "patientid,finding,filename,notes\n";
    // Row 2's note opens a quote it never closes: the csv reader would swallow rows 3 and 4
    // into that one field and load two images instead of four.
    let stray = format!(
        "{header}1,COVID-19,a.png,fine\n2,COVID-19,b.png,\"opened here\n3,COVID-19,c.png,x\n4,COVID-19,d.png,y\n"
    );
    let p = cohen_project(&stray, &files);
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("metadata.csv") && line.contains("line 3"),
        "{line}"
    );

    // A stray quote that closes on a later row: the merged record has the wrong field count.
    let closes_later = format!(
        "{header}1,COVID-19,a.png,\"starts\n2,COVID-19,b.png,ends\",more\n3,COVID-19,c.png,z\n"
    );
    let p = cohen_project(&closes_later, &files);
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("metadata.csv") && line.contains("line 2"),
        "{line}"
    );

    // A note quoted over two lines is refused too: a row of metadata.csv is one line.
    let multiline = format!(
        "{header}1,COVID-19,a.png,\"two\nlines, with a comma\"\n2,COVID-19,b.png,x\n3,COVID-19,c.png,\n4,COVID-19,d.png,\"\"\n"
    );
    let p = cohen_project(&multiline, &files);
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    assert!(
        error_line(&stderr).contains("line 2: a quoted field opened here closes only on line 3"),
        "{stderr}"
    );

    // Quoted notes with a comma and an empty quoted note are not errors, and lose no row.
    let quoted = format!(
        "{header}1,COVID-19,a.png,\"one line, with a comma\"\n2,COVID-19,b.png,x\n3,COVID-19,c.png,\n4,COVID-19,d.png,\"\"\n"
    );
    let p = cohen_project(&quoted, &files);
    p.ok(&["run", "exp.toml"]);
    assert_eq!(load_notes(&p)["images"].as_integer(), Some(4));
}

#[cfg(unix)]
#[test]
fn symbolic_links_out_of_the_data_root_are_refused_unless_allowed() {
    use std::os::unix::fs::symlink;

    // A valid image outside the data root: followed, it would become training data.
    let make = || {
        let p = folder_project();
        let outside = p.path().join("outside");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("secret.png"), png_bytes(&picture(9, 9))).expect("png");
        (p, outside)
    };

    // A file link.
    let (p, outside) = make();
    let link = p.path().join("data/imgs/linked.png");
    symlink(outside.join("secret.png"), &link).expect("symlink");
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("linked.png") && line.contains("secret.png"),
        "{line}"
    );
    assert!(line.contains("allow_outside_data_root"), "{line}");
    p.ok(&[
        "run",
        "exp.toml",
        "--set",
        "load.allow_outside_data_root=true",
    ]);
    assert_eq!(load_notes(&p)["images"].as_integer(), Some(2));

    // A link to a file that is no image at all is refused before it is read: the message is
    // about the link, not about a failed decode.
    let (p, _) = make();
    symlink("/etc/passwd", p.path().join("data/imgs/passwd.png")).expect("symlink");
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("passwd.png") && line.contains("/etc/passwd"),
        "{line}"
    );
    assert!(!line.contains("decode"), "{line}");
    // Skipping bad images does not skip this: it is not a bad image but a refused path.
    let (code, _) = run(&p, &["--set", "load.on_bad_image=skip"]);
    assert_eq!(code, Some(FAILURE));

    // A folder link: the source folder itself leads out of the data root.
    let (p, outside) = make();
    symlink(&outside, p.path().join("data/elsewhere")).expect("symlink");
    let exp = fs::read_to_string(p.path().join("exp.toml")).expect("exp");
    p.write(
        "exp.toml",
        &exp.replace("path = \"imgs\"", "path = \"elsewhere\""),
    );
    let (code, stderr) = run(&p, &[]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("elsewhere") && line.contains("outside"),
        "{line}"
    );
    p.ok(&[
        "run",
        "exp.toml",
        "--set",
        "load.allow_outside_data_root=true",
    ]);
    assert_eq!(load_notes(&p)["images"].as_integer(), Some(1));

    // Links that stay inside the data root are fine.
    let (p, _) = make();
    fs::create_dir_all(p.path().join("data/real")).expect("real");
    fs::write(p.path().join("data/real/r.png"), png_bytes(&picture(7, 7))).expect("png");
    symlink(
        p.path().join("data/real/r.png"),
        p.path().join("data/imgs/r.png"),
    )
    .expect("link");
    p.ok(&["run", "exp.toml"]);
    assert_eq!(load_notes(&p)["images"].as_integer(), Some(2));
}

#[test]
fn an_image_size_no_memory_can_hold_is_an_error_not_an_abort() {
    let p = Project::new();
    // 5000 images of 16384 x 16384 x 3 bytes: 4 TB, more than any machine this runs on.
    p.write(
        "exp.toml",
        r#"name = "huge"
seed = 1
[stages.load]
kind = "load"
image_size = 32
[[stages.load.sources]]
type = "synthetic"
count = 5000
seed = 1
"#,
    );
    let (code, stderr) = run(&p, &["--set", "load.image_size=16384"]);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("16384") && line.contains("available"),
        "{line}"
    );
    // 5000 x 805 MB and one image per thread: about 4 TB, however many threads.
    assert!(line.contains(" TB of memory"), "{line}");
}

// ---- predict ----

/// A tiny trained run (synthetic, 32 x 32, one epoch) in a project of its own, made once for
/// this test binary; with `allow_truncated_images = true` in its load stage when `allow`.
fn trained(allow: bool) -> &'static Project {
    static STRICT: OnceLock<Project> = OnceLock::new();
    static ALLOWING: OnceLock<Project> = OnceLock::new();
    let cell = if allow { &ALLOWING } else { &STRICT };
    cell.get_or_init(|| {
        let p = Project::new();
        let quickstart =
            fs::read_to_string(common::repo().join("experiments/quickstart.toml")).expect("qs");
        let tiny = quickstart.replace("count_per_class = 120", "count_per_class = 10");
        assert_ne!(tiny, quickstart, "the quickstart's image count was found");
        p.write("tiny.toml", &tiny);
        let mut args = vec!["run", "tiny.toml", "--set", "train.epochs=1"];
        if allow {
            args.extend(["--set", "load.allow_truncated_images=true"]);
        }
        p.ok(&args);
        p
    })
}

/// `predict latest FILE`, killed (and failed) if it takes over a minute: a FIFO or
/// `/dev/zero` must be refused at once, not waited on or read forever.
fn predict(p: &Project, file: &Path) -> (Option<i32>, String) {
    let mut child = p
        .command(&["predict", "latest"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("predict starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kill");
            let _ = child.wait();
            panic!("predict {} did not finish within 60 s", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn predict_refuses_devices_fifos_huge_files_bombs_and_truncated_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = jpeg_bytes(&picture(64, 48));
    let half = dir.path().join("half.jpg");
    fs::write(&half, &full[..full.len() / 2]).expect("half");
    let bomb = dir.path().join("bomb.png");
    fs::write(&bomb, png_claiming(30_000, 30_000)).expect("bomb");
    let jbomb = dir.path().join("bomb.jpg");
    fs::write(&jbomb, jpeg_claiming(30_000, 30_000)).expect("bomb");
    // A sparse file: 300 MB by its length, nothing on disk.
    let huge = dir.path().join("huge.png");
    fs::File::create(&huge)
        .and_then(|f| f.set_len(300 << 20))
        .expect("huge");
    let fifo = dir.path().join("pipe.png");
    let made = Command::new("mkfifo").arg(&fifo).status();
    let mut cases = vec![
        (Path::new("/dev/zero").to_path_buf(), "not a regular file"),
        (huge, "over the limit"),
        (bomb, "30000 x 30000"),
        (jbomb, "30000 x 30000"),
        (half, "truncated"),
    ];
    if made.is_ok_and(|s| s.success()) {
        cases.push((fifo, "not a regular file"));
    } else {
        eprintln!("mkfifo unavailable: the FIFO case is not tried");
    }
    for (file, expect) in cases {
        let (code, stderr) = predict(trained(false), &file);
        assert_eq!(code, Some(FAILURE), "{}: {stderr}", file.display());
        let line = error_line(&stderr);
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(line.contains(&name) && line.contains(expect), "{line}");
    }
}

#[test]
fn predict_accepts_a_truncated_image_when_the_run_allowed_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = jpeg_bytes(&picture(64, 48));
    let half = dir.path().join("half.jpg");
    fs::write(&half, &full[..full.len() / 2]).expect("half");
    // The strict run refuses it (as above); the run whose load stage allowed truncated
    // images reads it the same way in predict.
    let (code, stderr) = predict(trained(false), &half);
    assert_eq!(code, Some(FAILURE), "{stderr}");
    let (code, stderr) = predict(trained(true), &half);
    assert_eq!(code, Some(0), "{stderr}");
}
