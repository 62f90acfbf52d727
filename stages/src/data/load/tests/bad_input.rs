//! Hostile and broken input: decompression bombs, files cut short, devices and FIFOs, a
//! stray quote in `metadata.csv`, symbolic links out of the data root, and an `image_size`
//! that no memory holds. Each case is refused with an error naming the file (or skipped and
//! listed where `on_bad_image = "skip"` applies), and the real data passes every check.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ndarray::Array4;

use super::{folder_config, read_csv, real_data, write_cohen, write_png_gray};
use crate::data::decode::decode_resize;
use crate::data::load::*;
use crate::data::{
    load_image, load_image_with, read_image_file, DecodeError, DecodeOptions, MAX_FILE_BYTES,
};
use crate::progress::NoProgress;

const STRICT: DecodeOptions = DecodeOptions {
    allow_truncated: false,
};
const LENIENT: DecodeOptions = DecodeOptions {
    allow_truncated: true,
};

// ---- files made here ----

/// PNG's chunk CRC (CRC-32, reflected polynomial 0xEDB88320).
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

fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// An RGB picture with detail everywhere, so every part of a JPEG scan carries data.
fn picture(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 5 + y) as u8, (y * 3) as u8, ((x ^ y) * 7) as u8])
    }))
}

/// `png` (a valid file) with its header rewritten to claim `w x h` pixels, CRC fixed.
fn png_claiming(mut png: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A valid JPEG with its baseline frame header rewritten to claim `w x h` pixels.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = encode(&picture(16, 16), image::ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

// ---- decompression bombs ----

#[test]
fn decompression_bombs_are_refused_by_their_header_before_decoding() {
    let path = Path::new("bomb");
    let rgb_png = encode(&picture(4, 4), image::ImageFormat::Png);
    let gray_png = encode(
        &image::DynamicImage::ImageLuma8(image::GrayImage::new(4, 4)),
        image::ImageFormat::Png,
    );
    let bombs = [
        png_claiming(rgb_png.clone(), 30_000, 30_000),
        png_claiming(gray_png, 30_000, 30_000),
        png_claiming(rgb_png.clone(), 1_000_000, 200),
        jpeg_claiming(30_000, 30_000),
        jpeg_claiming(65_535, 65_535),
        jpeg_claiming(65_535, 2_731),
    ];
    for bytes in &bombs {
        assert!(bytes.len() < 1000);
        let err = decode_resize(bytes, 8, path, STRICT).unwrap_err();
        let DecodeError::TooManyPixels { width, height, .. } = err else {
            panic!("{err}")
        };
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{width} x {height}")) && msg.contains("decompression bomb"),
            "{msg}"
        );
        assert!(msg.starts_with("image bomb claims"), "{msg}");
    }
    // Under the pixel limit but over the memory limit: 16-bit RGBA takes 8 bytes a pixel.
    let rgba16 = image::DynamicImage::ImageRgba16(image::ImageBuffer::new(4, 4));
    let png = png_claiming(encode(&rgba16, image::ImageFormat::Png), 12_000, 12_000);
    let err = decode_resize(&png, 8, path, STRICT).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooManyBytes { width: 12_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("1.2 GB"), "{err}");
    // A true image of moderate size passes the same checks and decodes.
    let ok = png_claiming(rgb_png, 4, 4);
    assert_eq!(decode_resize(&ok, 2, path, STRICT).unwrap().width, 4);
}

#[test]
fn a_bomb_in_a_folder_is_an_error_or_a_listed_skip() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cls");
    std::fs::create_dir(&dir).unwrap();
    write_png_gray(&dir.join("a.png"), 20, 10, 1);
    std::fs::write(dir.join("b.jpg"), jpeg_claiming(30_000, 30_000)).unwrap();
    write_png_gray(&dir.join("c.png"), 12, 10, 2);
    let out = root.path().join("out");
    let err = load(
        &folder_config("cls", "error", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("b.jpg") && msg.contains("30000 x 30000"),
        "{msg}"
    );

    let report = load(
        &folder_config("cls", "skip", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.images, 2);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].path, "cls/b.jpg");
    assert!(
        report.skipped[0]
            .reason
            .starts_with("possible decompression bomb: claims 30000 x 30000 pixels"),
        "{:?}",
        report.skipped[0]
    );
    // The rows after the skipped one moved up: images.npy holds exactly a and c.
    let images: Array4<u8> = ndarray_npy::read_npy(out.join("images.npy")).unwrap();
    assert_eq!(images.dim(), (2, 8, 8, 3));
    for (row, name) in ["a.png", "c.png"].iter().enumerate() {
        let want = load_image(&dir.join(name), 8).unwrap();
        assert_eq!(images.index_axis(ndarray::Axis(0), row), want, "{name}");
    }
    let index = read_csv(&out.join("index.csv"));
    assert_eq!(index[1][1], "cls/c.png");
}

// ---- truncated files ----

#[test]
fn a_jpeg_cut_anywhere_is_an_error_unless_allowed() {
    let full = encode(&picture(48, 40), image::ImageFormat::Jpeg);
    let path = Path::new("cut.jpg");
    let whole = decode_resize(&full, 8, path, STRICT).unwrap();
    let sos = full.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    let (mut refused, mut truncated, mut lenient_ok) = (0, 0, 0);
    for len in 0..full.len() {
        let cut = &full[..len];
        match decode_resize(cut, 8, path, STRICT) {
            Ok(_) => panic!("a JPEG cut to {len} of {} bytes was loaded", full.len()),
            Err(DecodeError::Truncated { detail, .. }) => {
                assert!(detail.contains(&format!("after {len} bytes")), "{detail}");
                truncated += 1;
            }
            // Too short to be recognised as a JPEG at all (its signature is 3 bytes).
            Err(e) => assert!(len < 3, "cut to {len}: {e}"),
        }
        refused += 1;
        // Cut after the scan started, the decoder fills the rest in and the allowance loads it.
        if len > sos + 14 && decode_resize(cut, 8, path, LENIENT).is_ok() {
            lenient_ok += 1;
        }
    }
    assert_eq!(refused, full.len());
    // Every other cut is reported as truncated, not as some failure of the decoder to parse
    // what is left.
    assert_eq!(truncated, full.len() - 3);
    assert!(lenient_ok > (full.len() - sos) / 2, "{lenient_ok}");
    // The allowance changes nothing for a complete file.
    assert_eq!(decode_resize(&full, 8, path, LENIENT).unwrap(), whole);
    eprintln!(
        "JPEG cuts: {refused} of {} refused, {truncated} as truncated",
        full.len()
    );
}

#[test]
fn a_png_cut_anywhere_is_an_error() {
    let full = encode(&picture(48, 40), image::ImageFormat::Png);
    let path = Path::new("cut.png");
    // The PNG decoder needs every chunk up to the end marker (IEND, the last 12 bytes), and
    // reads that marker's type; Pillow stops once the image data is complete. The allowance
    // does not apply to PNGs.
    let iend_type = full.len() - 4;
    for len in 0..iend_type {
        for options in [STRICT, LENIENT] {
            assert!(
                decode_resize(&full[..len], 8, path, options).is_err(),
                "a PNG cut to {len} of {} bytes was loaded",
                full.len()
            );
        }
    }
    assert!(decode_resize(&full, 8, path, STRICT).is_ok());
}

#[test]
fn truncated_images_in_a_folder_are_errors_listed_skips_or_allowed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cls");
    std::fs::create_dir(&dir).unwrap();
    // Large enough for half the file to end in the scan data, past the tables.
    let full = encode(&picture(160, 120), image::ImageFormat::Jpeg);
    std::fs::write(dir.join("a.jpg"), &full).unwrap();
    std::fs::write(dir.join("b.jpg"), &full[..full.len() / 2]).unwrap();
    let out = root.path().join("out");
    let err = load(
        &folder_config("cls", "error", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, LoadError::Decode(DecodeError::Truncated { path, .. }) if path.ends_with("b.jpg")),
        "{err}"
    );
    let report = load(
        &folder_config("cls", "skip", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.images, 1);
    assert_eq!(report.skipped[0].path, "cls/b.jpg");
    assert!(report.skipped[0]
        .reason
        .starts_with("truncated: the JPEG data ends after"));

    let mut allow = folder_config("cls", "error", 8);
    allow.allow_truncated_images = true;
    let report = load(&allow, root.path(), &out, &NoProgress).unwrap();
    assert_eq!(report.images, 2);
    let images: Array4<u8> = ndarray_npy::read_npy(out.join("images.npy")).unwrap();
    let half = load_image_with(&dir.join("b.jpg"), 8, LENIENT).unwrap();
    assert_eq!(images.index_axis(ndarray::Axis(0), 1), half);
    // The parameter reads from TOML, default off.
    let cfg: LoadConfig = toml::from_str(
        "image_size = 8\nallow_truncated_images = true\n[[sources]]\ntype = \"synthetic\"\ncount = 2\nseed = 1\n",
    )
    .unwrap();
    assert!(cfg.allow_truncated_images && !cfg.allow_outside_data_root);
}

/// Every real image (the 275 of the seed recipe and the 184 external ones) is complete by
/// this module's rule and decodes under the strict default, while a copy of every real JPEG
/// cut in half is refused: no false positive, no false negative, on the data that matters.
#[test]
fn real_images_are_all_complete_and_all_their_halves_are_not() {
    let Some(root) = real_data() else { return };
    let mut files = Vec::new();
    for manifest in ["MANIFEST.tsv", "external/MANIFEST.tsv"] {
        let Ok(text) = std::fs::read_to_string(root.join(manifest)) else {
            eprintln!("skipping {manifest}: absent");
            continue;
        };
        files.extend(
            text.lines()
                .skip(1)
                .map(|l| root.join(l.split('\t').next().unwrap())),
        );
    }
    assert!(files.len() >= 275, "{}", files.len());
    let (mut jpegs, mut halves_refused) = (0, 0);
    for path in &files {
        let bytes = read_image_file(path).unwrap();
        if let Err(e) = decode_resize(&bytes, 16, path, STRICT) {
            panic!("a real image is refused: {e}");
        }
        if bytes.starts_with(&[0xFF, 0xD8]) {
            jpegs += 1;
            let half = &bytes[..bytes.len() / 2];
            if let Err(DecodeError::Truncated { .. }) = decode_resize(half, 16, path, STRICT) {
                halves_refused += 1;
            }
        }
    }
    assert_eq!(halves_refused, jpegs);
    eprintln!(
        "{} real images accepted; {jpegs} of them JPEG, all {halves_refused} halves refused",
        files.len()
    );
}

// ---- not files, huge files ----

#[test]
fn devices_fifos_folders_and_huge_files_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let not_file = |path: &Path| match read_image_file(path) {
        Err(DecodeError::NotAFile { kind, .. }) => kind,
        other => panic!("{}: {other:?}", path.display()),
    };
    assert_eq!(not_file(dir.path()), "a folder");
    if Path::new("/dev/zero").exists() {
        assert_eq!(not_file(Path::new("/dev/zero")), "a character device");
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let fifo = dir.path().join("pipe.png");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO for reading would wait for a writer: this returns at once.
        assert_eq!(not_file(&fifo), "a FIFO");
        let err = load_image(&fifo, 8).unwrap_err();
        assert!(err
            .to_string()
            .contains("pipe.png: it is a FIFO, not a regular file"));
    }
    // A sparse file one byte over the cap: refused by its length, nothing read.
    let huge = dir.path().join("huge.png");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    let err = read_image_file(&huge).unwrap_err();
    assert!(matches!(err, DecodeError::FileTooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is 256.0 MB, over the limit of 256.0 MB"),
        "{err}"
    );
    let missing = read_image_file(&dir.path().join("gone.png")).unwrap_err();
    assert!(missing.to_string().contains("gone.png"), "{missing}");
    std::fs::write(dir.path().join("small"), b"abc").unwrap();
    assert_eq!(read_image_file(&dir.path().join("small")).unwrap(), b"abc");
}

// ---- stray quotes in metadata.csv ----

/// The error `input_files` and `load` both give for the Cohen collection under `root` (whose
/// `coh/metadata.csv` was written as `text`), each checked to name the file and `line`.
fn metadata_error(root: &Path, text: &str, line: u64) -> String {
    let csv = root.join("coh/metadata.csv");
    std::fs::write(&csv, text).unwrap();
    let cfg = super::cohen_config("skip");
    let errors = [
        input_files(&cfg, root).unwrap_err(),
        load(&cfg, root, &root.join("out"), &NoProgress).unwrap_err(),
    ];
    for err in &errors {
        assert!(
            matches!(err, LoadError::StrayQuote { path, line: l, .. } if path == &csv && *l == line),
            "{err}"
        );
    }
    let msg = errors[0].to_string();
    assert_eq!(msg, errors[1].to_string());
    let prefix = format!("{} line {line}: ", csv.display());
    msg.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{msg:?} does not start with {prefix:?}"))
        .to_owned()
}

const FOUR: [&str; 4] = ["p1.png", "p2.png", "p3.png", "p4.png"];

/// `write_cohen`'s collection under `root` with the four images [`FOUR`], its CSV rows naming
/// them as `names`.
fn four_images(root: &Path, names: [&str; 4]) {
    write_cohen(root, &names.map(|name| ("COVID-19", "PA", name)));
    for f in FOUR {
        write_png_gray(&root.join("coh/images").join(f), 6, 6, 1);
    }
}

/// A data root holding [`four_images`] with its plain CSV.
fn four_image_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    four_images(root.path(), FOUR);
    root
}

const HEADER: &str = "patientid,finding,view,modality,folder,filename,\n";

#[test]
fn an_unclosed_quote_mid_file_names_the_file_the_line_and_the_rows_it_swallows() {
    let root = tempfile::tempdir().unwrap();
    four_images(root.path(), ["p1.png", "\"p2.png", "p3.png", "p4.png"]);
    let text = std::fs::read_to_string(root.path().join("coh/metadata.csv")).unwrap();
    assert_eq!(
        metadata_error(root.path(), &text, 3),
        "a quoted field opened here is never closed (it would swallow 2 rows)"
    );
    // With the quote removed the four rows load.
    four_images(root.path(), FOUR);
    let cfg = super::cohen_config("skip");
    let report = load(&cfg, root.path(), &root.path().join("out"), &NoProgress).unwrap();
    assert_eq!(report.class_counts[1].count, 5); // four rows and one synthetic
}

/// Each shape the csv reader would read past silently: (what, CSV rows after the header, the
/// line named, the start of the reason).
const BAD_QUOTES: [(&str, &str, u64, &str); 3] = [
    // Every reader ends the last row at the end of the file, keeping p4 and dropping the note.
    (
        "an unclosed quote on the last row without a newline",
        "1,COVID-19,PA,X-ray,images,p1.png,\n1,COVID-19,PA,X-ray,images,p4.png,\"note",
        3,
        "a quoted field opened here is never closed (the file ends inside it)",
    ),
    // Read as p2.png by the csv crate, Python and pandas alike.
    (
        "text after a closing quote",
        "1,COVID-19,PA,X-ray,images,p1.png,\n1,COVID-19,PA,X-ray,images,\"p2\".png,\n",
        3,
        "a quoted field is followed by \".png\" after its closing quote, where a comma",
    ),
    (
        "a quoted field spanning lines",
        "1,COVID-19,PA,X-ray,images,p1.png,\"two\r\nlines\"\r\n1,COVID-19,PA,X-ray,images,p2.png,\r\n",
        2,
        "a quoted field opened here closes only on line 3 (it would swallow 1 row into one field; a row must be one line)",
    ),
];

#[test]
fn each_bad_quote_shape_is_one_error_naming_the_file_and_line() {
    let root = four_image_root();
    for (what, rows, line, why) in BAD_QUOTES {
        let error = metadata_error(root.path(), &format!("{HEADER}{rows}"), line);
        assert!(error.starts_with(why), "{what}: {error}");
    }
}

#[test]
fn quoted_fields_with_commas_and_doubled_quotes_load() {
    let root = four_image_root();
    let text = format!(
        "{HEADER}1,COVID-19,PA,X-ray,images,p1.png,\"ground glass, both lungs\"\n\
         1,\"COVID-19\",PA,X-ray,images,\"p2.png\",\"the \"\"crazy paving\"\" sign\"\n\
         1,COVID-19,PA,X-ray,images,p3.png,\"\"\n\
         1,COVID-19,PA,X-ray,images,p4.png,\"\""
    );
    std::fs::write(root.path().join("coh/metadata.csv"), text).unwrap();
    let cfg = super::cohen_config("skip");
    let out = root.path().join("out");
    let report = load(&cfg, root.path(), &out, &NoProgress).unwrap();
    assert_eq!(report.class_counts[1].count, 5); // four rows and one synthetic
    let files: Vec<String> = read_csv(&out.join("index.csv"))
        .into_iter()
        .map(|row| row[1].clone())
        .collect();
    assert_eq!(
        files[..4],
        [
            "coh/images/p1.png",
            "coh/images/p2.png",
            "coh/images/p3.png",
            "coh/images/p4.png"
        ]
    );
}

/// The real `metadata.csv` files pass the quote rule, and every row is read.
#[test]
fn real_metadata_files_have_no_stray_quote() {
    let Some(root) = real_data() else { return };
    for (csv, rows) in [
        ("covid-chestxray-dataset/metadata.csv", 175),
        ("external/covid-chestxray-dataset/metadata.csv", 79),
    ] {
        let path = root.join(csv);
        if !path.is_file() {
            crate::test_skip::skip(&format!("{} is absent", path.display()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        super::super::stray_quote::check_quotes(&bytes).unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(reader.records().map(Result::unwrap).count(), rows, "{csv}");
    }
}

// ---- symbolic links out of the data root ----

#[cfg(unix)]
mod links {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A project directory with `data/` (the root, holding `cls/` with one PNG) and
    /// `outside/` (one PNG and a Cohen-style collection) next to it.
    fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("data");
        let outside = top.path().join("outside");
        std::fs::create_dir_all(root.join("cls")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        write_png_gray(&root.join("cls/a.png"), 10, 10, 1);
        write_png_gray(&outside.join("secret.png"), 10, 10, 2);
        write_cohen(&outside, &[("COVID-19", "PA", "p1.png")]);
        write_png_gray(&outside.join("coh/images/p1.png"), 6, 6, 3);
        (top, root, outside)
    }

    fn outside_error(err: LoadError) -> (PathBuf, PathBuf) {
        match err {
            LoadError::OutsideDataRoot { link, target, .. } => (link, target),
            other => panic!("{other}"),
        }
    }

    /// Refused by `input_files` (so the engine never hashes it) and by `load`, naming `link`
    /// and `target`; loaded when allowed.
    fn refused_unless_allowed(cfg: &LoadConfig, root: &Path, link: &Path, target: &Path) {
        let out = root.parent().unwrap().join("out");
        for err in [
            input_files(cfg, root).unwrap_err(),
            load(cfg, root, &out, &NoProgress).unwrap_err(),
        ] {
            let msg = err.to_string();
            let (l, t) = outside_error(err);
            assert_eq!(l, link, "{msg}");
            assert_eq!(t, target.canonicalize().unwrap(), "{msg}");
            assert!(msg.contains("outside the data root"), "{msg}");
        }
        let mut allowed = cfg.clone();
        allowed.allow_outside_data_root = true;
        load(&allowed, root, &out, &NoProgress).unwrap();
    }

    #[test]
    fn a_file_link_out_is_refused_before_reading() {
        let (_top, root, outside) = layout();
        let link = root.join("cls/b.png");
        symlink(outside.join("secret.png"), &link).unwrap();
        refused_unless_allowed(
            &folder_config("cls", "error", 8),
            &root,
            &link,
            &outside.join("secret.png"),
        );
        // Skipping bad images does not skip a refused path.
        let err = load(
            &folder_config("cls", "skip", 8),
            &root,
            &root.join("../out"),
            &NoProgress,
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::OutsideDataRoot { .. }), "{err}");

        // A link to a file that is no image: refused as a link, never read or decoded.
        std::fs::remove_file(&link).unwrap();
        if Path::new("/etc/passwd").is_file() {
            symlink("/etc/passwd", &link).unwrap();
            let err = input_files(&folder_config("cls", "error", 8), &root).unwrap_err();
            let msg = err.to_string();
            let (l, t) = outside_error(err);
            assert_eq!(
                (l, t),
                (
                    link.clone(),
                    Path::new("/etc/passwd").canonicalize().unwrap()
                )
            );
            assert!(msg.contains("passwd"), "{msg}");
        }
    }

    #[test]
    fn a_folder_link_out_is_refused_for_a_folder_source() {
        let (_top, root, outside) = layout();
        let link = root.join("elsewhere");
        symlink(&outside, &link).unwrap();
        refused_unless_allowed(
            &folder_config("elsewhere", "error", 8),
            &root,
            &link,
            &outside,
        );
        // Inside a folder that is itself inside the root, a linked sub-folder is the culprit.
        std::fs::create_dir_all(root.join("deep")).unwrap();
        let inner = root.join("deep/linked");
        symlink(&outside, &inner).unwrap();
        refused_unless_allowed(
            &folder_config("deep/linked", "error", 8),
            &root,
            &inner,
            &outside,
        );
    }

    #[test]
    fn cohen_links_out_are_refused_for_the_folder_the_csv_and_each_image() {
        let (_top, root, outside) = layout();
        let cfg = || {
            let mut c = super::super::cohen_config("error");
            c.sources.truncate(1);
            c.classes = vec!["COVID".into()];
            if let Source::Cohen(s) = &mut c.sources[0] {
                s.label = "COVID".into();
            }
            c
        };
        // The collection folder is a link.
        let coll = root.join("coh");
        symlink(outside.join("coh"), &coll).unwrap();
        refused_unless_allowed(&cfg(), &root, &coll, &outside.join("coh"));
        std::fs::remove_file(&coll).unwrap();

        // A real folder whose metadata.csv is a link.
        write_cohen(&root, &[("COVID-19", "PA", "p1.png")]);
        write_png_gray(&root.join("coh/images/p1.png"), 6, 6, 4);
        let csv = root.join("coh/metadata.csv");
        std::fs::remove_file(&csv).unwrap();
        symlink(outside.join("coh/metadata.csv"), &csv).unwrap();
        refused_unless_allowed(&cfg(), &root, &csv, &outside.join("coh/metadata.csv"));
        std::fs::remove_file(&csv).unwrap();

        // One selected image is a link; the images folder is a link.
        write_cohen(&root, &[("COVID-19", "PA", "p1.png")]);
        let image = root.join("coh/images/p1.png");
        std::fs::remove_file(&image).unwrap();
        symlink(outside.join("coh/images/p1.png"), &image).unwrap();
        refused_unless_allowed(&cfg(), &root, &image, &outside.join("coh/images/p1.png"));
        std::fs::remove_dir_all(root.join("coh/images")).unwrap();
        symlink(outside.join("coh/images"), root.join("coh/images")).unwrap();
        refused_unless_allowed(
            &cfg(),
            &root,
            &root.join("coh/images"),
            &outside.join("coh/images"),
        );
    }

    #[test]
    fn npy_links_out_are_refused() {
        let (_top, root, outside) = layout();
        let x = Array4::<u8>::zeros((2, 4, 4, 3));
        let y = ndarray::Array1::from(vec![0u8, 0]);
        ndarray_npy::write_npy(outside.join("X.npy"), &x).unwrap();
        ndarray_npy::write_npy(root.join("Y.npy"), &y).unwrap();
        symlink(outside.join("X.npy"), root.join("X.npy")).unwrap();
        let cfg: LoadConfig = toml::from_str(
            "classes = [\"A\"]\nimage_size = 4\n[[sources]]\ntype = \"npy\"\nimages = \"X.npy\"\nlabels = \"Y.npy\"\n",
        )
        .unwrap();
        refused_unless_allowed(&cfg, &root, &root.join("X.npy"), &outside.join("X.npy"));
    }

    #[test]
    fn links_that_stay_inside_and_a_linked_data_root_are_fine() {
        let (top, root, _) = layout();
        std::fs::create_dir_all(root.join("store")).unwrap();
        write_png_gray(&root.join("store/s.png"), 8, 8, 5);
        symlink(root.join("store/s.png"), root.join("cls/s.png")).unwrap();
        symlink("../store", root.join("cls/sub")).unwrap(); // a folder link, not listed
        let cfg = folder_config("cls", "error", 8);
        let report = load(&cfg, &root, &top.path().join("out"), &NoProgress).unwrap();
        assert_eq!(report.images, 2);
        // The data root itself reached through a link: its contents are inside it.
        let alias = top.path().join("alias");
        symlink(&root, &alias).unwrap();
        let report = load(&cfg, &alias, &top.path().join("out"), &NoProgress).unwrap();
        assert_eq!(report.images, 2);
        assert_eq!(input_files(&cfg, &alias).unwrap().len(), 2);
    }
}

// ---- memory ----

#[test]
fn an_image_size_no_memory_holds_is_an_error_before_anything_is_made() {
    let root = tempfile::tempdir().unwrap();
    // 5000 images of 16384 x 16384 x 3 bytes: 4 TB, beyond any machine this runs on.
    let cfg: LoadConfig = toml::from_str(
        "image_size = 16384\n[[sources]]\ntype = \"synthetic\"\ncount = 5000\nseed = 1\n",
    )
    .unwrap();
    let start = std::time::Instant::now();
    let err = load(&cfg, root.path(), &root.path().join("out"), &NoProgress).unwrap_err();
    let LoadError::Memory {
        size,
        images,
        needed,
        available,
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!((size, images), (16384, 5000));
    let threads = rayon::current_num_threads() as u64;
    assert_eq!(needed.0, (5000 + threads) * 16384 * 16384 * 3);
    assert!(available < needed);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("need {needed} of memory")) && msg.contains("is available"),
        "{msg}"
    );
    assert!(needed.to_string().ends_with(" TB"), "{needed}");
    // Refused from the plan alone: no image was generated (that would take minutes).
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert!(!root.path().join("out").exists());
}
