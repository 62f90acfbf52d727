//! Parameter sweeps: a grid or a seeded random search over an experiment's parameters. Every
//! point is an ordinary run with the point's values as `--set` overrides, so `diff`, `verify`
//! and `lock` work on points as on any run; the cache's per-key locks make points that share
//! a stage compute it once.
//!
//! This module holds what a sweep is (its axes, points, id and goal), how its points are
//! planned together (which stages all points share, which are new, what is cached) and its
//! table (`artifacts/sweeps/ID/table.json` and `table.csv`), which also lets a rerun resume.
//! The binary runs the points and draws the table.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::experiment::{Experiment, Override};
use crate::hash::FieldHasher;
use crate::plan::{PlanState, StagePlan};

/// Version of the table's layout.
pub const TABLE_FORMAT: u32 = 1;

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

/// A sweep's id: the experiment's name and a digest of what defines the sweep (the
/// experiment file, the overrides common to every point, every point's values), so that
/// running the same sweep again finds the same directory and resumes.
pub fn sweep_id(exp: &Experiment, base_overrides: &[String], points: &[Point]) -> String {
    let mut h = FieldHasher::new("pipeline.sweep");
    h.str(&exp.name).digest(&exp.digest);
    h.u64(base_overrides.len() as u64);
    for o in base_overrides {
        h.str(o);
    }
    h.u64(points.len() as u64);
    for p in points {
        h.u64(p.values.len() as u64);
        for v in &p.values {
            h.str(&v.key).value(&v.value);
        }
    }
    let name: String = exp
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{name}-{}", &h.finish().to_hex()[..8])
}

/// Where a point's run stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub point: Point,
    pub status: PointStatus,
    /// The point's run, once it has one.
    pub run: Option<String>,
    pub error: Option<String>,
    /// The point's log, relative to the sweep's directory.
    pub log: String,
    pub duration_s: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// A sweep's table: `table.json` (this, whole) and `table.csv` (one row per point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepTable {
    pub format: u32,
    pub id: String,
    pub experiment: String,
    pub experiment_path: String,
    /// `--set` overrides every point shares.
    pub base_overrides: Vec<String>,
    pub search: String,
    /// The swept keys, in order.
    pub keys: Vec<String>,
    pub goal: Option<Goal>,
    /// The experiment's headline metrics, which lead the metric columns (empty: the
    /// default order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headline: Vec<String>,
    pub points: Vec<PointRecord>,
    pub updated: String,
}

impl SweepTable {
    pub fn new(
        id: &str,
        exp: &Experiment,
        base_overrides: &[String],
        spec: &SweepSpec,
        points: &[Point],
        goal: Option<Goal>,
    ) -> SweepTable {
        let width = points.len().to_string().len().max(2);
        SweepTable {
            format: TABLE_FORMAT,
            id: id.to_string(),
            experiment: exp.name.clone(),
            experiment_path: exp.path.display().to_string(),
            base_overrides: base_overrides.to_vec(),
            search: spec.describe(points.len()),
            keys: spec.keys(),
            goal,
            headline: exp.headline.clone(),
            points: points
                .iter()
                .map(|p| PointRecord {
                    point: p.clone(),
                    status: PointStatus::Pending,
                    run: None,
                    error: None,
                    log: format!("logs/{:0width$}.log", p.index),
                    duration_s: None,
                    metrics: BTreeMap::new(),
                })
                .collect(),
            updated: now(),
        }
    }

    /// The succeeded point with the best value of the goal's metric.
    pub fn best(&self) -> Option<&PointRecord> {
        let goal = self.goal.as_ref()?;
        self.points
            .iter()
            .filter(|p| p.status == PointStatus::Succeeded)
            .filter_map(|p| p.metrics.get(&goal.metric).map(|v| (p, *v)))
            .filter(|(_, v)| v.is_finite())
            .fold(
                None,
                |best: Option<(&PointRecord, f64)>, (p, v)| match best {
                    Some((_, b)) if !goal.better(v, b) => best,
                    _ => Some((p, v)),
                },
            )
            .map(|(p, _)| p)
    }

    /// Every metric any point has, in display order (headline metrics first).
    pub fn metric_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.points.iter().flat_map(|p| p.metrics.keys()).collect();
        let headline = (!self.headline.is_empty()).then_some(self.headline.as_slice());
        crate::query::metric_order(names, headline)
    }

    pub fn read(dir: &Path) -> Option<SweepTable> {
        let bytes = fs::read(dir.join("table.json")).ok()?;
        serde_json::from_slice::<SweepTable>(&bytes)
            .ok()
            .filter(|t| t.format == TABLE_FORMAT)
    }

    /// Writes `table.json` and `table.csv`, each atomically.
    pub fn write(&mut self, dir: &Path) -> std::io::Result<()> {
        self.updated = now();
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(&dir.join("table.json"), &json)?;
        write_atomically(&dir.join("table.csv"), self.csv().as_bytes())
    }

    /// One row per point: point, the swept values, status, run, the metrics, error, log.
    pub fn csv(&self) -> String {
        let metrics = self.metric_names();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["point".to_string()];
        header.extend(self.keys.iter().cloned());
        header.extend(["status", "run", "duration_s"].map(String::from));
        header.extend(metrics.iter().cloned());
        header.extend(["error", "log"].map(String::from));
        rows.push(header);
        for p in &self.points {
            let mut row = vec![p.point.index.to_string()];
            for key in &self.keys {
                row.push(
                    p.point
                        .values
                        .iter()
                        .find(|v| &v.key == key)
                        .map_or(String::new(), |v| value_text(&v.value)),
                );
            }
            row.push(
                match p.status {
                    PointStatus::Pending => "pending",
                    PointStatus::Succeeded => "succeeded",
                    PointStatus::Failed => "failed",
                }
                .to_string(),
            );
            row.push(p.run.clone().unwrap_or_default());
            row.push(p.duration_s.map_or(String::new(), |d| format!("{d:.3}")));
            for m in &metrics {
                row.push(p.metrics.get(m).map_or(String::new(), |v| format!("{v}")));
            }
            row.push(p.error.clone().unwrap_or_default());
            row.push(p.log.clone());
            rows.push(row);
        }
        rows.iter()
            .map(|r| r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","))
            .map(|line| line + "\n")
            .collect()
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes under a temporary name, then renames: a reader sees the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.{}.tmp",
        path.extension()
            .map_or(String::new(), |e| e.to_string_lossy().into_owned()),
        std::process::id()
    ));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The directory of sweep `id` in the store at `artifacts`.
pub fn sweep_dir(artifacts: &Path, id: &str) -> PathBuf {
    artifacts.join("sweeps").join(id)
}

/// Calls `work` on every item on `jobs` threads, each taking the next item when it is free,
/// until `stop` says so (items already taken finish; the rest are never started).
pub fn run_queue<T: Sync>(
    items: &[T],
    jobs: usize,
    stop: impl Fn() -> bool + Sync,
    work: impl Fn(&T) + Sync,
) {
    let next = AtomicUsize::new(0);
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if stop() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                match items.get(i) {
                    Some(item) => work(item),
                    None => break,
                }
            });
        }
    });
}

/// One stage across the points of a sweep's dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct StageAcross {
    pub stage: String,
    /// Distinct computations among the points (equal plan keys are one computation).
    pub distinct: usize,
    /// How many points have this stage (all, unless some fail validation).
    pub points: usize,
    pub cached: usize,
    /// Cached for predicted inputs (see [`PlanState::Expected`]).
    pub expected: usize,
    pub to_run: usize,
    /// Sum of the estimates of the computations to run, and how many have none.
    pub estimate_s: f64,
    pub unestimated: usize,
    /// Why cached results are expected, when some are.
    pub note: Option<String>,
}

/// Groups the plans of every point by stage: how many distinct computations each stage
/// needs, and how many of them are cached, expected or to run.
pub fn across_points(plans: &[Vec<StagePlan>]) -> Vec<StageAcross> {
    let mut order: Vec<String> = Vec::new();
    let mut by_stage: BTreeMap<String, BTreeMap<String, &StagePlan>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for plan in plans {
        for s in plan {
            if !order.contains(&s.name) {
                order.push(s.name.clone());
            }
            by_stage
                .entry(s.name.clone())
                .or_default()
                .entry(s.plan_key.clone())
                .or_insert(s);
            *counts.entry(s.name.clone()).or_default() += 1;
        }
    }
    order
        .into_iter()
        .map(|stage| {
            let distinct = &by_stage[&stage];
            let mut a = StageAcross {
                stage: stage.clone(),
                distinct: distinct.len(),
                points: counts[&stage],
                cached: 0,
                expected: 0,
                to_run: 0,
                estimate_s: 0.0,
                unestimated: 0,
                note: None,
            };
            for s in distinct.values() {
                match s.state {
                    // A remote result is downloaded, not computed.
                    PlanState::Cached | PlanState::Remote => a.cached += 1,
                    PlanState::Expected => {
                        a.expected += 1;
                        a.note = s.reasons.first().cloned();
                    }
                    PlanState::Runs => {
                        a.to_run += 1;
                        match s.estimate_s {
                            Some(e) => a.estimate_s += e,
                            None => a.unestimated += 1,
                        }
                    }
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(key: &str, values: &[i64]) -> Axis {
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

    #[test]
    fn goals_parse_and_the_best_point_follows_them() {
        assert_eq!(
            Goal::parse("evaluate.roc_auc").expect("goal"),
            Goal {
                metric: "evaluate.roc_auc".into(),
                maximize: true
            }
        );
        assert!(!Goal::parse("train.final_loss:min").expect("goal").maximize);
        assert!(Goal::parse("x:best").is_err());
        let spec = SweepSpec {
            grid: vec![axis("a.x", &[1, 2, 3])],
            ..SweepSpec::default()
        };
        let points = spec.points().expect("points");
        let exp_text = "name = \"e\"\n[stages.s]\nkind = \"k\"\n";
        let exp = Experiment {
            path: "e.toml".into(),
            text: exp_text.into(),
            digest: blake3::hash(exp_text.as_bytes()),
            name: "e".into(),
            description: String::new(),
            seed: 0,
            stages: vec![],
            overrides: vec![],
            sweep: None,
            caveats: vec![],
            headline: vec![],
        };
        let mut table =
            SweepTable::new("e-1", &exp, &[], &spec, &points, Goal::parse("m:min").ok());
        for (i, v) in [(0, 0.5), (1, 0.2), (2, f64::NAN)] {
            table.points[i].status = PointStatus::Succeeded;
            table.points[i].metrics.insert("m".into(), v);
        }
        assert_eq!(table.best().map(|p| p.point.index), Some(2));
        table.goal = Goal::parse("m:max").ok();
        assert_eq!(table.best().map(|p| p.point.index), Some(1));
        let csv = table.csv();
        assert!(
            csv.starts_with("point,a.x,status,run,duration_s,m,error,log\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\n2,2,succeeded,,,0.2,,logs/02.log\n"),
            "{csv}"
        );

        // The experiment's headline metrics lead, each with its other evaluation sets.
        for name in [
            "evaluate.accuracy",
            "external.roc_auc",
            "evaluate.roc_auc",
            "x.zeta",
        ] {
            table.points[0].metrics.insert(name.into(), 1.0);
        }
        table.headline = vec!["roc_auc".into()];
        assert_eq!(
            table.metric_names(),
            [
                "evaluate.roc_auc",
                "external.roc_auc",
                "evaluate.accuracy",
                "m",
                "x.zeta"
            ]
        );
    }

    #[test]
    fn the_id_follows_the_definition() {
        let text = "name = \"my exp\"\n";
        let exp = Experiment {
            path: "e.toml".into(),
            text: text.into(),
            digest: blake3::hash(text.as_bytes()),
            name: "my exp".into(),
            description: String::new(),
            seed: 0,
            stages: vec![],
            overrides: vec![],
            sweep: None,
            caveats: vec![],
            headline: vec![],
        };
        let spec = SweepSpec {
            grid: vec![axis("a.x", &[1, 2])],
            ..SweepSpec::default()
        };
        let points = spec.points().expect("points");
        let id = sweep_id(&exp, &[], &points);
        assert!(
            id.starts_with("my_exp-") && id.len() == "my_exp-".len() + 8,
            "{id}"
        );
        assert_eq!(id, sweep_id(&exp, &[], &points));
        assert_ne!(id, sweep_id(&exp, &["b.y=1".into()], &points));
        assert_ne!(id, sweep_id(&exp, &[], &points[..1]));
    }

    #[test]
    fn the_queue_gives_every_item_to_exactly_one_worker() {
        let items: Vec<usize> = (0..100).collect();
        let done = std::sync::Mutex::new(Vec::new());
        run_queue(&items, 3, || false, |i| done.lock().expect("lock").push(*i));
        let mut done = done.into_inner().expect("lock");
        done.sort();
        assert_eq!(done, items);
    }

    #[test]
    fn a_stopped_queue_finishes_what_it_took_and_starts_nothing_more() {
        let items: Vec<usize> = (0..100).collect();
        let done = std::sync::Mutex::new(Vec::new());
        let stop = std::sync::atomic::AtomicBool::new(false);
        run_queue(
            &items,
            2,
            || stop.load(Ordering::SeqCst),
            |i| {
                done.lock().expect("lock").push(*i);
                if *i == 9 {
                    stop.store(true, Ordering::SeqCst);
                }
            },
        );
        let done = done.into_inner().expect("lock");
        assert!(done.contains(&9));
        // Item 9 stops the queue; the other worker may have taken one more item meanwhile.
        assert!(done.len() <= 11, "{} items ran", done.len());
    }
}
