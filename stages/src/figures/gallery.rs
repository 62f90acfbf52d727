//! Renders every figure from realistic synthetic inputs into one folder, for people to look
//! at: `cargo test -p stages gallery -- --ignored` (folder: `$FIGURE_GALLERY_DIR`, or
//! `target/figure-gallery`).

use std::path::PathBuf;

use super::test_support::{blob_image, plausible_history, Noise};
use super::{plot_confusion, plot_history, plot_predictions, plot_roc, PredictionSample};
use crate::metrics::{roc_curve, ConfusionMatrix, RocCurve};

#[test]
#[ignore = "writes figures for a person to inspect"]
fn gallery() {
    let dir = std::env::var_os("FIGURE_GALLERY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/figure-gallery")
        });
    const NAMES: [&str; 2] = ["NORMAL", "COVID"];
    const NOTE: &str = "p = predicted probability of COVID";
    // The seed's run: 50 epochs, 55 test images, one COVID image missed.
    plot_history(&plausible_history(50), &dir.join("seed")).unwrap();
    plot_confusion(
        &ConfusionMatrix::from_rows([[22, 0], [1, 32]]),
        &dir.join("seed"),
    )
    .unwrap();

    let mut noise = Noise::new(11);
    let labels: Vec<u8> = (0..55)
        .map(|i| u8::from(i % 5 != 0 && i % 5 != 3))
        .collect();
    let mut probabilities: Vec<f32> = labels
        .iter()
        .map(|&l| {
            let p = 0.02 + 0.2 * noise.next();
            (if l == 1 { 1.0 - p } else { p }) as f32
        })
        .collect();
    probabilities[41] = 0.31; // the missed COVID image, beyond the grid's first 36
    probabilities[7] = 0.56; // a near miss that is still right
    plot_roc(
        &roc_curve(&labels, &probabilities).unwrap(),
        &dir.join("seed"),
    )
    .unwrap();
    let images: Vec<Vec<u8>> = (0..55).map(|i| blob_image(237, 237, i)).collect();
    let samples: Vec<_> = images
        .iter()
        .zip(&labels)
        .zip(&probabilities)
        .map(|((image, &label), &probability)| PredictionSample {
            image,
            width: 237,
            height: 237,
            true_class: NAMES[usize::from(label)],
            predicted: NAMES[usize::from(probability > 0.5)],
            probability,
        })
        .collect();
    plot_predictions(&samples, NOTE, &dir.join("seed")).unwrap();

    // Edge cases: a short run, a poor classifier, a one-class test set, three images.
    let short = dir.join("edge");
    plot_history(&plausible_history(3), &short).unwrap();
    plot_confusion(&ConfusionMatrix::from_rows([[5, 9], [12, 3]]), &short).unwrap();
    plot_roc(&RocCurve::default(), &short).unwrap();
    let overlapping: Vec<f32> = labels
        .iter()
        .map(|&l| (0.25 * f64::from(l) + 0.75 * noise.next()) as f32)
        .collect();
    plot_roc(
        &roc_curve(&labels, &overlapping).unwrap(),
        &dir.join("overlapping"),
    )
    .unwrap();
    // Three images, one misclassified, one landscape and one portrait.
    let landscape = blob_image(300, 180, 1);
    let portrait = blob_image(150, 260, 2);
    let mut few = samples[..3].to_vec();
    few[1].probability = 1.0 - few[1].probability;
    few[1].predicted = NAMES[usize::from(few[1].probability > 0.5)];
    (few[0].image, few[0].width, few[0].height) = (&landscape, 300, 180);
    (few[2].image, few[2].width, few[2].height) = (&portrait, 150, 260);
    plot_predictions(&few, NOTE, &short).unwrap();
    eprintln!("figures written to {}", dir.display());
}
