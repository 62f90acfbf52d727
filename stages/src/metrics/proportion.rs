//! Proportions such as sensitivity and specificity, with Wilson score intervals.

/// The standard normal quantile for a two-sided 95 % interval, `Φ⁻¹(0.975)`.
pub const Z_95: f64 = 1.959963984540054;

/// `successes` out of `trials`, e.g. sensitivity = true positives out of all COVID images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

/// A closed interval `[low, high]` within `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Proportion {
    /// `successes / trials`; `None` when there were no trials (e.g. sensitivity on a test set
    /// without COVID images), rather than a division by zero.
    pub fn value(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// The Wilson score interval at normal quantile `z` (use [`Z_95`] for 95 %).
    ///
    /// Chosen over the normal ("Wald") interval because it stays inside `[0, 1]` and does not
    /// collapse to a point at 0 % or 100 %, which is exactly where a small, nearly perfect
    /// test set like the seed's 54 of 55 lands. With `p = k/n`:
    /// `(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)`. `None` when there were no trials.
    pub fn wilson(&self, z: f64) -> Option<Interval> {
        let p = self.value()?;
        let n = self.trials as f64;
        let z2 = z * z;
        let denominator = 1.0 + z2 / n;
        let centre = (p + z2 / (2.0 * n)) / denominator;
        let half_width = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        // Rounding can push a bound a hair past 0 or 1 when p is 0 or 1.
        Some(Interval {
            low: (centre - half_width).clamp(0.0, 1.0),
            high: (centre + half_width).clamp(0.0, 1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn eight_of_ten_by_hand() {
        // p = 0.8, z² = 3.841458820694124, z²/n = 0.3841458820694124.
        // centre = (0.8 + 0.1920729410347062) / 1.3841458820694124 = 0.7167401600411333
        // half   = z / 1.3841458820694124 · √(0.016 + 0.00960364705173531) = 0.2265776885044915
        // Published tables give [0.490, 0.943].
        let ci = Proportion {
            successes: 8,
            trials: 10,
        }
        .wilson(Z_95)
        .unwrap();
        assert!(close(ci.low, 0.490_162_471_536_641_8), "{ci:?}");
        assert!(close(ci.high, 0.943_317_848_545_624_8), "{ci:?}");
    }

    #[test]
    fn fifty_four_of_fifty_five() {
        let p = Proportion {
            successes: 54,
            trials: 55,
        };
        assert!(close(p.value().unwrap(), 0.981_818_181_818_181_8));
        let ci = p.wilson(Z_95).unwrap();
        assert!(close(ci.low, 0.903_942_239_378_376), "{ci:?}");
        assert!(close(ci.high, 0.996_783_219_545_158_9), "{ci:?}");
    }

    #[test]
    fn extremes_stay_in_the_unit_interval() {
        let all = Proportion {
            successes: 22,
            trials: 22,
        }
        .wilson(Z_95)
        .unwrap();
        assert!(close(all.low, 0.851_345_125_391_379_1), "{all:?}");
        assert_eq!(all.high, 1.0);
        let none = Proportion {
            successes: 0,
            trials: 5,
        }
        .wilson(Z_95)
        .unwrap();
        assert_eq!(none.low, 0.0);
        assert!(close(none.high, 0.434_482_464_783_174_77), "{none:?}");
    }

    #[test]
    fn no_trials_is_undefined_not_a_panic() {
        let p = Proportion {
            successes: 0,
            trials: 0,
        };
        assert_eq!(p.value(), None);
        assert_eq!(p.wilson(Z_95), None);
    }
}
