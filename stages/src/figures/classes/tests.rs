use super::*;
use crate::figures::test_support::{assert_png, assert_svg_contains, svg_texts};
use crate::metrics::ClassNames;

fn results(labels: &[u32], probabilities: &[f32]) -> ClassResults {
    let names = ClassNames::new(vec!["NORMAL".into(), "PNEUMONIA".into(), "COVID-19".into()]);
    ClassResults::compute(labels, probabilities, names.unwrap()).unwrap()
}

#[test]
fn the_heatmap_shows_counts_and_row_shares_coloured_by_share() {
    let dir = tempfile::tempdir().unwrap();
    // NORMAL: 3 of 3 right; PNEUMONIA: 1 of 2 (one called COVID-19); COVID-19: 1 of 1.
    let labels = [0, 0, 0, 1, 1, 2];
    let probabilities = [
        0.9, 0.05, 0.05, 0.8, 0.1, 0.1, 0.7, 0.2, 0.1, //
        0.1, 0.8, 0.1, 0.1, 0.3, 0.6, //
        0.1, 0.2, 0.7,
    ];
    let r = results(&labels, &probabilities);
    let paths = plot_class_confusion(&r, &EvaluatedSet::TestSplit, dir.path()).unwrap();
    assert_png(&paths[0], CLASS_CONFUSION_SIZE);
    assert_svg_contains(
        &paths[1],
        &[
            "Confusion matrix: 5 of 6 test images correct",
            "each cell: count and share of its row (the true class)",
            "True class",
            "Predicted class",
            "share of the true class",
            "PNEUMONIA",
        ],
    );
    let texts = svg_texts(&paths[1]);
    for share in ["100.0 %", "50.0 %", "0.0 %"] {
        assert!(texts.iter().any(|t| t == share), "no cell says {share}");
    }
    // The NORMAL row's diagonal cell (share 1) is the scale's darkest blue; its neighbour
    // (share 0) the lightest. Sampled off the cell's centre, clear of the text.
    let png = image::open(&paths[0]).unwrap().to_rgb8();
    let cell = GRID / 3;
    let at = |row: i32, col: i32| {
        let x = GRID_LEFT + col * cell + 8;
        let y = GRID_TOP + row * cell + 8;
        png.get_pixel(x as u32, y as u32).0
    };
    assert_eq!(at(0, 0), [8, 48, 107]);
    assert_eq!(at(0, 1), [247, 251, 255]);
}

#[test]
fn an_absent_class_row_says_n_a_and_its_curve_is_named_absent() {
    let dir = tempfile::tempdir().unwrap();
    let labels = [0, 0, 2, 2];
    let probabilities = [
        0.8, 0.1, 0.1, 0.6, 0.3, 0.1, //
        0.1, 0.6, 0.3, 0.1, 0.2, 0.7,
    ];
    let r = results(&labels, &probabilities);
    let paths = plot_class_confusion(&r, &EvaluatedSet::TestSplit, dir.path()).unwrap();
    assert!(svg_texts(&paths[1]).iter().filter(|t| *t == "n/a").count() == 3);
    let paths = plot_class_roc(&r, &EvaluatedSet::TestSplit, dir.path()).unwrap();
    assert_png(&paths[0], CLASS_ROC_SIZE);
    assert_svg_contains(
        &paths[1],
        &[
            "One-vs-rest ROC curves on the test set",
            "PNEUMONIA: absent, no curve",
            "NORMAL (AUC = 1.000)",
            "COVID-19 (AUC = 1.000)",
            "macro AUC = 1.000",
            "chance (AUC = 0.5)",
        ],
    );
}
