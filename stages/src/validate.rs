//! The one error type of every stage config's validation, naming the parameter at fault, and
//! the checks the configs share (finite numbers, fractions, paths under the data root).
//!
//! Each config type has one `validate` function built from these. The engine calls it when it
//! checks an experiment file, so the problem lands on the right key with its line and column,
//! and the stage calls it again before it runs: the rules live in one place.

use std::ops::RangeBounds;
use std::path::{Component, Path};

/// A parameter whose value a stage cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {message}")]
pub struct ConfigError {
    /// The parameter's name as written in the experiment file (`batch_size`).
    pub field: &'static str,
    /// What is wrong, phrased to follow the name: "must be at least 1, not 0".
    pub message: String,
}

impl ConfigError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

/// `value` must be at least 1 (counts: epochs, batch size).
pub fn at_least_one(field: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be at least 1, not 0"));
    }
    Ok(())
}

/// `value` must be a finite number above zero (step sizes, epsilon). NaN and infinities fail.
pub fn positive(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigError::new(
            field,
            format!("must be a finite number above 0, not {value}"),
        ));
    }
    Ok(())
}

/// `value` must lie in `range`, written `shown` in the message ("[0, 1)"). NaN never does.
pub fn within(
    field: &'static str,
    value: f64,
    range: impl RangeBounds<f64>,
    shown: &str,
) -> Result<(), ConfigError> {
    if !range.contains(&value) {
        return Err(ConfigError::new(
            field,
            format!("must be in {shown}, not {value}"),
        ));
    }
    Ok(())
}

/// A path the experiment file names must be relative to the data root and stay under it: not
/// absolute, no `..`, not empty. The load stage's sources follow the same rule.
pub fn data_path(field: &'static str, path: &str) -> Result<(), ConfigError> {
    let inside = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || !inside {
        return Err(ConfigError::new(
            field,
            format!(
                "must be a path relative to the data root without `..`, not {path:?}; \
                 put the file under the data root"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_their_range_and_nan_are_refused_by_name() {
        assert_eq!(at_least_one("epochs", 1), Ok(()));
        assert_eq!(
            at_least_one("epochs", 0).unwrap_err().to_string(),
            "`epochs` must be at least 1, not 0"
        );
        assert_eq!(positive("learning_rate", 1e-3), Ok(()));
        for bad in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
            let e = positive("learning_rate", bad).unwrap_err();
            assert_eq!(e.field, "learning_rate");
            assert_eq!(
                e.message,
                format!("must be a finite number above 0, not {bad}")
            );
        }
        assert_eq!(within("beta1", 0.0, 0.0..1.0, "[0, 1)"), Ok(()));
        for bad in [1.0, -0.1, f64::NAN, f64::NEG_INFINITY] {
            let e = within("beta1", bad, 0.0..1.0, "[0, 1)").unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("`beta1` must be in [0, 1), not {bad}")
            );
        }
        assert_eq!(within("threshold", 1.0, 0.0..=1.0, "[0, 1]"), Ok(()));
    }

    #[test]
    fn data_paths_stay_under_the_data_root() {
        for good in ["w.safetensors", "weights/vgg16.safetensors", "./a/b"] {
            assert_eq!(data_path("weights", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../w.safetensors",
            "weights/../../w.safetensors",
            "a/..",
        ] {
            let e = data_path("weights", bad).unwrap_err();
            assert_eq!(e.field, "weights", "{bad}");
            assert!(e.message.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
