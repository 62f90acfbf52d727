use super::*;
use crate::metrics::class_io::{write_class_predictions_csv, write_class_results};
use crate::metrics::io::{read_metrics_csv, read_predictions_csv};

pub(crate) fn names() -> ClassNames {
    ClassNames::new(vec!["NORMAL".into(), "PNEUMONIA".into(), "COVID-19".into()]).unwrap()
}

/// Six images, two per class; images 1 (NORMAL called PNEUMONIA) and 3 (PNEUMONIA called
/// COVID-19) are wrong. Confusion rows: [1, 1, 0], [0, 1, 1], [0, 0, 2].
pub(crate) fn six() -> (Vec<u32>, Vec<f32>) {
    let labels = vec![0, 0, 1, 1, 2, 2];
    let probabilities = vec![
        0.7, 0.2, 0.1, //
        0.2, 0.5, 0.3, //
        0.1, 0.6, 0.3, //
        0.1, 0.3, 0.6, //
        0.2, 0.2, 0.6, //
        0.1, 0.1, 0.8,
    ];
    (labels, probabilities)
}

/// The Wilson 95 % interval of k successes in n, straight from its formula in f64.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    (centre - half, centre + half)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn six_images_by_hand() {
    let (labels, probabilities) = six();
    let r = ClassResults::compute(&labels, &probabilities, names()).unwrap();
    let s = r.scalars();
    let get = |name: &str| {
        s.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    assert_eq!(get("n_test"), Some(6.0));
    assert_eq!(get("n_covid_19"), Some(2.0));
    assert!(close(get("test_accuracy"), 4.0 / 6.0));
    let (low, high) = wilson(4.0, 6.0);
    assert!(close(get("test_accuracy_ci_low"), low));
    assert!(close(get("test_accuracy_ci_high"), high));
    // NORMAL: 1 of 2 found, its one prediction right, all 4 others kept out.
    assert!(close(get("sensitivity_normal"), 0.5));
    assert!(close(get("precision_normal"), 1.0));
    assert!(close(get("specificity_normal"), 1.0));
    assert!(close(get("f1_normal"), 2.0 / 3.0));
    // PNEUMONIA: 1 of 2 found, 1 of its 2 predictions right, 3 of 4 others kept out.
    assert!(close(get("sensitivity_pneumonia"), 0.5));
    assert!(close(get("precision_pneumonia"), 0.5));
    assert!(close(get("specificity_pneumonia"), 0.75));
    let (low, high) = wilson(3.0, 4.0);
    assert!(close(get("specificity_pneumonia_ci_low"), low));
    assert!(close(get("specificity_pneumonia_ci_high"), high));
    // COVID-19: both found, 2 of its 3 predictions right.
    assert!(close(get("sensitivity_covid_19"), 1.0));
    assert!(close(get("precision_covid_19"), 2.0 / 3.0));
    assert!(close(get("f1_covid_19"), 0.8));
    assert!(close(get("macro_f1"), (2.0 / 3.0 + 0.5 + 0.8) / 3.0));
    assert!(close(get("weighted_f1"), (2.0 / 3.0 + 0.5 + 0.8) / 3.0));
    // One-vs-rest AUCs by counting ordered pairs (ties count half): 7.5, 7 and 7.5 of 8.
    assert!(close(get("roc_auc_normal"), 7.5 / 8.0));
    assert!(close(get("roc_auc_pneumonia"), 7.0 / 8.0));
    assert!(close(get("roc_auc_covid_19"), 7.5 / 8.0));
    assert!(close(get("macro_roc_auc"), 22.0 / 24.0));
    // NORMAL vs PNEUMONIA on images 0-3: AUC(p_normal) = 1, AUC(p_pneumonia) = 3/4.
    assert!(close(get("pairwise_roc_auc_normal_vs_pneumonia"), 0.875));
    assert_eq!(
        s.iter()
            .filter(|(n, _)| n.starts_with("pairwise_"))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "pairwise_roc_auc_normal_vs_pneumonia",
            "pairwise_roc_auc_normal_vs_covid_19",
            "pairwise_roc_auc_pneumonia_vs_covid_19"
        ]
    );
    let naive = -[0.7f64, 0.2, 0.6, 0.3, 0.6, 0.8]
        .iter()
        .map(|p| p.ln())
        .sum::<f64>()
        / 6.0;
    assert!((r.test_loss - naive).abs() < 1e-6, "{}", r.test_loss);
    // Names are unique.
    let mut all: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), s.len());
}

#[test]
fn the_files_hold_the_documented_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, probabilities) = six();
    let r = ClassResults::compute(&labels, &probabilities, names()).unwrap();
    write_class_results(&r, dir.path()).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(
        read("confusion.csv"),
        "true_label,NORMAL,PNEUMONIA,COVID-19\nNORMAL,1,1,0\nPNEUMONIA,0,1,1\nCOVID-19,0,0,2\n"
    );
    let report = read("classification_report.csv");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines,
        [
            "class,precision,recall,f1_score,support,ill_defined",
            "NORMAL,1,0.5,0.6666666666666666,2,",
            "PNEUMONIA,0.5,0.5,0.5,2,",
            "COVID-19,0.6666666666666666,1,0.8,2,",
            "accuracy,,,0.6666666666666666,6,",
            "macro avg,0.7222222222222222,0.6666666666666666,0.6555555555555556,6,",
            "weighted avg,0.7222222222222222,0.6666666666666666,0.6555555555555556,6,",
        ]
    );
    let roc = read("roc.csv");
    assert!(roc.starts_with("class,threshold,fpr,tpr\nNORMAL,inf,0,0\nNORMAL,0.7,0,0.5\n"));
    assert!(roc.contains("\nCOVID-19,0.8,0,0.5\n"), "{roc}");
    let metrics = read_metrics_csv(&dir.path().join("metrics.csv")).unwrap();
    assert_eq!(metrics.len(), r.scalars().len());
    assert_eq!(metrics[0], ("n_test".to_string(), 6.0));

    let images: Vec<String> = (0..6).map(|i| format!("img{i}.png")).collect();
    let path = dir.path().join("predictions.csv");
    write_class_predictions_csv(&labels, &probabilities, &images, &r.classes, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "index,image,true_label,predicted_label,probability_NORMAL,probability_PNEUMONIA,\
         probability_COVID-19"
    );
    assert_eq!(lines[2], "1,img1.png,NORMAL,PNEUMONIA,0.2,0.5,0.3");
    let back = read_predictions_csv(&path).unwrap();
    assert_eq!(
        back.classes.as_deref(),
        Some(&["NORMAL".to_string(), "PNEUMONIA".into(), "COVID-19".into()][..])
    );
    assert_eq!(back.predicted[3], "COVID-19");
    assert_eq!(back.true_classes[3], "PNEUMONIA");
    // The predicted class's probability.
    assert_eq!(back.probabilities, [0.7, 0.5, 0.6, 0.6, 0.6, 0.8]);
}

#[test]
fn an_absent_class_has_no_sensitivity_written_as_an_empty_cell() {
    let dir = tempfile::tempdir().unwrap();
    // No PNEUMONIA image; one COVID-19 image called PNEUMONIA.
    let labels = [0, 0, 2, 2];
    let probabilities = [
        0.8, 0.1, 0.1, //
        0.6, 0.3, 0.1, //
        0.1, 0.6, 0.3, //
        0.1, 0.2, 0.7,
    ];
    let r = ClassResults::compute(&labels, &probabilities, names()).unwrap();
    let s = r.scalars();
    let get = |name: &str| s.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(get("n_pneumonia"), Some(0.0));
    assert_eq!(get("sensitivity_pneumonia"), None);
    assert_eq!(get("sensitivity_pneumonia_ci_low"), None);
    assert_eq!(get("roc_auc_pneumonia"), None);
    assert_eq!(get("pairwise_roc_auc_normal_vs_pneumonia"), None);
    // Called once, wrongly: a real 0 precision, and a specificity of 3 of 4.
    assert_eq!(get("precision_pneumonia"), Some(0.0));
    assert_eq!(get("specificity_pneumonia"), Some(0.75));
    assert!(close(get("sensitivity_covid_19"), 0.5));
    // The macro AUC runs over the two classes that have one.
    assert!(close(
        get("macro_roc_auc"),
        (get("roc_auc_normal").unwrap() + get("roc_auc_covid_19").unwrap()) / 2.0
    ));
    write_class_results(&r, dir.path()).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert!(metrics.contains("\nsensitivity_pneumonia,\n"), "{metrics}");
    assert!(metrics.contains("\nroc_auc_pneumonia,\n"), "{metrics}");
    assert!(!metrics.contains("NaN"), "{metrics}");
    let back = read_metrics_csv(&dir.path().join("metrics.csv")).unwrap();
    assert!(back
        .iter()
        .any(|(n, v)| n == "sensitivity_pneumonia" && v.is_nan()));
    let report = std::fs::read_to_string(dir.path().join("classification_report.csv")).unwrap();
    assert!(report.contains("\nPNEUMONIA,0,,0,0,recall\n"), "{report}");
    let roc = std::fs::read_to_string(dir.path().join("roc.csv")).unwrap();
    assert!(!roc.contains("PNEUMONIA"), "{roc}");
}
