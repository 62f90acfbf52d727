//! Groups (patients) in `index.csv`: the column is there exactly when a source declares
//! `group_by`, each source fills it its own way, and every misuse is one error naming the key,
//! file or pattern at fault. Also the synthetic source's classes beyond two.

use std::path::Path;

use super::{read_csv, write_png_gray};
use crate::data::load::*;
use crate::progress::NoProgress;

/// A Cohen collection under `root/coh` whose rows are `(patientid, file)`, all COVID-19 PA.
fn write_patients(root: &Path, rows: &[(&str, &str)]) {
    let dir = root.join("coh");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("patientid,finding,view,modality,folder,filename\n");
    for (i, (patient, file)) in rows.iter().enumerate() {
        csv.push_str(&format!("{patient},COVID-19,PA,X-ray,images,{file}\n"));
        write_png_gray(&dir.join("images").join(file), 10, 12, i as u8);
    }
    std::fs::write(dir.join("metadata.csv"), csv).unwrap();
}

/// Kermany-style names in `root/kermany`.
fn write_kermany(root: &Path, names: &[&str]) {
    let dir = root.join("kermany");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in names.iter().enumerate() {
        write_png_gray(&dir.join(name), 12, 10, 100 + i as u8);
    }
}

const MIXED: &str = r#"
classes = ["NORMAL", "COVID-19", "OTHER"]
image_size = 4
[[sources]]
type = "cohen"
path = "coh"
label = "COVID-19"
group_by = "patientid"
[[sources]]
type = "folder"
path = "kermany"
label = "NORMAL"
group_by = "patientid"
group_pattern = 'IM-(\d+)-'
[[sources]]
type = "synthetic"
count = 2
seed = 3
labels = ["OTHER", "NORMAL"]
"#;

fn config(text: &str) -> LoadConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn index_gains_the_group_column_only_when_a_source_declares_one() {
    let root = tempfile::tempdir().unwrap();
    write_patients(
        root.path(),
        &[("17", "a.png"), ("3", "b.png"), ("17", "c.png")],
    );
    write_kermany(
        root.path(),
        &["IM-0117-0001.png", "IM-0117-0002.png", "IM-0133-0001.png"],
    );
    let out = root.path().join("out");
    let report = load(&config(MIXED), root.path(), &out, &NoProgress).unwrap();
    let text = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("row,path,label,class,blake3,width,height,patientid")
    );
    let index = read_csv(&out.join("index.csv"));
    let groups: Vec<(&str, &str)> = index
        .iter()
        .map(|r| (r[1].as_str(), r[7].as_str()))
        .collect();
    assert_eq!(
        groups,
        [
            ("coh/images/a.png", "17"),
            ("coh/images/b.png", "3"),
            ("coh/images/c.png", "17"),
            ("kermany/IM-0117-0001.png", "0117"),
            ("kermany/IM-0117-0002.png", "0117"),
            ("kermany/IM-0133-0001.png", "0133"),
            // A source without group_by: an empty cell, a group of its own.
            ("synthetic:seed=3#0", ""),
            ("synthetic:seed=3#1", ""),
        ]
    );
    // 17, 3, 0117, 0133 and the two synthetic rows.
    assert_eq!(report.groups, Some(6));

    // Without group_by anywhere, the seven columns of before, and no count in the report.
    let plain = MIXED
        .replace("group_by = \"patientid\"\n", "")
        .replace("group_pattern = 'IM-(\\d+)-'\n", "");
    let report = load(&config(&plain), root.path(), &out, &NoProgress).unwrap();
    let text = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("row,path,label,class,blake3,width,height")
    );
    assert!(text.lines().all(|l| l.split(',').count() == 7), "{text}");
    assert_eq!(report.groups, None);
}

#[test]
fn a_file_the_pattern_does_not_match_is_an_error_before_anything_is_read() {
    let root = tempfile::tempdir().unwrap();
    write_patients(root.path(), &[("1", "a.png")]);
    write_kermany(root.path(), &["IM-0117-0001.png", "person1_virus.png"]);
    // `input_files` lists without decoding: the engine calls it before the stage runs.
    let err = input_files(&config(MIXED), root.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kermany/person1_virus.png: the file name does not match group_pattern \
         \"IM-(\\\\d+)-\" of the folder source \"kermany\", so it has no group; change the \
         pattern or move the file out"
    );
    // A pattern that matches every name works on the same folder.
    let lenient = MIXED.replace(r"'IM-(\d+)-'", r"'^(?:IM-)?([a-z]*\d+)'");
    let files = input_files(&config(&lenient), root.path()).unwrap();
    assert_eq!(files.len(), 4, "{files:?}");
}

/// `LoadConfig::validate`'s message for `text`, which the experiment's check shows on the
/// `sources` key.
fn invalid(text: &str) -> String {
    let err = config(text).validate().unwrap_err();
    assert_eq!(err.field, "sources", "{err}");
    err.message
}

#[test]
fn group_settings_that_cannot_work_are_config_errors() {
    let two_names = MIXED.replacen("group_by = \"patientid\"", "group_by = \"patient\"", 1);
    assert_eq!(
        invalid(&two_names),
        "declare group_by = \"patient\" and group_by = \"patientid\": every source that \
         declares group_by must name the same column of index.csv"
    );
    let taken = MIXED.replace("group_by = \"patientid\"", "group_by = \"class\"");
    assert!(
        invalid(&taken).starts_with("declare group_by = \"class\", which cannot name"),
        "{}",
        invalid(&taken)
    );
    let no_pattern = MIXED.replace("group_pattern = 'IM-(\\d+)-'\n", "");
    assert!(
        invalid(&no_pattern).starts_with(
            "in the folder source \"kermany\": group_by = \"patientid\" needs group_pattern"
        ),
        "{}",
        invalid(&no_pattern)
    );
    let no_capture = MIXED.replace(r"'IM-(\d+)-'", r"'IM-\d+-'");
    assert_eq!(
        invalid(&no_capture),
        "in the folder source \"kermany\": group_pattern \"IM-\\\\d+-\" has no capture group: \
         put the part of the file name that names the group in parentheses"
    );
    let broken = MIXED.replace(r"'IM-(\d+)-'", r"'IM-(\d+-'");
    assert!(
        invalid(&broken).starts_with(
            "in the folder source \"kermany\": group_pattern \"IM-(\\\\d+-\" is not a valid regex"
        ),
        "{}",
        invalid(&broken)
    );
    // The Cohen column must exist (found when the CSV is read, naming it and the file).
    let root = tempfile::tempdir().unwrap();
    write_patients(root.path(), &[("1", "a.png")]);
    write_kermany(root.path(), &["IM-0117-0001.png"]);
    let wrong = MIXED.replace("group_by = \"patientid\"", "group_by = \"patient_id\"");
    let err = input_files(&config(&wrong), root.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingColumn { path, column }
            if column == "patient_id" && path.ends_with("coh/metadata.csv")),
        "{err}"
    );
}

const THREE: &str = r#"
classes = ["NORMAL", "PNEUMONIA", "COVID-19"]
image_size = 16
[[sources]]
type = "synthetic"
count_per_class = [4, 3, 5]
seed = 7
group_by = "patientid"
group_size = 2
"#;

#[test]
fn synthetic_draws_three_classes_in_groups_of_consecutive_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report = load(&config(THREE), dir.path(), &out, &NoProgress).unwrap();
    let counts: Vec<(&str, usize)> = report
        .class_counts
        .iter()
        .map(|c| (c.class.as_str(), c.count))
        .collect();
    assert_eq!(counts, [("NORMAL", 4), ("PNEUMONIA", 3), ("COVID-19", 5)]);
    let index = read_csv(&out.join("index.csv"));
    let rows: Vec<(&str, &str, &str)> = index
        .iter()
        .map(|r| (r[1].as_str(), r[3].as_str(), r[7].as_str()))
        .collect();
    assert_eq!(rows[0], ("synthetic:seed=7#0", "NORMAL", "synthetic-7-0-0"));
    assert_eq!(rows[3], ("synthetic:seed=7#3", "NORMAL", "synthetic-7-0-1"));
    assert_eq!(
        rows[4],
        ("synthetic:seed=7#4", "PNEUMONIA", "synthetic-7-1-0")
    );
    assert_eq!(
        rows[6],
        ("synthetic:seed=7#6", "PNEUMONIA", "synthetic-7-1-1")
    );
    assert_eq!(
        rows[11],
        ("synthetic:seed=7#11", "COVID-19", "synthetic-7-2-2")
    );
    // 2 + 2 + 3 groups.
    assert_eq!(report.groups, Some(7));
    let labels: ndarray::Array2<u8> = ndarray_npy::read_npy(out.join("labels.npy")).unwrap();
    assert_eq!(
        labels.column(0).to_vec(),
        [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    );
    // `count` shares out evenly, the first classes taking the odd ones; `labels` picks and
    // orders the classes drawn (the first gets the negative cue).
    let even = THREE.replace("count_per_class = [4, 3, 5]", "count = 14");
    let r = load(&config(&even), dir.path(), &out, &NoProgress).unwrap();
    let n: Vec<usize> = r.class_counts.iter().map(|c| c.count).collect();
    assert_eq!(n, [5, 5, 4]);
    let picked = format!(
        "{}labels = [\"COVID-19\", \"NORMAL\", \"PNEUMONIA\"]\n",
        THREE.replace("count_per_class = [4, 3, 5]", "count_per_class = 2")
    );
    load(&config(&picked), dir.path(), &out, &NoProgress).unwrap();
    let labels: ndarray::Array2<u8> = ndarray_npy::read_npy(out.join("labels.npy")).unwrap();
    assert_eq!(labels.column(0).to_vec(), [2, 2, 0, 0, 1, 1]);
}

#[test]
fn synthetic_settings_that_cannot_work_are_config_errors() {
    let cases = [
        (
            THREE.replace("[4, 3, 5]", "[4, 3]"),
            "`count_per_class` [4, 3] must give one count for each of the 3 classes drawn in \
             the synthetic source (seed 7)",
        ),
        (
            THREE.replace("group_by = \"patientid\"\n", ""),
            "`group_size = 2` needs `group_by`, the name of its index.csv column in the \
             synthetic source (seed 7)",
        ),
        (
            THREE.replace("group_size = 2", "group_size = 0"),
            "`group_size` must be at least 1, not 0 in the synthetic source (seed 7)",
        ),
        (
            format!("{THREE}labels = [\"NORMAL\", \"NORMAL\", \"COVID-19\"]\n"),
            "`labels` [\"NORMAL\", \"NORMAL\", \"COVID-19\"] must be distinct in the synthetic \
             source (seed 7)",
        ),
        (
            format!("{THREE}labels = [\"NORMAL\"]\n").replace("[4, 3, 5]", "[4]"),
            "must draw 2 to 8 classes, not 1 ([\"NORMAL\"]): set `labels` or `classes` in the \
             synthetic source (seed 7)",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(invalid(&text), message);
    }
    let nine: Vec<String> = (0..9).map(|i| format!("\"C{i}\"")).collect();
    let many = THREE
        .replace(
            "[\"NORMAL\", \"PNEUMONIA\", \"COVID-19\"]",
            &format!("[{}]", nine.join(", ")),
        )
        .replace("[4, 3, 5]", "1");
    assert!(
        invalid(&many).starts_with("must draw 2 to 8 classes, not 9"),
        "{}",
        invalid(&many)
    );
}

/// The quickstart's two classes are drawn as before the other cues came: these digests of
/// the pixels (index.csv's `blake3`) were written by the load stage of version 4 before it.
#[test]
fn two_class_synthetic_images_are_unchanged() {
    let cfg = config(
        "image_size = 32\n[[sources]]\ntype = \"synthetic\"\ncount_per_class = 120\nseed = 7\n",
    );
    let dir = tempfile::tempdir().unwrap();
    load(&cfg, dir.path(), dir.path(), &NoProgress).unwrap();
    let index = read_csv(&dir.path().join("index.csv"));
    let pinned = [
        (
            0,
            "50bb32e481d280dbffb41efb45dc802248e7c9b9b545a93ae6ecbc388a272c1f",
        ),
        (
            1,
            "a1399b6cfb01c66c97e39c362675d837831084736140dadaee0613edb4ffd2b3",
        ),
        (
            119,
            "67f52dc0b04e5f4ca41bf9f0eb7c52bc16725aeda4f11a4a99a161b04b86fbe4",
        ),
        (
            120,
            "1657d967581fd41e9be59b1850d25215120d1eb6d91f951657288a4ad3626ef5",
        ),
        (
            239,
            "dae4cf51c50255cc1a33b0a30249010081c0142665a7a7da5ddcc982c1b86fae",
        ),
    ];
    for (row, digest) in pinned {
        assert_eq!(index[row][4], digest, "row {row}");
    }
    assert_eq!(index.len(), 240);
    assert!(index.iter().all(|r| r.len() == 7));
}
