//! The test loss: binary cross-entropy on probabilities, as Keras computes it.

use super::{validate, MetricsError};

/// Keras' `epsilon()`: probabilities are clamped to `[ε, 1 − ε]` before the logarithm so a
/// confident wrong answer costs about 16.1 instead of infinity.
pub const KERAS_EPSILON: f64 = 1e-7;

/// Mean binary cross-entropy of `probabilities` (of COVID) against `labels` (0 or 1).
///
/// `−mean(y·ln p + (1 − y)·ln(1 − p))` with `p` clamped to `[1e-7, 1 − 1e-7]`, like Keras'
/// `binary_crossentropy` on sigmoid outputs. Summed in `f64`, so it may differ from Keras'
/// `float32` value in the last few digits.
pub fn binary_cross_entropy(labels: &[u8], probabilities: &[f32]) -> Result<f64, MetricsError> {
    validate(labels, probabilities)?;
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(&y, &p)| {
            let p = f64::from(p).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON);
            if y == 1 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Ok(total / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_mean() {
        // −(ln 0.9 + ln(1 − 0.2) + ln 0.6) / 3 = (0.1053605 + 0.2231436 + 0.5108256) / 3
        let loss = binary_cross_entropy(&[1, 0, 1], &[0.9, 0.2, 0.6]).unwrap();
        let expected = -(0.9f64.ln() + 0.8f64.ln() + 0.6f64.ln()) / 3.0;
        // The inputs are f32, so compare at f32 precision.
        assert!((loss - expected).abs() < 1e-7, "{loss} vs {expected}");
        assert!((loss - 0.279_776_6).abs() < 1e-6);
    }

    #[test]
    fn certain_mistakes_are_clamped_not_infinite() {
        // −ln(1e-7) = 16.118095650958319
        let loss = binary_cross_entropy(&[1, 0], &[0.0, 1.0]).unwrap();
        assert!((loss - 16.118_095_650_958_32).abs() < 1e-6, "{loss}");
        let perfect = binary_cross_entropy(&[1, 0], &[1.0, 0.0]).unwrap();
        // −ln(1 − 1e-7) ≈ 1.00000005e-7
        assert!((perfect - 1.000_000_05e-7).abs() < 1e-12, "{perfect}");
    }

    #[test]
    fn rejects_mismatched_input() {
        assert!(binary_cross_entropy(&[1], &[0.5, 0.5]).is_err());
        assert!(binary_cross_entropy(&[], &[]).is_err());
    }
}
