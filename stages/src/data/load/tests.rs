use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ndarray::{Array2, Array4};

use super::*;
use crate::data::load_image;
use crate::progress::NoProgress;

/// The shared real data set, or `None` when this machine lacks it, after recording the
/// calling test as skipped (see `crate::test_skip`).
fn real_data() -> Option<PathBuf> {
    let root = std::env::var_os("PIPELINE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if root.join("covid-chestxray-dataset/metadata.csv").is_file() {
        Some(root)
    } else {
        crate::test_skip::skip(&format!(
            "no real chest X-ray data at {} (set PIPELINE_TEST_DATA)",
            root.display()
        ));
        None
    }
}

const SEED_TOML: &str = r#"
image_size = 237

[[sources]]
type = "cohen"
path = "covid-chestxray-dataset"
label = "COVID"
filters = { finding = "COVID-19", modality = "X-ray", view = ["PA", "AP", "AP Supine", "AP semi erect"] }
exclude_extensions = [".gz"]

[[sources]]
type = "folder"
path = "chest_xray/train/NORMAL"
label = "NORMAL"
limit = 100
"#;

fn seed_config() -> LoadConfig {
    toml::from_str(SEED_TOML).unwrap()
}

/// The real set loaded once per test binary: (output dir, report).
fn real_load() -> Option<&'static (tempfile::TempDir, LoadReport)> {
    static LOADED: OnceLock<Option<(tempfile::TempDir, LoadReport)>> = OnceLock::new();
    // Asked here too, so that every test without the data records its skip, not only the
    // first one to get here.
    real_data()?;
    LOADED
        .get_or_init(|| {
            let root = real_data()?;
            let out = tempfile::tempdir().unwrap();
            let report = load(&seed_config(), &root, out.path(), &NoProgress).unwrap();
            Some((out, report))
        })
        .as_ref()
}

/// `path -> (label, width, height)` of every image, from the data set's own MANIFEST.tsv.
fn manifest(root: &Path) -> BTreeMap<String, (String, u32, u32)> {
    let text = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_owned(),
                (
                    f[3].to_owned(),
                    f[5].parse().unwrap(),
                    f[6].parse().unwrap(),
                ),
            )
        })
        .collect()
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn toml_shape_and_unknown_keys() {
    let cfg = seed_config();
    assert_eq!(cfg.classes, ["NORMAL", "COVID"]);
    assert_eq!(cfg.on_bad_image, OnBadImage::Error);
    let Source::Cohen(c) = &cfg.sources[0] else {
        panic!("{:?}", cfg.sources[0])
    };
    assert_eq!(c.filters["finding"], FilterValue::One("COVID-19".into()));
    assert!(c.filters["view"].accepts("AP Supine"));
    assert!(!c.filters["view"].accepts("L"));
    assert_eq!(c.images_dir, "images");
    let Source::Folder(f) = &cfg.sources[1] else {
        panic!("{:?}", cfg.sources[1])
    };
    assert_eq!(f.limit, Some(100));

    let top = toml::from_str::<LoadConfig>(&format!("colour = 1\n{SEED_TOML}"));
    assert!(top.unwrap_err().to_string().contains("colour"));
    let inner = SEED_TOML.replace("limit = 100", "limt = 100");
    let err = toml::from_str::<LoadConfig>(&inner)
        .unwrap_err()
        .to_string();
    assert!(err.contains("limt"), "{err}");
    let synth: LoadConfig = toml::from_str(
        "image_size = 32\non_bad_image = \"skip\"\n[[sources]]\ntype = \"synthetic\"\ncount = 5\nseed = 3\n",
    )
    .unwrap();
    assert_eq!(synth.on_bad_image, OnBadImage::Skip);
    assert!(matches!(&synth.sources[0], Source::Synthetic(s) if s.count == Some(5) && s.seed == 3));
    let bad = toml::from_str::<LoadConfig>("image_size = 3\n[[sources]]\ntype = \"zip\"\n");
    assert!(bad.unwrap_err().to_string().contains("zip"));
}

#[test]
fn real_seed_selection_matches_manifest() {
    let Some(root) = real_data() else { return };
    let files = input_files(&seed_config(), &root).unwrap();
    let manifest = manifest(&root);
    let expected: BTreeSet<PathBuf> = manifest.keys().map(|p| root.join(p)).collect();
    let mut listed: BTreeSet<PathBuf> = files.iter().cloned().collect();
    assert!(listed.remove(&root.join("covid-chestxray-dataset/metadata.csv")));
    assert_eq!(listed, expected);
    assert_eq!(files.len(), 276);
    assert!(files.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
}

#[test]
fn real_load_counts_shapes_labels() {
    let Some((out, report)) = real_load() else {
        return;
    };
    let root = real_data().unwrap();
    assert_eq!(report.images, 275);
    let counts: Vec<(&str, u8, usize)> = report
        .class_counts
        .iter()
        .map(|c| (c.class.as_str(), c.label, c.count))
        .collect();
    assert_eq!(counts, [("NORMAL", 0, 100), ("COVID", 1, 175)]);
    assert!(report.skipped.is_empty());
    assert_eq!(report.bytes_read, 152_860_351);

    let images: Array4<u8> = ndarray_npy::read_npy(out.path().join("images.npy")).unwrap();
    assert_eq!(images.dim(), (275, 237, 237, 3));
    let labels: Array2<u8> = ndarray_npy::read_npy(out.path().join("labels.npy")).unwrap();
    assert_eq!(labels.dim(), (275, 1));
    assert!(labels.iter().take(175).all(|&l| l == 1));
    assert!(labels.iter().skip(175).all(|&l| l == 0));

    let manifest = manifest(&root);
    let index = read_csv(&out.path().join("index.csv"));
    assert_eq!(index.len(), 275);
    for (i, row) in index.iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        let (class, w, h) = &manifest[&row[1]];
        assert_eq!(&row[3], class, "{row:?}");
        assert_eq!(row[2], labels[[i, 0]].to_string());
        assert_eq!(
            (
                row[5].parse::<u32>().unwrap(),
                row[6].parse::<u32>().unwrap()
            ),
            (*w, *h)
        );
    }
    // The first NORMAL file in sorted order, and its digest computed here.
    assert_eq!(index[175][1], "chest_xray/train/NORMAL/IM-0117-0001.jpeg");
    let bytes = std::fs::read(root.join(&index[175][1])).unwrap();
    assert_eq!(index[175][4], blake3::hash(&bytes).to_hex().to_string());
    assert_eq!(
        std::fs::read_to_string(out.path().join("skipped.csv")).unwrap(),
        "path,reason\n"
    );

    // The seed's split of these labels: 55 test rows, the same on 1 and 2 threads.
    let labels = crate::data::split::read_labels(&out.path().join("labels.npy")).unwrap();
    let cfg = crate::data::split::SplitConfig::default();
    let on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| crate::data::split::split(&labels, &cfg).unwrap())
    };
    let (one, two) = (on(1), on(2));
    assert_eq!(one, two);
    assert_eq!((one.train.len(), one.test.len()), (220, 55));
    assert_eq!(one.counts.test.values().sum::<usize>(), 55);
    assert_eq!(one.counts.train[&0] + one.counts.test[&0], 100);
}

/// Pillow 13.0.0 reference values: `np.array(Image.open(p).resize((237, 237)).convert("RGB"))`
/// gave sum 28217433 and pixels [100,100] = 169, [10,200] = 99, [236,0] = 162 for this RGB PNG.
/// PNG decoding is exact, so the Pillow-compatible resize must match to the byte.
#[test]
fn real_png_matches_pillow_exactly() {
    let Some(root) = real_data() else { return };
    let path = root.join("covid-chestxray-dataset/images/covid-19-pneumonia-28.png");
    let a = load_image(&path, 237).unwrap();
    assert_eq!(a.dim(), (237, 237, 3));
    assert_eq!(a.iter().map(|&v| u64::from(v)).sum::<u64>(), 28_217_433);
    assert_eq!(a[[100, 100, 0]], 169);
    assert_eq!(a[[10, 200, 1]], 99);
    assert_eq!(a[[236, 0, 2]], 162);
    // The same row of images.npy is this exact array (load and load_image agree).
    if let Some((out, _)) = real_load() {
        let index = read_csv(&out.path().join("index.csv"));
        let row = index
            .iter()
            .position(|r| r[1].ends_with("covid-19-pneumonia-28.png"))
            .unwrap();
        let images: Array4<u8> = ndarray_npy::read_npy(out.path().join("images.npy")).unwrap();
        assert_eq!(images.index_axis(ndarray::Axis(0), row), a);
    }
}

/// A grayscale JPEG: decoders may differ from libjpeg by an IDCT rounding step, so compare
/// with Pillow's values (sum 16960536, [100,100] = 138, [10,200] = 56) within a small margin.
#[test]
fn real_gray_jpeg_close_to_pillow() {
    let Some(root) = real_data() else { return };
    let a = load_image(&root.join("chest_xray/train/NORMAL/IM-0117-0001.jpeg"), 237).unwrap();
    let sum = a.iter().map(|&v| v as f64).sum::<f64>();
    let mean_diff = (sum - 16_960_536.0).abs() / a.len() as f64;
    assert!(mean_diff < 0.5, "mean difference {mean_diff}");
    assert!((i32::from(a[[100, 100, 0]]) - 138).abs() <= 2);
    assert!((i32::from(a[[10, 200, 0]]) - 56).abs() <= 2);
    assert!(a
        .outer_iter()
        .all(|row| row.outer_iter().all(|p| p[0] == p[1] && p[1] == p[2])));
}

// ---- synthetic data: the same checks, without the real set ----

fn synthetic_config(count_per_class: usize, seed: u64, size: u32) -> LoadConfig {
    toml::from_str(&format!(
        "image_size = {size}\n[[sources]]\ntype = \"synthetic\"\ncount_per_class = {count_per_class}\nseed = {seed}\n"
    ))
    .unwrap()
}

struct Counting(AtomicU64, AtomicU64);
impl Progress for Counting {
    fn start(&self, _phase: &str, total: u64) {
        self.0.store(total, Ordering::SeqCst);
    }
    fn advance(&self, n: u64) {
        self.1.fetch_add(n, Ordering::SeqCst);
    }
    fn message(&self, _text: &str) {}
}

#[test]
fn synthetic_counts_shapes_labels_and_bit_identical_across_threads() {
    let cfg = synthetic_config(12, 9, 48);
    let dir = tempfile::tempdir().unwrap();
    let mut npys = Vec::new();
    for threads in [1, 2, 2] {
        let out = dir.path().join(format!("run{}", npys.len()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let progress = Counting(AtomicU64::new(0), AtomicU64::new(0));
        let report = pool
            .install(|| load(&cfg, Path::new("/nonexistent"), &out, &progress))
            .unwrap();
        assert_eq!(progress.0.load(Ordering::SeqCst), 24);
        assert_eq!(progress.1.load(Ordering::SeqCst), 24);
        assert_eq!(report.images, 24);
        assert_eq!(report.class_counts[0].count, 12);
        assert_eq!(report.class_counts[1].count, 12);
        assert!(report.duplicates.is_empty());
        npys.push((
            std::fs::read(out.join("images.npy")).unwrap(),
            std::fs::read(out.join("labels.npy")).unwrap(),
            std::fs::read(out.join("index.csv")).unwrap(),
        ));
    }
    assert_eq!(npys[0], npys[1]);
    assert_eq!(npys[0], npys[2]);
    let out = dir.path().join("run0");
    let images: Array4<u8> = ndarray_npy::read_npy(out.join("images.npy")).unwrap();
    assert_eq!(images.dim(), (24, 48, 48, 3));
    let labels: Array2<u8> = ndarray_npy::read_npy(out.join("labels.npy")).unwrap();
    assert_eq!(labels.column(0).to_vec(), [[0u8; 12], [1u8; 12]].concat());
    let index = read_csv(&out.join("index.csv"));
    assert_eq!(index[13][1], "synthetic:seed=9#13");
    assert_eq!(index[13][3], "COVID");
    assert_eq!(index[13][5..], ["48".to_owned(), "48".to_owned()]);
    // Another seed gives other images.
    let other = dir.path().join("other");
    load(
        &synthetic_config(12, 10, 48),
        Path::new("/x"),
        &other,
        &NoProgress,
    )
    .unwrap();
    assert_ne!(std::fs::read(other.join("images.npy")).unwrap(), npys[0].0);
    assert!(input_files(&cfg, Path::new("/x")).unwrap().is_empty());
}

#[test]
fn synthetic_total_count_and_config_errors() {
    let cfg: LoadConfig =
        toml::from_str("image_size = 8\n[[sources]]\ntype = \"synthetic\"\ncount = 5\nseed = 1\n")
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = load(&cfg, dir.path(), dir.path(), &NoProgress).unwrap();
    assert_eq!((r.class_counts[0].count, r.class_counts[1].count), (3, 2));
    let mut both = cfg.clone();
    if let Source::Synthetic(s) = &mut both.sources[0] {
        s.count_per_class = Some(SyntheticCounts::Each(2));
    }
    let err = load(&both, dir.path(), dir.path(), &NoProgress).unwrap_err();
    match err {
        LoadError::Invalid(e) => assert_eq!(
            e.to_string(),
            "`sources` must give exactly one of `count` and `count_per_class` in the synthetic \
             source (seed 1)"
        ),
        other => panic!("expected an invalid source, got {other:?}"),
    }
    let mut size0 = cfg.clone();
    size0.image_size = 0;
    match input_files(&size0, dir.path()) {
        Err(LoadError::Invalid(e)) => assert_eq!(e.field, "image_size", "{e}"),
        other => panic!("expected an invalid image_size, got {other:?}"),
    }
}

// ---- small files made here ----

fn write_png_gray(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 3) as u8 ^ seed]));
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

fn folder_config(path: &str, on_bad: &str, size: u32) -> LoadConfig {
    toml::from_str(&format!(
        "classes = [\"A\"]\nimage_size = {size}\non_bad_image = \"{on_bad}\"\n[[sources]]\ntype = \"folder\"\npath = \"{path}\"\nlabel = \"A\"\n"
    ))
    .unwrap()
}

#[test]
fn corrupt_and_truncated_images_error_or_skip() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cls");
    std::fs::create_dir(&dir).unwrap();
    for (i, name) in ["a.png", "c.png", "e.png"].iter().enumerate() {
        write_png_gray(&dir.join(name), 20, 10, i as u8);
    }
    std::fs::write(dir.join("b.png"), b"this is not an image").unwrap();
    let full = std::fs::read(dir.join("a.png")).unwrap();
    std::fs::write(dir.join("d.png"), &full[..full.len() / 2]).unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();

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
        msg.contains("b.png"),
        "first bad file in order is named: {msg}"
    );

    let report = load(
        &folder_config("cls", "skip", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.images, 3);
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(skipped, ["cls/b.png", "cls/d.png"]);
    let rows = read_csv(&out.join("skipped.csv"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "cls/b.png");
    assert!(rows[1][1].starts_with("cannot decode"), "{:?}", rows[1]);
    let index = read_csv(&out.join("index.csv"));
    let paths: Vec<&str> = index.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(paths, ["cls/a.png", "cls/c.png", "cls/e.png"]);
}

#[test]
fn missing_folder_empty_class_and_duplicates() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let err = load(
        &folder_config("nope", "skip", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingDir { path } if path.ends_with("nope")),
        "{err}"
    );

    std::fs::create_dir(root.path().join("empty")).unwrap();
    let err = input_files(&folder_config("empty", "error", 8), root.path()).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    // A declared class with no source is an error too.
    let mut two = folder_config("dups", "error", 8);
    two.classes.push("B".into());
    let dups = root.path().join("dups");
    std::fs::create_dir(&dups).unwrap();
    write_png_gray(&dups.join("x.png"), 9, 9, 1);
    std::fs::copy(dups.join("x.png"), dups.join("y.png")).unwrap();
    write_png_gray(&dups.join("z.png"), 9, 9, 2);
    let err = load(&two, root.path(), &out, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, LoadError::EmptyClass { class } if class == "B"),
        "{err}"
    );
    assert!(err.to_string().contains("allow_empty_classes"), "{err}");
    // An evaluation set may lack a class the model knows: allowed, it loads with 0 of B.
    let mut allowed = two.clone();
    allowed.allow_empty_classes = true;
    let report = load(
        &allowed,
        root.path(),
        &root.path().join("allowed"),
        &NoProgress,
    )
    .unwrap();
    let counts: Vec<(String, usize)> = report
        .class_counts
        .iter()
        .map(|c| (c.class.clone(), c.count))
        .collect();
    assert_eq!(counts[1], ("B".to_owned(), 0), "{counts:?}");

    let report = load(
        &folder_config("dups", "error", 8),
        root.path(),
        &out,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        report.duplicates,
        [vec!["dups/x.png".to_owned(), "dups/y.png".to_owned()]]
    );
    assert_eq!(report.images, 3);
}

fn write_cohen(root: &Path, rows: &[(&str, &str, &str)]) {
    let dir = root.join("coh");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("patientid,finding,view,modality,folder,filename,\n");
    for (finding, view, file) in rows {
        csv.push_str(&format!("1,{finding},{view},X-ray,images,{file},\n"));
    }
    std::fs::write(dir.join("metadata.csv"), csv).unwrap();
}

fn cohen_config(on_bad: &str) -> LoadConfig {
    toml::from_str(&format!(
        r#"classes = ["NORMAL", "COVID"]
image_size = 6
on_bad_image = "{on_bad}"
[[sources]]
type = "cohen"
path = "coh"
label = "COVID"
filters = {{ finding = "COVID-19", view = ["PA", "AP"] }}
exclude_extensions = [".GZ"]
[[sources]]
type = "synthetic"
count_per_class = 1
seed = 0
"#
    ))
    .unwrap()
}

#[test]
fn cohen_filters_missing_rows_and_input_files() {
    let root = tempfile::tempdir().unwrap();
    write_cohen(
        root.path(),
        &[
            ("COVID-19", "PA", "p1.png"),
            ("COVID-19", "L", "lateral.png"),
            ("SARS", "PA", "sars.png"),
            ("COVID-19", "AP", "ct.nii.gz"),
            ("COVID-19", "AP", "p2.png"),
            ("COVID-19", "PA", "gone.png"),
        ],
    );
    let images = root.path().join("coh/images");
    for (i, f) in ["p1.png", "lateral.png", "sars.png", "ct.nii.gz", "p2.png"]
        .iter()
        .enumerate()
    {
        write_png_gray(&images.join(f), 12, 12, i as u8);
    }
    let out = root.path().join("out");
    let err = load(&cohen_config("error"), root.path(), &out, &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("gone.png") && msg.contains("line 7"), "{msg}");
    assert!(input_files(&cohen_config("error"), root.path()).is_err());

    let cfg = cohen_config("skip");
    let files = input_files(&cfg, root.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["coh/images/p1.png", "coh/images/p2.png", "coh/metadata.csv"]
    );
    let report = load(&cfg, root.path(), &out, &NoProgress).unwrap();
    assert_eq!(report.images, 4); // p1, p2, one synthetic of each class
    assert_eq!(report.class_counts[1].count, 3);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].path, "coh/images/gone.png");

    // The engine hashes the listed files: editing a selected image changes that content,
    // editing an unselected one changes nothing, adding the missing one adds it to the list.
    let digest = |files: &[PathBuf]| {
        let mut h = blake3::Hasher::new();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(&std::fs::read(f).unwrap());
        }
        h.finalize()
    };
    let before = digest(&files);
    write_png_gray(&images.join("lateral.png"), 12, 12, 99);
    assert_eq!(digest(&input_files(&cfg, root.path()).unwrap()), before);
    write_png_gray(&images.join("p2.png"), 12, 12, 99);
    let edited = input_files(&cfg, root.path()).unwrap();
    assert_eq!(edited, files);
    assert_ne!(digest(&edited), before);
    write_png_gray(&images.join("gone.png"), 12, 12, 5);
    assert_eq!(input_files(&cfg, root.path()).unwrap().len(), 4);
}

#[test]
fn unreadable_csv_and_unknown_column_name_the_file() {
    let root = tempfile::tempdir().unwrap();
    write_cohen(root.path(), &[("COVID-19", "PA", "p1.png")]);
    let csv = root.path().join("coh/metadata.csv");
    let mut bytes = std::fs::read(&csv).unwrap();
    bytes.extend_from_slice(b"1,COVID-19,PA,X-ray,images,\xff\xfe.png,\n");
    std::fs::write(&csv, bytes).unwrap();
    let err = input_files(&cohen_config("skip"), root.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Csv { path, .. } if path == &csv),
        "{err}"
    );

    write_cohen(root.path(), &[("COVID-19", "PA", "p1.png")]);
    let mut cfg = cohen_config("skip");
    if let Source::Cohen(c) = &mut cfg.sources[0] {
        c.filters.insert("sex".into(), FilterValue::One("M".into()));
    }
    let err = input_files(&cfg, root.path()).unwrap_err();
    assert!(err.to_string().contains("\"sex\"") && err.to_string().contains("metadata.csv"));
    let mut cfg = cohen_config("skip");
    if let Source::Cohen(c) = &mut cfg.sources[0] {
        c.label = "FLU".into();
    }
    assert!(input_files(&cfg, root.path())
        .unwrap_err()
        .to_string()
        .contains("FLU"));
}

#[test]
fn npy_source_round_trip_and_resize() {
    let root = tempfile::tempdir().unwrap();
    let x = Array4::from_shape_fn((4, 10, 10, 3), |(n, y, x, c)| {
        (n * 50 + y * 4 + x + c) as u8
    });
    let y = Array2::from_shape_vec((4, 1), vec![1i64, 0, 1, 1]).unwrap();
    ndarray_npy::write_npy(root.path().join("X.npy"), &x).unwrap();
    ndarray_npy::write_npy(root.path().join("Y.npy"), &y).unwrap();
    let cfg = |size| -> LoadConfig {
        toml::from_str(&format!(
            "image_size = {size}\n[[sources]]\ntype = \"npy\"\nimages = \"X.npy\"\nlabels = \"Y.npy\"\n"
        ))
        .unwrap()
    };
    std::fs::rename(root.path().join("Y.npy"), root.path().join("Y0.npy")).unwrap();
    let err = input_files(&cfg(10), root.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingFile { path } if path.ends_with("Y.npy")),
        "{err}"
    );
    std::fs::rename(root.path().join("Y0.npy"), root.path().join("Y.npy")).unwrap();
    let files = input_files(&cfg(10), root.path()).unwrap();
    assert_eq!(
        files,
        [root.path().join("X.npy"), root.path().join("Y.npy")]
    );
    let out = root.path().join("out");
    let report = load(&cfg(10), root.path(), &out, &NoProgress).unwrap();
    assert_eq!(
        (report.class_counts[0].count, report.class_counts[1].count),
        (1, 3)
    );
    let back: Array4<u8> = ndarray_npy::read_npy(out.join("images.npy")).unwrap();
    assert_eq!(back, x);
    let labels: Array2<u8> = ndarray_npy::read_npy(out.join("labels.npy")).unwrap();
    assert_eq!(labels.column(0).to_vec(), [1, 0, 1, 1]);
    assert_eq!(read_csv(&out.join("index.csv"))[2][1], "X.npy#2");

    load(&cfg(5), root.path(), &out, &NoProgress).unwrap();
    let small: Array4<u8> = ndarray_npy::read_npy(out.join("images.npy")).unwrap();
    assert_eq!(small.dim(), (4, 5, 5, 3));

    let bad = Array2::from_shape_vec((4, 1), vec![1i64, 0, 2, 1]).unwrap();
    ndarray_npy::write_npy(root.path().join("Y.npy"), &bad).unwrap();
    let err = load(&cfg(10), root.path(), &out, &NoProgress).unwrap_err();
    assert!(matches!(err, LoadError::NpyLabel { row: 2, .. }), "{err}");
}

// ---- decoding of formats and colour types ----

#[test]
fn png_16bit_palette_rgba_and_gray_jpeg_decode_to_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4;
    // 16-bit gray, constant 0x8080 -> 8-bit 128 everywhere.
    let p16 = dir.path().join("g16.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(8, 8, image::Luma([0x8080u16]))
        .save(&p16)
        .unwrap();
    let a = load_image(&p16, size).unwrap();
    assert!(a.iter().all(|&v| v == 128), "{a:?}");

    // 16-bit RGB: 65535, 0, 257*10 -> 255, 0, 10.
    let prgb16 = dir.path().join("rgb16.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(8, 8, image::Rgb([65535u16, 0, 2570]))
        .save(&prgb16)
        .unwrap();
    let a = load_image(&prgb16, size).unwrap();
    assert_eq!(a.slice(ndarray::s![1, 2, ..]).to_vec(), [255, 0, 10]);

    // RGBA: alpha is dropped, colour kept.
    let prgba = dir.path().join("rgba.png");
    image::RgbaImage::from_pixel(6, 6, image::Rgba([10, 200, 30, 40]))
        .save(&prgba)
        .unwrap();
    let a = load_image(&prgba, size).unwrap();
    assert_eq!(a.slice(ndarray::s![3, 0, ..]).to_vec(), [10, 200, 30]);

    // Palette: left half index 0 (red), right half index 1 (blue), 8x2 -> 4x4.
    let ppal = dir.path().join("pal.png");
    {
        let file = std::fs::File::create(&ppal).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 8, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
            .unwrap();
    }
    let a = load_image(&ppal, size).unwrap();
    assert_eq!(a.slice(ndarray::s![0, 0, ..]).to_vec(), [255, 0, 0]);
    assert_eq!(a.slice(ndarray::s![3, 3, ..]).to_vec(), [0, 0, 255]);

    // Grayscale JPEG of a flat field decodes to equal RGB channels near the value.
    let pj = dir.path().join("g.jpg");
    image::GrayImage::from_pixel(16, 16, image::Luma([90]))
        .save(&pj)
        .unwrap();
    let a = load_image(&pj, size).unwrap();
    assert!(a.iter().all(|&v| (i32::from(v) - 90).abs() <= 1), "{a:?}");
}

/// Inserts an EXIF APP1 segment with the given orientation right after a JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, next IFD = 0
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    // 32x16: left half black, right half white.
    let img = image::GrayImage::from_fn(32, 16, |x, _| image::Luma([if x < 16 { 0 } else { 255 }]));
    let mut jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let path = dir.path().join("rot.jpg");
    // 6 = rotate 90 degrees clockwise to display: left half ends up on top.
    std::fs::write(&path, with_exif_orientation(&jpeg, 6)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let d = crate::data::decode::decode_resize(&bytes, 8, &path, Default::default()).unwrap();
    assert!(d.reoriented);
    assert_eq!((d.width, d.height), (16, 32));
    let a = load_image(&path, 8).unwrap();
    assert!(a[[0, 4, 0]] < 30 && a[[7, 4, 0]] > 225, "{a:?}");
    let plain = dir.path().join("plain.jpg");
    std::fs::write(&plain, &jpeg).unwrap();
    let b = load_image(&plain, 8).unwrap();
    assert!(b[[4, 0, 0]] < 30 && b[[4, 7, 0]] > 225, "{b:?}");
}

mod bad_input;
mod groups;
