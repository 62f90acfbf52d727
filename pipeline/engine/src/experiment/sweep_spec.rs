//! What a sweep is, as data: its grid axes, ranges and random search, its goal, and the
//! points they make. It comes from the command line (`--grid`, `--range`) or from an
//! experiment's `[sweep]` table (read by `sweep_table.rs`); the `sweep` layer plans and runs
//! the points and keeps their table.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Override;

/// One swept parameter and the values it takes (a grid axis, or choices in a random search).
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// `stage.param`, or `seed`.
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// A parameter drawn from an interval in a random search.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub key: String,
    pub min: f64,
    pub max: f64,
    /// Drawn uniformly in the logarithm (learning rates), not in the value.
    pub log: bool,
    /// Both bounds were written as integers: draws are integers.
    pub integer: bool,
}

/// A seeded random search: `count` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Random {
    pub count: usize,
    pub seed: u64,
}

/// The metric a sweep optimizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub metric: String,
    pub maximize: bool,
}

impl Goal {
    /// `evaluate.roc_auc`, `evaluate.roc_auc:max` or `train.final_loss:min`.
    pub fn parse(text: &str) -> Result<Goal, String> {
        let (metric, direction) = match text.rsplit_once(':') {
            Some((m, d)) => (m.trim(), d.trim()),
            None => (text.trim(), "max"),
        };
        let maximize = match direction {
            "max" => true,
            "min" => false,
            other => {
                return Err(format!(
                    "metric {text:?}: `{other}` is not a goal; write METRIC:max or METRIC:min"
                ))
            }
        };
        if metric.is_empty() {
            return Err(format!(
                "metric {text:?}: name a metric, e.g. evaluate.roc_auc:max"
            ));
        }
        Ok(Goal {
            metric: metric.to_string(),
            maximize,
        })
    }

    /// Whether `a` is better than `b` under this goal.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize {
            a > b
        } else {
            a < b
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = if self.maximize { "max" } else { "min" };
        write!(f, "{}:{d}", self.metric)
    }
}

/// What to sweep: from the command line or an experiment's `[sweep]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepSpec {
    pub grid: Vec<Axis>,
    pub ranges: Vec<Range>,
    pub random: Option<Random>,
    pub metric: Option<Goal>,
    pub jobs: Option<usize>,
}

/// One point: a value for each swept parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// 1-based.
    pub index: usize,
    pub values: Vec<PointValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointValue {
    pub key: String,
    pub value: toml::Value,
}

impl Point {
    /// The point's values as the `--set` overrides of its run.
    pub fn overrides(&self) -> Result<Vec<Override>, String> {
        self.values
            .iter()
            .map(|v| Override::parse(&format!("{}={}", v.key, v.value)))
            .collect()
    }

    /// `train.learning_rate=0.0003 model.units=64`.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|v| format!("{}={}", v.key, value_text(&v.value)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value as a person reads it: strings without quotes.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `--grid train.learning_rate=1e-4,3e-4,1e-3`: values read as TOML (`64`, `1e-3`, `true`),
/// or as plain strings when they are not valid TOML (`direct`).
pub fn parse_grid(text: &str) -> Result<Axis, String> {
    let (key, values) = text.split_once('=').ok_or_else(|| {
        format!("--grid {text}: expected STAGE.PARAM=V1,V2,... (e.g. train.batch_size=8,16)")
    })?;
    let key = key.trim();
    let mut parsed = Vec::new();
    for raw in values.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(format!("--grid {text}: an empty value"));
        }
        let o =
            Override::parse(&format!("{key}={raw}")).map_err(|e| format!("--grid {text}: {e}"))?;
        parsed.push(o.value);
    }
    check_key(key).map_err(|e| format!("--grid {text}: {e}"))?;
    Ok(Axis {
        key: key.to_string(),
        values: parsed,
    })
}

/// `--range train.learning_rate=1e-4..1e-2:log` (or without `:log`; integer bounds give
/// integer draws).
pub fn parse_range(text: &str) -> Result<Range, String> {
    let bad = || {
        format!(
            "--range {text}: expected STAGE.PARAM=MIN..MAX, or MIN..MAX:log for a log-uniform draw \
             (e.g. train.learning_rate=1e-4..1e-2:log)"
        )
    };
    let (key, spec) = text.split_once('=').ok_or_else(bad)?;
    let (bounds, log) = match spec.trim().strip_suffix(":log") {
        Some(b) => (b, true),
        None => (spec.trim(), false),
    };
    let (low, high) = bounds.split_once("..").ok_or_else(bad)?;
    let number = |s: &str| -> Result<(f64, bool), String> {
        let s = s.trim();
        if let Ok(i) = s.parse::<i64>() {
            return Ok((i as f64, true));
        }
        s.parse::<f64>().map(|f| (f, false)).map_err(|_| bad())
    };
    let (min, min_int) = number(low)?;
    let (max, max_int) = number(high)?;
    check_key(key.trim()).map_err(|e| format!("--range {text}: {e}"))?;
    let range = Range {
        key: key.trim().to_string(),
        min,
        max,
        log,
        integer: min_int && max_int,
    };
    range.check().map_err(|e| format!("--range {text}: {e}"))?;
    Ok(range)
}

impl Range {
    /// Bounds that can be drawn from.
    pub fn check(&self) -> Result<(), String> {
        if !(self.min.is_finite() && self.max.is_finite()) {
            return Err("the bounds must be finite numbers".into());
        }
        if self.min >= self.max {
            return Err(format!(
                "the lower bound {} must be below the upper bound {}",
                self.min, self.max
            ));
        }
        if self.log && self.min <= 0.0 {
            return Err(format!(
                "a log-uniform range needs a positive lower bound, not {}",
                self.min
            ));
        }
        Ok(())
    }

    fn draw(&self, rng: &mut SplitMix) -> toml::Value {
        let u = rng.unit();
        let x = if self.log {
            (self.min.ln() + u * (self.max.ln() - self.min.ln())).exp()
        } else {
            self.min + u * (self.max - self.min)
        };
        if self.integer {
            toml::Value::Integer(x.round().clamp(self.min, self.max) as i64)
        } else {
            toml::Value::Float(round_significant(x, 4))
        }
    }
}

/// `x` to `digits` significant digits: draws read as `0.0003478`, not 17 digits, and the
/// value a run records is the one its label shows.
fn round_significant(x: f64, digits: usize) -> f64 {
    format!("{x:.*e}", digits.saturating_sub(1))
        .parse()
        .unwrap_or(x)
}

fn check_key(key: &str) -> Result<(), String> {
    match key.split_once('.') {
        Some((stage, param)) if !stage.is_empty() && !param.is_empty() => Ok(()),
        None if key == "seed" => Ok(()),
        _ => Err(format!(
            "`{key}` should be STAGE.PARAM (or `seed`, the experiment's seed)"
        )),
    }
}

/// A seeded generator of our own (splitmix64): the same seed draws the same points with any
/// version of any crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// At most this many points: a grid beyond it is almost surely a typo.
pub const MAX_POINTS: usize = 10_000;

impl SweepSpec {
    /// Whether it sweeps anything.
    pub fn is_empty(&self) -> bool {
        self.grid.is_empty() && self.ranges.is_empty()
    }

    /// The swept keys, in the order given.
    pub fn keys(&self) -> Vec<String> {
        self.grid
            .iter()
            .map(|a| a.key.clone())
            .chain(self.ranges.iter().map(|r| r.key.clone()))
            .collect()
    }

    /// In words: `grid over 3 parameters (24 points)` or `random search (20 points, seed 1)`.
    pub fn describe(&self, points: usize) -> String {
        match self.random {
            Some(r) => format!("random search, {points} points, seed {}", r.seed),
            None => format!(
                "grid, {}",
                self.grid
                    .iter()
                    .map(|a| a.values.len().to_string())
                    .collect::<Vec<_>>()
                    .join(" x ")
            ),
        }
    }

    /// The points: every combination of a grid (the first axis varying slowest), or `count`
    /// distinct seeded draws (each grid axis a uniform choice, each range a uniform or
    /// log-uniform draw). A random search over few possibilities gives fewer points.
    pub fn points(&self) -> Result<Vec<Point>, String> {
        let mut keys = BTreeSet::new();
        for key in self.keys() {
            if !keys.insert(key.clone()) {
                return Err(format!("`{key}` is swept twice"));
            }
        }
        for axis in &self.grid {
            if axis.values.is_empty() {
                return Err(format!("`{}` has no values", axis.key));
            }
            // Values equal as parsed (`2,2`, or `1e-3,0.001`) would make identical points,
            // each run and counted as if it were another.
            let repeated = (1..axis.values.len())
                .find(|&i| axis.values[..i].contains(&axis.values[i]))
                .map(|i| &axis.values[i]);
            if let Some(value) = repeated {
                return Err(format!(
                    "`{}` takes the value {} twice (each value makes its own points: give it once)",
                    axis.key,
                    value_text(value)
                ));
            }
        }
        match self.random {
            None => {
                if !self.ranges.is_empty() {
                    return Err(format!(
                        "ranges ({}) are drawn from by a random search: add --random N (or \
                         `random = {{ count = N, seed = S }}` in [sweep])",
                        self.ranges
                            .iter()
                            .map(|r| r.key.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let count = self
                    .grid
                    .iter()
                    .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
                    .filter(|n| *n <= MAX_POINTS)
                    .ok_or_else(|| format!("the grid has more than {MAX_POINTS} points"))?;
                if self.grid.is_empty() {
                    return Ok(Vec::new());
                }
                Ok((0..count)
                    .map(|i| {
                        let mut rest = i;
                        let mut values = vec![None; self.grid.len()];
                        for (a, axis) in self.grid.iter().enumerate().rev() {
                            let n = axis.values.len();
                            values[a] = Some(PointValue {
                                key: axis.key.clone(),
                                value: axis.values[rest % n].clone(),
                            });
                            rest /= n;
                        }
                        Point {
                            index: i + 1,
                            values: values.into_iter().flatten().collect(),
                        }
                    })
                    .collect())
            }
            Some(Random { count, seed }) => {
                if count == 0 || count > MAX_POINTS {
                    return Err(format!(
                        "a random search needs between 1 and {MAX_POINTS} points, not {count}"
                    ));
                }
                let mut rng = SplitMix(seed);
                let mut seen = BTreeSet::new();
                let mut points = Vec::new();
                let mut draws = 0;
                while points.len() < count && draws < count * 50 {
                    draws += 1;
                    let mut values = Vec::new();
                    for axis in &self.grid {
                        values.push(PointValue {
                            key: axis.key.clone(),
                            value: axis.values[rng.below(axis.values.len())].clone(),
                        });
                    }
                    for range in &self.ranges {
                        values.push(PointValue {
                            key: range.key.clone(),
                            value: range.draw(&mut rng),
                        });
                    }
                    let point = Point {
                        index: points.len() + 1,
                        values,
                    };
                    if seen.insert(point.label()) {
                        points.push(point);
                    }
                }
                Ok(points)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn axis(key: &str, values: &[i64]) -> Axis {
        Axis {
            key: key.into(),
            values: values.iter().map(|v| toml::Value::Integer(*v)).collect(),
        }
    }

    #[test]
    fn a_grid_is_every_combination_first_axis_slowest() {
        let spec = SweepSpec {
            grid: vec![axis("a.x", &[1, 2]), axis("b.y", &[10, 20, 30])],
            ..SweepSpec::default()
        };
        let points = spec.points().expect("points");
        let labels: Vec<String> = points.iter().map(Point::label).collect();
        assert_eq!(
            labels,
            [
                "a.x=1 b.y=10",
                "a.x=1 b.y=20",
                "a.x=1 b.y=30",
                "a.x=2 b.y=10",
                "a.x=2 b.y=20",
                "a.x=2 b.y=30"
            ]
        );
        assert_eq!(points[5].index, 6);
        assert_eq!(spec.describe(6), "grid, 2 x 3");
    }

    #[test]
    fn a_value_listed_twice_on_an_axis_is_refused_naming_both() {
        for (grid, value) in [
            ("train.epochs=2,2", "2"),
            ("train.learning_rate=1e-3,0.001", "0.001"),
            ("model.conv=direct,winograd,direct", "direct"),
        ] {
            let spec = SweepSpec {
                grid: vec![axis("a.x", &[1, 2]), parse_grid(grid).expect("parses")],
                ..SweepSpec::default()
            };
            let err = spec.points().expect_err("a repeated value");
            let key = grid.split_once('=').map(|(k, _)| k).unwrap_or_default();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(value) && err.contains("twice"),
                "{grid}: {err}"
            );
        }
        // Values that differ as parsed are not repeats (an integer and a float, say).
        let spec = SweepSpec {
            grid: vec![parse_grid("train.epochs=2,2.0,\"2\"").expect("parses")],
            ..SweepSpec::default()
        };
        assert_eq!(spec.points().map(|p| p.len()), Ok(3));
    }

    #[test]
    fn grid_flags_parse_values_as_toml_or_text() {
        let a = parse_grid("train.learning_rate=1e-4, 3e-4,1e-3").expect("parses");
        assert_eq!(
            a.values,
            [1e-4, 3e-4, 1e-3].map(toml::Value::Float).to_vec()
        );
        let a = parse_grid("model.conv=direct,winograd").expect("parses");
        assert_eq!(a.values[1], toml::Value::String("winograd".into()));
        assert!(parse_grid("model.units").is_err());
        assert!(parse_grid("units=1,2").unwrap_err().contains("STAGE.PARAM"));
        assert!(parse_grid("model.units=1,,2").is_err());
        assert!(parse_grid("seed=1,2").is_ok());
    }

    #[test]
    fn ranges_parse_and_refuse_impossible_bounds() {
        let r = parse_range("train.learning_rate=1e-4..1e-2:log").expect("parses");
        assert!(r.log && !r.integer && r.min == 1e-4 && r.max == 1e-2);
        let r = parse_range("model.units=16..512").expect("parses");
        assert!(r.integer && !r.log);
        assert!(parse_range("x.y=1..1")
            .unwrap_err()
            .contains("must be below"));
        assert!(parse_range("x.y=0..1:log")
            .unwrap_err()
            .contains("positive lower bound"));
        assert!(parse_range("x.y=1-2").is_err());
    }

    #[test]
    fn random_search_is_seeded_distinct_and_within_bounds() {
        let spec = SweepSpec {
            grid: vec![axis("model.units", &[32, 64])],
            ranges: vec![parse_range("train.learning_rate=1e-4..1e-2:log").expect("range")],
            random: Some(Random { count: 20, seed: 7 }),
            ..SweepSpec::default()
        };
        let a = spec.points().expect("points");
        let b = spec.points().expect("points");
        assert_eq!(a, b, "the same seed draws the same points");
        assert_eq!(a.len(), 20);
        let labels: BTreeSet<String> = a.iter().map(Point::label).collect();
        assert_eq!(labels.len(), 20, "distinct");
        for p in &a {
            let lr = p.values[1].value.as_float().expect("float");
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            assert_eq!(lr, round_significant(lr, 4));
        }
        let other = SweepSpec {
            random: Some(Random { count: 20, seed: 8 }),
            ..spec.clone()
        };
        assert_ne!(other.points().expect("points"), a);
        // Few possibilities: fewer points than asked, each once.
        let small = SweepSpec {
            grid: vec![axis("model.units", &[32, 64])],
            random: Some(Random { count: 5, seed: 1 }),
            ..SweepSpec::default()
        };
        assert_eq!(small.points().expect("points").len(), 2);
    }

    #[test]
    fn ranges_need_a_random_search_and_keys_are_swept_once() {
        let spec = SweepSpec {
            ranges: vec![parse_range("x.y=1..2").expect("range")],
            ..SweepSpec::default()
        };
        assert!(spec.points().unwrap_err().contains("random search"));
        let twice = SweepSpec {
            grid: vec![axis("a.x", &[1]), axis("a.x", &[2])],
            ..SweepSpec::default()
        };
        assert!(twice.points().unwrap_err().contains("swept twice"));
    }
}
