use super::*;
use crate::metrics::io::{read_metrics_csv, write_all as write_binary};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_classes_write_the_seed_s_files_byte_for_byte() {
    let labels = [0u32, 0, 0, 1, 1, 1, 1];
    let p = [0.1f32, 0.45, 0.2, 0.45, 0.9, 0.8, 0.7];
    let rows: Vec<f32> = p.iter().flat_map(|&p| [1.0 - p, p]).collect();
    let images: Vec<String> = (0..7).map(|i| format!("img{i}.png")).collect();
    let dir = tempfile::tempdir().unwrap();
    let outcome = evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &labels,
            probabilities: &rows,
            classes: &strings(&["NORMAL", "COVID"]),
            images: &images,
            set: SetKind::TestSplit,
        },
        0.5,
        dir.path(),
    )
    .unwrap();
    // What the stage wrote before it took class probabilities.
    let reference = tempfile::tempdir().unwrap();
    let labels8: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    let e = Evaluation::compute(&labels8, &p, 0.5).unwrap();
    write_binary(&e, reference.path()).unwrap();
    write_predictions_csv(
        &labels8,
        &p,
        &images,
        &ClassNames::default_binary(),
        0.5,
        &reference.path().join(PREDICTIONS_CSV),
    )
    .unwrap();
    crate::figures::plot_confusion(&e.confusion, reference.path()).unwrap();
    crate::figures::plot_roc(&e.roc, reference.path()).unwrap();
    for file in [
        "metrics.csv",
        "confusion.csv",
        "classification_report.csv",
        "roc.csv",
        "predictions.csv",
        "confusion.png",
        "confusion.svg",
        "roc.png",
        "roc.svg",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(file)).unwrap(),
            std::fs::read(reference.path().join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(outcome, Outcome::Binary(e));
    let text = std::fs::read_to_string(dir.path().join("predictions.csv")).unwrap();
    assert!(text.contains("\n0,img0.png,NORMAL,0.1,NORMAL\n"), "{text}");
}

#[test]
fn a_binary_experiment_of_other_classes_names_its_own() {
    let labels = [0u32, 1, 1];
    let rows = [0.8f32, 0.2, 0.3, 0.7, 0.6, 0.4];
    let dir = tempfile::tempdir().unwrap();
    let outcome = evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &labels,
            probabilities: &rows,
            classes: &strings(&["PNEUMONIA", "COVID"]),
            images: &strings(&["a", "b", "c"]),
            set: SetKind::External,
        },
        0.5,
        dir.path(),
    )
    .unwrap();
    let names: Vec<String> = outcome.scalars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"n_pneumonia".to_string()), "{names:?}");
    assert!(!names.contains(&"n_normal".to_string()), "{names:?}");
    let confusion = std::fs::read_to_string(dir.path().join("confusion.csv")).unwrap();
    assert!(
        confusion.contains("\nPNEUMONIA,PNEUMONIA,1,"),
        "{confusion}"
    );
    assert!(!confusion.contains("NORMAL"), "{confusion}");
    let svg = std::fs::read_to_string(dir.path().join("confusion.svg")).unwrap();
    assert!(
        svg.contains("external set: 2 COVID, 1 PNEUMONIA"),
        "external title"
    );
    assert!(svg.contains(">PNEUMONIA<") || svg.contains("PNEUMONIA"));
    let predictions = std::fs::read_to_string(dir.path().join("predictions.csv")).unwrap();
    assert!(
        predictions.contains("\n2,c,COVID,0.4,PNEUMONIA\n"),
        "{predictions}"
    );
}

#[test]
fn three_classes_write_every_file_and_figure() {
    let (labels, probabilities) = crate::metrics::class_results_fixture();
    let images: Vec<String> = (0..6).map(|i| format!("img{i}.png")).collect();
    let dir = tempfile::tempdir().unwrap();
    let outcome = evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &labels,
            probabilities: &probabilities,
            classes: &strings(&["NORMAL", "PNEUMONIA", "COVID-19"]),
            images: &images,
            set: SetKind::External,
        },
        // Ignored: three classes predict the argmax.
        0.9,
        dir.path(),
    )
    .unwrap();
    let Outcome::Classes(results) = &outcome else {
        panic!("three classes gave {outcome:?}");
    };
    assert_eq!(results.evaluation.accuracy.successes, 4);
    let metrics = read_metrics_csv(&dir.path().join("metrics.csv")).unwrap();
    let get = |n: &str| metrics.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(get("sensitivity_covid_19"), 1.0);
    assert_eq!(get("specificity_pneumonia"), 0.75);
    for file in [
        "confusion.csv",
        "classification_report.csv",
        "roc.csv",
        "predictions.csv",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    use crate::figures::test_support::{assert_png, assert_svg_contains};
    assert_png(
        &dir.path().join("confusion.png"),
        crate::figures::CLASS_CONFUSION_SIZE,
    );
    assert_png(&dir.path().join("roc.png"), crate::figures::CLASS_ROC_SIZE);
    assert_svg_contains(
        &dir.path().join("confusion.svg"),
        &[
            "Confusion matrix, external set: 2 NORMAL, 2 PNEUMONIA, 2 COVID-19",
            "4 of 6 correct; each cell: count and share of its row (the true class)",
            "COVID-19",
            "50.0 %",
        ],
    );
    assert_svg_contains(
        &dir.path().join("roc.svg"),
        &[
            "NORMAL (AUC = 0.938)",
            "PNEUMONIA (AUC = 0.875)",
            "COVID-19 (AUC = 0.938)",
            "macro AUC = 0.917",
        ],
    );
}

#[test]
fn mismatched_inputs_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &[0, 1],
            probabilities: &[0.5, 0.5, 0.5],
            classes: &strings(&["A", "B"]),
            images: &strings(&["a", "b"]),
            set: SetKind::TestSplit,
        },
        0.5,
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("need 4 probabilities"), "{error}");
    let error = evaluate_probabilities(
        &EvaluatedProbabilities {
            labels: &[0, 1],
            probabilities: &[0.5, 0.5, 0.5, 0.5],
            classes: &strings(&["COVID-19", "covid 19"]),
            images: &strings(&["a", "b"]),
            set: SetKind::TestSplit,
        },
        0.5,
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("covid_19"), "{error}");
}

#[test]
fn index_csv_class_names_must_be_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.csv");
    std::fs::write(
        &path,
        "row,path,label,class,blake3,width,height\n\
         0,p/a.jpg,1,PNEUMONIA,x,1,1\n1,n/b.jpg,0,NORMAL,x,1,1\n2,c/c.jpg,2,COVID-19,x,1,1\n",
    )
    .unwrap();
    let index = read_index_csv(&path).unwrap();
    assert_eq!(index.paths, ["p/a.jpg", "n/b.jpg", "c/c.jpg"]);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let three = names(&["NORMAL", "PNEUMONIA", "COVID-19"]);
    index.check_classes(&three, &path).unwrap();
    let swapped = names(&["NORMAL", "COVID-19", "PNEUMONIA"]);
    let error = index
        .check_classes(&swapped, &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("label 1 is class \"PNEUMONIA\" here but \"COVID-19\""),
        "{error}"
    );
    let error = index
        .check_classes(&three[..2], &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("label 2 is class \"COVID-19\" here but absent"),
        "{error}"
    );
    // A two-class model that never named its classes takes the index's names.
    let default_pair = names(&["NORMAL", "COVID"]);
    let binary = "row,path,label,class,blake3,width,height\n0,p/a.jpg,0,PNEUMONIA,x,1,1\n";
    std::fs::write(&path, binary).unwrap();
    let pneumonia = read_index_csv(&path).unwrap();
    assert_eq!(pneumonia.names_for(&default_pair), ["PNEUMONIA", "COVID"]);
    // A model that named its classes is taken at its word, and checked.
    let named = names(&["OTHER", "COVID"]);
    assert_eq!(pneumonia.names_for(&named), named);
    assert!(pneumonia.check_classes(&named, &path).is_err());
    // An index without label/class columns names no class: nothing to compare.
    std::fs::write(&path, "path\na.jpg\n").unwrap();
    read_index_csv(&path)
        .unwrap()
        .check_classes(&swapped, &path)
        .unwrap();
}
