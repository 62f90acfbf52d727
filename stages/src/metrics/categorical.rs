//! The categorical cross-entropy of a C-class softmax head: the reported test loss on
//! probabilities (Keras' `sparse_categorical_crossentropy`), the training loss on logits with
//! its gradient, and Keras-style class weights (sklearn's `'balanced'` among them).
//!
//! Samples are rows: `probabilities` and `logits` hold `labels.len() × classes` values, the
//! row of sample `i` at `i * classes .. (i + 1) * classes`.
//!
//! Class weights follow Keras 2's `fit(class_weight=...)`: `data_adapter.py`'s
//! `_make_class_weight_map_fn` turns them into per-sample weights `w_i = class_weight[y_i]`,
//! and `losses_utils.compute_weighted_loss` reduces with `SUM_OVER_BATCH_SIZE`, that is
//! `sum(w_i · l_i) / N` (`reduce_weighted_loss` divides the weighted sum by the number of
//! elements, not by the sum of the weights) — keras-team/keras, `keras/engine/data_adapter.py`
//! and `keras/utils/losses_utils.py`.

use super::{MetricsError, KERAS_EPSILON};

/// Why a categorical loss could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CategoricalError {
    /// A softmax head needs two classes or more.
    #[error("{classes} classes: a softmax head needs at least 2")]
    TooFewClasses { classes: usize },
    /// The values do not form one row of `classes` per label.
    #[error("{labels} labels of {classes} classes need {expected} values, got {values}")]
    Shape {
        labels: usize,
        classes: usize,
        expected: usize,
        values: usize,
    },
    /// A label that names no class.
    #[error("label {value} at index {index} is not a class (there are {classes}: 0 to {})", classes - 1)]
    InvalidLabel {
        index: usize,
        value: u32,
        classes: usize,
    },
    /// A probability that is NaN or outside [0, 1].
    #[error("probability {value} of sample {sample}, class {class} is not in [0, 1]")]
    InvalidProbability {
        sample: usize,
        class: usize,
        value: f32,
    },
    /// A logit that is NaN or infinite.
    #[error("logit {value} of sample {sample}, class {class} is not finite")]
    NonFiniteLogit {
        sample: usize,
        class: usize,
        value: f32,
    },
    /// Not one weight per class.
    #[error("{weights} class weights for {classes} classes")]
    WeightCount { weights: usize, classes: usize },
    /// A weight that is negative, NaN or infinite.
    #[error("class weight {value} of class {class} is not a finite number >= 0")]
    InvalidWeight { class: usize, value: f64 },
    /// sklearn's `'balanced'` weight `n / (C · 0)` of a class without samples is undefined.
    #[error("class {class} has no samples, so it has no balanced weight")]
    EmptyClass { class: usize },
}

/// The training loss on logits and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxLoss {
    /// `sum(w_i · l_i) / N`, `l_i = −ln softmax(z_i)[y_i]` (`w_i = 1` without class weights).
    pub loss: f64,
    /// d(loss)/d(logits), laid out as the logits: `w_i · (softmax(z_i) − onehot(y_i)) / N`.
    pub gradient: Vec<f64>,
}

/// The reported test loss: Keras' `sparse_categorical_crossentropy(labels, probabilities)` on
/// softmax outputs, averaged (or, with `class_weights`, reduced as the module says) in `f64`.
///
/// With `from_logits=False`, Keras' TensorFlow backend (`keras/backend.py` in Keras 2,
/// `keras/src/backend/tensorflow/nn.py` in Keras 3) clips the probabilities to
/// `[1e-7, 1 − 1e-7]`, takes their logarithm and hands that to
/// `tf.nn.sparse_softmax_cross_entropy_with_logits`, whose log-softmax renormalises the
/// clipped row. So each sample costs `−ln clip(p_y) + ln Σ_c clip(p_c)`: a zero probability of
/// the true class costs `−ln 1e-7 ≈ 16.12` (plus `ln Σ_c clip(p_c)`, at most `C · 1e-7` for
/// a row summing to 1) instead of infinity. Keras' documented example shows the second term:
/// for `p = [0.05, 0.95, 0]` and label 1 it reports `0.05129339`, which is
/// `−ln 0.95 + ln(1 + 1e-7)`.
///
/// (Inside a compiled `fit`/`evaluate`, Keras 2's `_get_logits` sees that the output comes
/// from a `Softmax` op and uses its logits with `from_logits=True` instead; that equals
/// [`log_softmax_cross_entropy`] and differs from this only where a true class's
/// probability is below `1e-7`.)
///
/// The reported test loss passes `class_weights: None`: Keras' `evaluate` has no
/// `class_weight`.
pub fn categorical_cross_entropy(
    labels: &[u32],
    probabilities: &[f32],
    classes: usize,
    class_weights: Option<&[f64]>,
) -> Result<f64, MetricsError> {
    check_rows(labels, probabilities.len(), classes)?;
    check_values(
        probabilities,
        classes,
        |p| (0.0..=1.0).contains(&p),
        |sample, class, value| CategoricalError::InvalidProbability {
            sample,
            class,
            value,
        },
    )?;
    let weights = sample_weights(labels, classes, class_weights)?;
    let clip = |p: f32| f64::from(p).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON);
    let total: f64 = labels
        .iter()
        .zip(probabilities.chunks_exact(classes))
        .zip(weights)
        .map(|((&y, row), w)| {
            let norm: f64 = row.iter().map(|&p| clip(p)).sum();
            w * (norm.ln() - clip(row[y as usize]).ln())
        })
        .sum();
    Ok(total / labels.len() as f64)
}

/// The training loss: the mean categorical cross-entropy of the softmax of `logits`, computed
/// stably, with its gradient at the logits (what the head's backward pass starts from).
///
/// `l_i = lse(z_i) − z_i[y_i]` with `lse(z) = m + ln Σ_c exp(z_c − m)`, `m = max_c z_c`: every
/// exponent is at most 0, so nothing overflows however large the logits (the naive
/// `exp(z) / Σ exp(z)` overflows `f32` from `z ≈ 88.7`), and the largest term is 1, so the
/// logarithm never sees 0. Computed in `f64` from the `f32` logits.
pub fn log_softmax_cross_entropy(
    labels: &[u32],
    logits: &[f32],
    classes: usize,
    class_weights: Option<&[f64]>,
) -> Result<SoftmaxLoss, MetricsError> {
    check_rows(labels, logits.len(), classes)?;
    check_values(logits, classes, f32::is_finite, |sample, class, value| {
        CategoricalError::NonFiniteLogit {
            sample,
            class,
            value,
        }
    })?;
    let weights = sample_weights(labels, classes, class_weights)?;
    let logits: Vec<f64> = logits.iter().map(|&z| f64::from(z)).collect();
    Ok(softmax_loss_f64(labels, &logits, classes, &weights))
}

/// sklearn's `compute_class_weight('balanced', classes=0..C, y=labels)`:
/// `n_samples / (n_classes · count_c)`, so that every class carries the same total weight.
pub fn balanced_class_weights(labels: &[u32], classes: usize) -> Result<Vec<f64>, MetricsError> {
    check_rows(labels, labels.len() * classes, classes)?;
    let mut counts = vec![0usize; classes];
    for &y in labels {
        counts[y as usize] += 1;
    }
    if let Some(class) = counts.iter().position(|&n| n == 0) {
        return Err(CategoricalError::EmptyClass { class }.into());
    }
    let n = labels.len() as f64;
    Ok(counts
        .iter()
        .map(|&count| n / (classes as f64 * count as f64))
        .collect())
}

/// The loss and gradient of [`log_softmax_cross_entropy`] on checked `f64` logits, with one
/// weight per sample.
fn softmax_loss_f64(
    labels: &[u32],
    logits: &[f64],
    classes: usize,
    weights: &[f64],
) -> SoftmaxLoss {
    let n = labels.len() as f64;
    let mut gradient = vec![0.0; logits.len()];
    let mut total = 0.0;
    for (((&y, row), grad), &w) in labels
        .iter()
        .zip(logits.chunks_exact(classes))
        .zip(gradient.chunks_exact_mut(classes))
        .zip(weights)
    {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|z| (z - max).exp()).sum();
        let log_sum = max + sum.ln();
        total += w * (log_sum - row[y as usize]);
        for (c, (g, z)) in grad.iter_mut().zip(row).enumerate() {
            let target = if c == y as usize { 1.0 } else { 0.0 };
            *g = w * ((z - log_sum).exp() - target) / n;
        }
    }
    SoftmaxLoss {
        loss: total / n,
        gradient,
    }
}

/// Checks that there are samples, at least two classes, one row of `classes` values per label
/// and only labels naming a class.
fn check_rows(labels: &[u32], values: usize, classes: usize) -> Result<(), MetricsError> {
    if classes < 2 {
        return Err(CategoricalError::TooFewClasses { classes }.into());
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty);
    }
    let expected = labels.len() * classes;
    if values != expected {
        return Err(CategoricalError::Shape {
            labels: labels.len(),
            classes,
            expected,
            values,
        }
        .into());
    }
    if let Some((index, &value)) = labels
        .iter()
        .enumerate()
        .find(|(_, &y)| y as usize >= classes)
    {
        return Err(CategoricalError::InvalidLabel {
            index,
            value,
            classes,
        }
        .into());
    }
    Ok(())
}

/// Fails with `bad(sample, class, value)` for the first of `values` (rows of `classes`)
/// that is not `ok`.
fn check_values(
    values: &[f32],
    classes: usize,
    ok: impl Fn(f32) -> bool,
    bad: impl Fn(usize, usize, f32) -> CategoricalError,
) -> Result<(), MetricsError> {
    match values.iter().position(|&v| !ok(v)) {
        Some(flat) => Err(bad(flat / classes, flat % classes, values[flat]).into()),
        None => Ok(()),
    }
}

/// Each sample's weight: its class's weight, or 1 without class weights.
fn sample_weights(
    labels: &[u32],
    classes: usize,
    class_weights: Option<&[f64]>,
) -> Result<Vec<f64>, MetricsError> {
    let Some(table) = class_weights else {
        return Ok(vec![1.0; labels.len()]);
    };
    if table.len() != classes {
        return Err(CategoricalError::WeightCount {
            weights: table.len(),
            classes,
        }
        .into());
    }
    if let Some((class, &value)) = table
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        return Err(CategoricalError::InvalidWeight { class, value }.into());
    }
    Ok(labels.iter().map(|&y| table[y as usize]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::binary_cross_entropy;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    /// `−ln 1e-7`, what a zero probability of the true class costs.
    const CLAMPED: f64 = 16.118_095_650_958_32;

    /// Uniform in `[-scale, scale)`.
    fn uniform(rng: &mut ChaCha8Rng, scale: f64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 * scale - scale
    }

    /// The textbook loss in f64: softmax, then `−ln p_y`, averaged.
    fn naive_f64(labels: &[u32], logits: &[f32], classes: usize) -> f64 {
        let total: f64 = labels
            .iter()
            .zip(logits.chunks_exact(classes))
            .map(|(&y, row)| {
                let exp: Vec<f64> = row.iter().map(|&z| f64::from(z).exp()).collect();
                -(exp[y as usize] / exp.iter().sum::<f64>()).ln()
            })
            .sum();
        total / labels.len() as f64
    }

    #[test]
    fn probability_loss_matches_keras_documented_example() {
        // Keras' SparseCategoricalCrossentropy docs: y = [1, 2],
        // p = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]] gives 1.1769392 (per sample, float64:
        // 0.05129339 and 2.30258509; the first is −ln 0.95 + ln(1 + 1e-7), the clipped zero
        // renormalised).
        let p = [0.05, 0.95, 0.0, 0.1, 0.8, 0.1];
        let loss = categorical_cross_entropy(&[1, 2], &p, 3, None).unwrap();
        let f = |v: f32| f64::from(v);
        let first = (f(0.05) + f(0.95) + 1e-7).ln() - f(0.95).ln();
        let second = (f(0.1) + f(0.8) + f(0.1)).ln() - f(0.1).ln();
        assert!((loss - (first + second) / 2.0).abs() < 1e-12, "{loss}");
        assert!((first - 0.051_293_39).abs() < 1e-8, "{first}");
        // −ln 0.1 = ln 10, Keras' 2.30258509.
        assert!((second - std::f64::consts::LN_10).abs() < 1e-7, "{second}");
        assert!((loss - 1.176_939_2).abs() < 1e-7, "{loss}");
    }

    #[test]
    fn a_zero_probability_of_the_true_class_costs_minus_ln_epsilon() {
        // Two classes: the clipped row [1e-7, 1 − 1e-7] sums to 1.
        let two = categorical_cross_entropy(&[0], &[0.0, 1.0], 2, None).unwrap();
        assert!((two - CLAMPED).abs() < 1e-9, "{two}");
        // Three: the row [1e-7, 1e-7, 1 − 1e-7] sums to 1 + 1e-7, which adds ln(1 + 1e-7).
        let three = categorical_cross_entropy(&[0], &[0.0, 0.0, 1.0], 3, None).unwrap();
        assert!(
            (three - (CLAMPED + 1e-7f64.ln_1p())).abs() < 1e-9,
            "{three}"
        );
        assert!(three - two > 9e-8);
        // A certain right answer costs about −ln(1 − 1e-7) ≈ 1e-7, not 0.
        let right = categorical_cross_entropy(&[1], &[0.0, 1.0], 2, None).unwrap();
        assert!((right - 1.000_000_05e-7).abs() < 1e-12, "{right}");
    }

    #[test]
    fn two_classes_equal_the_binary_loss_within_f32_rounding() {
        // [1 − p, p] in f32: 1 − p is exact for p ≥ 0.5 (Sterbenz) and within 2^-25 of the
        // true value otherwise (it lies in [0.5, 1], where the f32 spacing is 2^-24). With a
        // clipped value of at least 0.5 that moves −ln(1 − p) by at most 2^-25 / 0.5 = 2^-24,
        // and the renormalising ln(clip(1 − p) + clip(p)) by at most about 2^-25: the two
        // losses agree to 1.5 · 2^-24 ≈ 8.9e-8 per sample, so to 1e-7 on average.
        let ps: Vec<f32> = vec![
            0.0,
            1e-9,
            5e-8,
            1e-7,
            2e-7,
            1e-3,
            0.1,
            0.3,
            1.0 / 3.0,
            0.499_999_97,
            0.5,
            0.7,
            0.9,
            0.999,
            0.999_999_9,
            1.0,
        ];
        let mut worst = 0.0f64;
        for &p in &ps {
            for y in [0u8, 1] {
                let binary = binary_cross_entropy(&[y], &[p]).unwrap();
                let two =
                    categorical_cross_entropy(&[u32::from(y)], &[1.0 - p, p], 2, None).unwrap();
                worst = worst.max((binary - two).abs());
            }
        }
        assert!(
            worst < 1.5 / (1u32 << 24) as f64,
            "worst difference {worst}"
        );
        // And over a batch, where both average.
        let labels: Vec<u8> = (0..ps.len()).map(|i| (i % 2) as u8).collect();
        let rows: Vec<f32> = ps.iter().flat_map(|&p| [1.0 - p, p]).collect();
        let wide: Vec<u32> = labels.iter().map(|&y| u32::from(y)).collect();
        let binary = binary_cross_entropy(&labels, &ps).unwrap();
        let two = categorical_cross_entropy(&wide, &rows, 2, None).unwrap();
        assert!((binary - two).abs() < 1e-7, "{binary} vs {two}");
    }

    #[test]
    fn logits_loss_and_gradient_by_hand() {
        // z = [0, ln 2, ln 3]: softmax [1/6, 2/6, 3/6] (to f32 rounding of the logits).
        let z = [0.0, 2f32.ln(), 3f32.ln()];
        let logits: Vec<f32> = z.iter().chain(&z).copied().collect();
        let out = log_softmax_cross_entropy(&[2, 0], &logits, 3, None).unwrap();
        // (−ln 1/2 − ln 1/6) / 2 = ln 12 / 2
        assert!((out.loss - 12f64.ln() / 2.0).abs() < 1e-7, "{}", out.loss);
        let p = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
        let expected = [
            p[0] / 2.0,
            p[1] / 2.0,
            (p[2] - 1.0) / 2.0,
            (p[0] - 1.0) / 2.0,
            p[1] / 2.0,
            p[2] / 2.0,
        ];
        for (g, e) in out.gradient.iter().zip(expected) {
            assert!((g - e).abs() < 1e-7, "{g} vs {e}");
        }
        // Each row of (softmax − one-hot) sums to 0.
        for row in out.gradient.chunks(3) {
            assert!(row.iter().sum::<f64>().abs() < 1e-15);
        }
    }

    #[test]
    fn logits_loss_matches_the_naive_f64_loss_and_holds_where_f32_overflows() {
        let mut rng = ChaCha8Rng::seed_from_u64(27);
        for (classes, scale) in [(3, 1.0), (4, 10.0), (5, 100.0), (7, 120.0)] {
            let n = 32;
            let labels: Vec<u32> = (0..n).map(|_| rng.next_u32() % classes as u32).collect();
            let logits: Vec<f32> = (0..n * classes)
                .map(|_| uniform(&mut rng, scale) as f32)
                .collect();
            let out = log_softmax_cross_entropy(&labels, &logits, classes, None).unwrap();
            let naive = naive_f64(&labels, &logits, classes);
            // Both in f64; exp(120) ≈ 1.3e52 is far from f64's limit, so the naive loss is
            // right here to about 1e-14 relative, as is the max-subtracted one.
            assert!(
                (out.loss - naive).abs() <= 1e-12 * naive.max(1.0),
                "C = {classes}, |z| <= {scale}: {} vs {naive}",
                out.loss
            );
            if scale >= 100.0 {
                // The same naive formula in f32 breaks: exp(z) is inf from z ≈ 88.7.
                let f32_naive_breaks =
                    labels.iter().zip(logits.chunks(classes)).any(|(&y, row)| {
                        let exp: Vec<f32> = row.iter().map(|z| z.exp()).collect();
                        !(-(exp[y as usize] / exp.iter().sum::<f32>()).ln()).is_finite()
                    });
                assert!(
                    f32_naive_breaks,
                    "C = {classes}: the f32 naive loss stayed finite"
                );
                assert!(out.loss.is_finite() && out.gradient.iter().all(|g| g.is_finite()));
            }
        }
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        // Central differences err by h² / 6 · max|third derivative| (truncation; those of
        // log-sum-exp are below 1, and the loss is divided by N) plus about ε · |loss| / h
        // (rounding, ε = 2.2e-16). With h = 1e-5 that is at most 1.7e-11 + 2.2e-16 · 130 /
        // 1e-5 ≈ 3e-9 even for logits near 120 (a larger h grows the first term, a smaller
        // one the second), so a tolerance of 1e-8 leaves room for the bound and still
        // catches a wrong gradient (whose entries are 1e-3 to 1e-1 here).
        let h = 1e-5;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let classes = 4;
        let labels: Vec<u32> = (0..6).map(|i| i % classes as u32).collect();
        let cases = [
            (3.0, None),
            (3.0, Some(vec![0.5, 2.0, 1.0, 3.0])),
            (120.0, None),
        ];
        for (scale, weights) in cases {
            // f32-representable logits, so the public function sees the same values.
            let logits: Vec<f64> = (0..labels.len() * classes)
                .map(|_| f64::from(uniform(&mut rng, scale) as f32))
                .collect();
            let per_sample = sample_weights(&labels, classes, weights.as_deref()).unwrap();
            let loss = |z: &[f64]| softmax_loss_f64(&labels, z, classes, &per_sample).loss;
            let as_f32: Vec<f32> = logits.iter().map(|&z| z as f32).collect();
            let out =
                log_softmax_cross_entropy(&labels, &as_f32, classes, weights.as_deref()).unwrap();
            assert_eq!(out.loss, loss(&logits));
            let mut worst = 0.0f64;
            for i in 0..logits.len() {
                let (mut plus, mut minus) = (logits.clone(), logits.clone());
                plus[i] += h;
                minus[i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                worst = worst.max((fd - out.gradient[i]).abs());
            }
            assert!(
                worst < 1e-8,
                "|z| <= {scale}, {weights:?}: worst error {worst}"
            );
        }
    }

    #[test]
    fn class_weights_multiply_each_sample_and_divide_by_the_batch_size() {
        let logits = [0.2, -0.4, 1.0, 0.0, 0.5, -1.5, 2.0, 0.1, 0.3];
        let labels = [0, 2, 1];
        let plain = log_softmax_cross_entropy(&labels, &logits, 3, None).unwrap();
        let ones = log_softmax_cross_entropy(&labels, &logits, 3, Some(&[1.0; 3])).unwrap();
        assert_eq!(plain, ones);
        let w = [2.0, 0.5, 4.0];
        let weighted = log_softmax_cross_entropy(&labels, &logits, 3, Some(&w)).unwrap();
        // Each sample's own loss, from a batch of one.
        let single: Vec<f64> = (0..3)
            .map(|i| {
                log_softmax_cross_entropy(&labels[i..=i], &logits[3 * i..3 * i + 3], 3, None)
                    .unwrap()
                    .loss
            })
            .collect();
        let expected = (2.0 * single[0] + 4.0 * single[1] + 0.5 * single[2]) / 3.0;
        assert!((weighted.loss - expected).abs() < 1e-12);
        // Divided by N = 3, not by the weights' sum 6.5: Keras' SUM_OVER_BATCH_SIZE.
        assert!((weighted.loss - expected * 3.0 / 6.5).abs() > 1e-3);
        for (i, (g, p)) in weighted.gradient.iter().zip(&plain.gradient).enumerate() {
            let wi = w[labels[i / 3] as usize];
            assert!((g - wi * p).abs() < 1e-15, "{i}: {g} vs {wi} · {p}");
        }
        // The probability loss weights the same way.
        let p = [0.7, 0.2, 0.1, 0.1, 0.1, 0.8];
        let weighted = categorical_cross_entropy(&[0, 2], &p, 3, Some(&[3.0, 1.0, 0.0])).unwrap();
        let f = |v: f32| f64::from(v);
        let first = (f(0.7) + f(0.2) + f(0.1)).ln() - f(0.7).ln();
        assert!((weighted - 3.0 * first / 2.0).abs() < 1e-12, "{weighted}");
    }

    #[test]
    fn balanced_weights_follow_sklearn() {
        // sklearn: compute_class_weight('balanced', classes=[0, 1, 2], y=[0, 0, 0, 1, 2, 2])
        // = 6 / (3 · [3, 1, 2]) = [0.6667, 2, 1].
        let w = balanced_class_weights(&[0, 0, 0, 1, 2, 2], 3).unwrap();
        let expected = [2.0 / 3.0, 2.0, 1.0];
        for (a, b) in w.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15, "{w:?}");
        }
        let err = balanced_class_weights(&[0, 0, 2], 3).unwrap_err();
        assert!(matches!(
            err,
            MetricsError::Categorical(CategoricalError::EmptyClass { class: 1 })
        ));
        assert_eq!(
            err.to_string(),
            "class 1 has no samples, so it has no balanced weight"
        );
        assert!(balanced_class_weights(&[0, 3], 3).is_err());
    }

    #[test]
    fn bad_input_is_one_clear_error() {
        let err = |r: Result<f64, MetricsError>| r.unwrap_err().to_string();
        assert_eq!(
            err(categorical_cross_entropy(&[0, 3], &[0.5; 6], 3, None)),
            "label 3 at index 1 is not a class (there are 3: 0 to 2)"
        );
        assert_eq!(
            err(categorical_cross_entropy(&[0, 1], &[0.5; 5], 3, None)),
            "2 labels of 3 classes need 6 values, got 5"
        );
        assert_eq!(
            err(categorical_cross_entropy(
                &[0],
                &[0.5, f32::NAN, 0.5],
                3,
                None
            )),
            "probability NaN of sample 0, class 1 is not in [0, 1]"
        );
        assert_eq!(
            err(categorical_cross_entropy(&[0], &[1.0], 1, None)),
            "1 classes: a softmax head needs at least 2"
        );
        assert!(matches!(
            categorical_cross_entropy(&[], &[], 3, None),
            Err(MetricsError::Empty)
        ));
        assert_eq!(
            err(categorical_cross_entropy(
                &[0],
                &[0.5; 3],
                3,
                Some(&[1.0, 1.0])
            )),
            "2 class weights for 3 classes"
        );
        assert_eq!(
            err(categorical_cross_entropy(
                &[0],
                &[0.5; 3],
                3,
                Some(&[1.0, -1.0, 1.0])
            )),
            "class weight -1 of class 1 is not a finite number >= 0"
        );
        let logits = log_softmax_cross_entropy(&[1], &[0.0, f32::INFINITY], 2, None);
        assert_eq!(
            logits.unwrap_err().to_string(),
            "logit inf of sample 0, class 1 is not finite"
        );
    }

    /// What training will run: dfdx 0.13's `cross_entropy_with_logits_loss` (log-softmax
    /// inside, f32) on a dense layer's logits gives our f64 loss, and its backward pass the
    /// layer's gradients that our logits gradient implies (bias: Σ_i g_i; weight: Σ_i g_i x_iᵀ).
    #[test]
    fn dfdx_cross_entropy_on_dense_logits_matches_ours_within_f32_error() {
        use dfdx::nn::modules::Linear;
        use dfdx::prelude::*;
        const C: usize = 3;
        const D: usize = 5;
        const N: usize = 8;
        let dev = Cpu::default();
        let layer: Linear<D, C, f32, Cpu> = BuildModule::build(&dev);
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        // Inputs up to 40, so logits reach a few tens (the layer's weights are below 1/√5).
        let x: Vec<f32> = (0..N * D).map(|_| uniform(&mut rng, 40.0) as f32).collect();
        let labels: Vec<u32> = (0..N as u32).map(|i| i % C as u32).collect();
        let one_hot: Vec<f32> = (0..N * C)
            .map(|k| {
                if k % C == labels[k / C] as usize {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();

        let xs = dev.tensor_from_vec(x.clone(), (Const::<N>, Const::<D>));
        let logits_t = layer.forward(xs.traced(layer.alloc_grads()));
        let mut logits = vec![0.0f32; N * C];
        logits_t.copy_into(&mut logits);
        let targets = dev.tensor_from_vec(one_hot, (Const::<N>, Const::<C>));
        let loss = cross_entropy_with_logits_loss(logits_t, targets);
        let value = f64::from(loss.array());
        let grads = loss.backward();
        let mut bias = vec![0.0f32; C];
        grads.get(&layer.bias).copy_into(&mut bias);
        let mut weight = vec![0.0f32; C * D];
        grads.get(&layer.weight).copy_into(&mut weight);

        let ours = log_softmax_cross_entropy(&labels, &logits, C, None).unwrap();
        // f32 rounds z − logsumexp(z) to about ε · (|z|max + ln C) (ε = 2^-23), and so each
        // softmax − one-hot entry, divided by N, to ε · (|z|max + ln C) / N; the bias sums N
        // of them, the weight N of them times |x| ≤ 40. Eight times that is the tolerance.
        let z_max = logits
            .iter()
            .fold(0.0f64, |m, &z| m.max(f64::from(z).abs()));
        assert!(z_max > 10.0, "the logits are not large ({z_max})");
        let per_entry = 8.0 * f64::from(f32::EPSILON) * (z_max + (C as f64).ln() + 1.0);
        assert!(
            (value - ours.loss).abs() < per_entry,
            "{value} vs {}",
            ours.loss
        );
        for c in 0..C {
            let our_bias: f64 = (0..N).map(|i| ours.gradient[i * C + c]).sum();
            let b = f64::from(bias[c]);
            assert!(
                (b - our_bias).abs() < per_entry,
                "bias {c}: {b} vs {our_bias}"
            );
            for d in 0..D {
                let our_weight: f64 = (0..N)
                    .map(|i| ours.gradient[i * C + c] * f64::from(x[i * D + d]))
                    .sum();
                let w = f64::from(weight[c * D + d]);
                assert!(
                    (w - our_weight).abs() < 40.0 * per_entry,
                    "weight {c},{d}: {w} vs {our_weight}"
                );
            }
        }
    }
}
