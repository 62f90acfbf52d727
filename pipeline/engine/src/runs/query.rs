//! Questions over recorded runs: `--where` filters, `--sort` keys, which parameters differ
//! among runs, and the order in which metrics are shown (headline metrics first).
//!
//! A key names a metric (`evaluate.roc_auc`), a parameter (`train.learning_rate`, `seed`) or
//! one of the run's own fields (`id`, `name`, `experiment`, `status`, `started`,
//! `duration`). A metric and a parameter of the same name (`evaluate.threshold`) hold the
//! same value; the metric is the one read.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::diagnostic::closest;
use crate::runs::index::RunSummary;

/// Metrics shown first when the experiment names none, in this order.
pub const DEFAULT_HEADLINE: [&str; 4] = [
    "evaluate.test_accuracy",
    "evaluate.sensitivity",
    "evaluate.specificity",
    "evaluate.roc_auc",
];

/// The run's own fields a key may name.
pub const RUN_FIELDS: [&str; 6] = ["id", "name", "experiment", "status", "started", "duration"];

/// Metric names in display order: the headline metrics (`headline`, the experiment's list
/// when it declares one, else [`DEFAULT_HEADLINE`]) that are present, in that order, then the
/// rest alphabetically. The one place that decides the order of metric columns.
pub fn metric_order<'a, S: AsRef<str> + ?Sized + 'a>(
    names: impl IntoIterator<Item = &'a S>,
    headline: Option<&[String]>,
) -> Vec<String> {
    let present: BTreeSet<&str> = names.into_iter().map(AsRef::as_ref).collect();
    let declared: Vec<String> = match headline {
        Some(list) => list.to_vec(),
        None => DEFAULT_HEADLINE.iter().map(|s| s.to_string()).collect(),
    };
    // Each headline metric is followed by the same metric of the other evaluation sets
    // (`evaluate.sensitivity`, then `external.sensitivity`), so that sets sit side by side.
    let mut out: Vec<String> = Vec::new();
    for m in declared {
        let metric = m.split_once('.').map_or(m.as_str(), |(_, metric)| metric);
        let same_metric = present
            .iter()
            .filter(|p| p.split_once('.').is_some_and(|(_, x)| x == metric) && **p != m);
        let mut group: Vec<String> = present
            .contains(m.as_str())
            .then(|| m.clone())
            .into_iter()
            .collect();
        group.extend(same_metric.map(|p| p.to_string()));
        for name in group {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    for name in present {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The distinct metric names among `runs`, for [`metric_order`]. Runs of one experiment
/// mostly have the same names, and runs read from the index share them: a run whose names
/// are the previous run's, by address, adds nothing and costs no string comparisons.
pub fn metric_names<'a>(runs: impl IntoIterator<Item = &'a RunSummary>) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    let mut previous: Option<&RunSummary> = None;
    for run in runs {
        let same = previous.is_some_and(|p| {
            p.metrics.len() == run.metrics.len()
                && p.metrics
                    .keys()
                    .zip(run.metrics.keys())
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        if !same {
            names.extend(run.metrics.keys().map(|k| &**k));
        }
        previous = Some(run);
    }
    names
}

/// A value of a run under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

impl Value {
    /// A value as written in a filter or a parameter: a number when it reads as one.
    pub fn parse(text: &str) -> Value {
        let t = text.trim();
        match t.parse::<f64>() {
            Ok(n) if !t.is_empty() => Value::Number(n),
            _ => Value::Text(unquote(t).to_string()),
        }
    }

    fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Text(b)) => Some(format_number(*a).as_str().cmp(b)),
            (Value::Text(a), Value::Number(b)) => Some(a.as_str().cmp(&format_number(*b))),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => f.write_str(&format_number(*n)),
            Value::Text(t) => f.write_str(t),
        }
    }
}

fn format_number(n: f64) -> String {
    format!("{n}")
}

/// A TOML string's text without its quotes; anything else as written.
pub fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// The value of `key` for a run: a run field, a metric, then a parameter.
pub fn value_of(run: &RunSummary, key: &str) -> Option<Value> {
    match key {
        "id" => return Some(Value::Text(run.id.clone())),
        "name" => return run.name.clone().map(Value::Text),
        "experiment" => return Some(Value::Text(run.experiment.to_string())),
        "status" => return Some(Value::Text(run.status_label().to_string())),
        "started" => return Some(Value::Text(run.started.clone())),
        "duration" => return run.duration_s.map(Value::Number),
        _ => {}
    }
    if let Some(v) = run.metrics.get(key) {
        return Some(Value::Number(*v));
    }
    run.params.get(key).map(|text| Value::parse(text))
}

/// Whether any of `runs` has a value under `key`; when none has, the closest key that some
/// run has, for the error message.
pub fn check_key(runs: &[RunSummary], key: &str) -> Result<(), String> {
    if RUN_FIELDS.contains(&key) || runs.iter().any(|r| value_of(r, key).is_some()) {
        return Ok(());
    }
    let known: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.metrics.keys().chain(r.params.keys()).map(|k| &**k))
        .chain(RUN_FIELDS)
        .collect();
    let hint = match closest(key, known.iter().copied()) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => String::new(),
    };
    Err(format!(
        "no run has a metric or parameter `{key}`{hint} (`pipeline show RUN` lists a run's)"
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "=",
            Comparison::NotEqual => "!=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Less => ordering == Ordering::Less,
            Comparison::LessOrEqual => ordering != Ordering::Greater,
            Comparison::Greater => ordering == Ordering::Greater,
            Comparison::GreaterOrEqual => ordering != Ordering::Less,
            Comparison::Equal => ordering == Ordering::Equal,
            Comparison::NotEqual => ordering != Ordering::Equal,
        }
    }
}

/// A `--where` condition: `KEY OP VALUE` with OP one of `<`, `<=`, `>`, `>=`, `=` (or `==`),
/// `!=`. Numbers compare as numbers, anything else as text; a run without the key never
/// matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub key: String,
    pub comparison: Comparison,
    pub value: Value,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let bad = || {
            format!(
                "--where {text:?}: expected KEY OP VALUE, e.g. `evaluate.roc_auc>0.9` or \
                 `model.units=64` (OP: < <= > >= = !=)"
            )
        };
        let at = text.find(['<', '>', '=', '!']).ok_or_else(bad)?;
        let (key, rest) = text.split_at(at);
        let (comparison, value) = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("!=", Comparison::NotEqual),
            ("==", Comparison::Equal),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
            ("=", Comparison::Equal),
        ]
        .iter()
        .find_map(|(symbol, c)| rest.strip_prefix(symbol).map(|v| (*c, v)))
        .ok_or_else(bad)?;
        let key = key.trim();
        let value = value.trim();
        if key.is_empty() || value.is_empty() {
            return Err(bad());
        }
        Ok(Filter {
            key: key.to_string(),
            comparison,
            value: Value::parse(value),
        })
    }

    pub fn matches(&self, run: &RunSummary) -> bool {
        value_of(run, &self.key)
            .and_then(|v| v.compare(&self.value))
            .is_some_and(|o| self.comparison.holds(o))
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.key, self.comparison.symbol(), self.value)
    }
}

/// A `--sort` key: `KEY`, `KEY:asc` or `KEY:desc` (also `:min` and `:max`, as a sweep's goal
/// is written). Runs without the key come last either way.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub key: String,
    pub descending: bool,
}

impl SortKey {
    pub fn parse(text: &str) -> Result<SortKey, String> {
        let (key, direction) = match text.rsplit_once(':') {
            Some((k, d)) => (k, Some(d)),
            None => (text, None),
        };
        let descending = match direction {
            None | Some("asc") | Some("min") => false,
            Some("desc") | Some("max") => true,
            Some(other) => {
                return Err(format!(
                    "--sort {text}: `{other}` is not a direction; write KEY, KEY:asc or KEY:desc"
                ))
            }
        };
        if key.trim().is_empty() {
            return Err(format!("--sort {text}: expected KEY, KEY:asc or KEY:desc"));
        }
        Ok(SortKey {
            key: key.trim().to_string(),
            descending,
        })
    }

    /// Sorts runs by this key, keeping the given order among equal values. Each run's value
    /// is looked up (and a parameter's text read as a number) once, not once per comparison.
    pub fn sort(&self, runs: &mut Vec<RunSummary>) {
        let mut keyed: Vec<(Option<Value>, RunSummary)> = runs
            .drain(..)
            .map(|r| (value_of(&r, &self.key), r))
            .collect();
        keyed.sort_by(|(a, _), (b, _)| match (a, b) {
            (Some(x), Some(y)) => {
                let o = x.compare(y).unwrap_or(Ordering::Equal);
                if self.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        });
        runs.extend(keyed.into_iter().map(|(_, r)| r));
    }
}

/// The parameters whose values are not the same in every one of `runs` (missing counts as a
/// value), ordered as the first run ran its stages (`seed` first).
pub fn differing_params(runs: &[&RunSummary]) -> Vec<String> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    // A parameter differs when some run's value is not the first run's. Both maps are in
    // name order, so one walk through the pair finds them; runs read from the index share
    // their strings, so most names and values compare equal by address.
    let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
    let mut differing: BTreeSet<&str> = BTreeSet::new();
    for run in &runs[1..] {
        let mut mine = first.params.iter().peekable();
        let mut theirs = run.params.iter().peekable();
        loop {
            match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some((k, _)), None) => {
                    differing.insert(k);
                    mine.next();
                }
                (None, Some((k, _))) => {
                    differing.insert(k);
                    theirs.next();
                }
                (Some((a, va)), Some((b, vb))) => {
                    let order = if Arc::ptr_eq(a, b) {
                        Ordering::Equal
                    } else {
                        a.cmp(b)
                    };
                    match order {
                        Ordering::Equal => {
                            if !same(va, vb) {
                                differing.insert(a);
                            }
                            mine.next();
                            theirs.next();
                        }
                        Ordering::Less => {
                            differing.insert(a);
                            mine.next();
                        }
                        Ordering::Greater => {
                            differing.insert(b);
                            theirs.next();
                        }
                    }
                }
            }
        }
    }
    let mut differing: Vec<String> = differing.into_iter().map(str::to_string).collect();
    let position = |key: &str| -> usize {
        let stage = key.split_once('.').map_or("", |(s, _)| s);
        if stage.is_empty() {
            return 0;
        }
        runs.iter()
            .find_map(|r| r.stages.iter().position(|s| &*s.name == stage))
            .map_or(usize::MAX, |p| p + 1)
    };
    differing.sort_by_key(|k| position(k));
    differing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::index::StageBrief;
    use crate::runs::record::CacheUse;
    use crate::runs::record::RunStatus;

    fn run(id: &str, params: &[(&str, &str)], metrics: &[(&str, f64)]) -> RunSummary {
        RunSummary {
            id: id.into(),
            name: None,
            status: RunStatus::Succeeded,
            pid: 1,
            started: id.into(),
            duration_s: Some(1.0),
            error: None,
            failed_stage: None,
            experiment: "exp".into(),
            experiment_path: "exp.toml".into(),
            overrides: vec![],
            params: params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            metrics: metrics.iter().map(|(k, v)| ((*k).into(), *v)).collect(),
            stages: ["load", "train", "evaluate"]
                .iter()
                .map(|s| StageBrief {
                    name: (*s).into(),
                    kind: (*s).into(),
                    key: "".into(),
                    cache: CacheUse::Miss,
                    duration_s: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn headline_metrics_come_first_in_their_order_then_the_rest_alphabetically() {
        let names: Vec<String> = [
            "evaluate.f1_covid",
            "evaluate.roc_auc",
            "evaluate.false_negatives",
            "evaluate.test_accuracy",
            "train.final_loss",
            "evaluate.sensitivity",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            metric_order(&names, None),
            [
                "evaluate.test_accuracy",
                "evaluate.sensitivity",
                "evaluate.roc_auc",
                "evaluate.f1_covid",
                "evaluate.false_negatives",
                "train.final_loss"
            ]
        );
        let with_external: Vec<String> = names
            .iter()
            .cloned()
            .chain([
                "external.sensitivity".to_string(),
                "external.f1_covid".to_string(),
            ])
            .collect();
        assert_eq!(
            metric_order(&with_external, None)[..4],
            [
                "evaluate.test_accuracy",
                "evaluate.sensitivity",
                "external.sensitivity",
                "evaluate.roc_auc",
            ],
            "each evaluation set's value follows the headline metric"
        );
        let declared = vec!["train.final_loss".to_string(), "nope.x".to_string()];
        assert_eq!(metric_order(&names, Some(&declared))[0], "train.final_loss");
    }

    #[test]
    fn metric_names_are_every_name_of_every_run_once() {
        let a = run("a", &[], &[("evaluate.roc_auc", 0.9), ("train.loss", 0.1)]);
        let mut b = a.clone();
        b.id = "b".into();
        let c = run(
            "c",
            &[],
            &[("evaluate.roc_auc", 0.8), ("external.roc_auc", 0.7)],
        );
        let d = run("d", &[], &[]);
        let names = metric_names([&a, &b, &c, &d, &a]);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["evaluate.roc_auc", "external.roc_auc", "train.loss"]
        );
        assert!(metric_names([] as [&RunSummary; 0]).is_empty());
    }

    #[test]
    fn filters_compare_numbers_as_numbers_and_text_as_text() {
        let a = run(
            "a",
            &[
                ("train.learning_rate", "0.001"),
                ("model.conv", "\"winograd\""),
            ],
            &[("evaluate.roc_auc", 0.95)],
        );
        let b = run(
            "b",
            &[
                ("train.learning_rate", "0.0003"),
                ("model.conv", "\"direct\""),
            ],
            &[("evaluate.roc_auc", 0.85)],
        );
        let f = Filter::parse("evaluate.roc_auc>0.9").expect("parses");
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filter::parse("train.learning_rate <= 3e-4").expect("parses");
        assert!(!f.matches(&a) && f.matches(&b), "1e-3 > 3e-4 as numbers");
        let f = Filter::parse("model.conv=winograd").expect("parses");
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filter::parse("model.conv!=\"winograd\"").expect("parses");
        assert!(!f.matches(&a) && f.matches(&b));
        let f = Filter::parse("status==succeeded").expect("parses");
        assert!(f.matches(&a));
        let f = Filter::parse("evaluate.missing>0").expect("parses");
        assert!(!f.matches(&a), "a run without the key does not match");
        for bad in ["roc_auc", ">0.9", "x>", "x=>1"] {
            let parsed = Filter::parse(bad);
            assert!(
                parsed.is_err() || bad == "x=>1",
                "{bad:?} should be refused: {parsed:?}"
            );
        }
        assert!(Filter::parse("x=>1").is_ok_and(|f| f.value == Value::Text(">1".into())));
    }

    #[test]
    fn unknown_keys_get_the_closest_known_one() {
        let runs = vec![run("a", &[], &[("evaluate.roc_auc", 0.9)])];
        assert!(check_key(&runs, "evaluate.roc_auc").is_ok());
        assert!(check_key(&runs, "duration").is_ok());
        let e = check_key(&runs, "evaluate.roc_aux").unwrap_err();
        assert!(e.contains("did you mean `evaluate.roc_auc`?"), "{e}");
    }

    #[test]
    fn sorting_puts_runs_without_the_key_last_in_both_directions() {
        let mut runs = vec![
            run("a", &[], &[("m", 0.5)]),
            run("b", &[], &[]),
            run("c", &[], &[("m", 0.9)]),
            run("d", &[], &[("m", 0.1)]),
        ];
        SortKey::parse("m:desc").expect("parses").sort(&mut runs);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "d", "b"]);
        SortKey::parse("m").expect("parses").sort(&mut runs);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d", "a", "c", "b"]);
        assert_eq!(
            SortKey::parse("evaluate.roc_auc:max"),
            Ok(SortKey {
                key: "evaluate.roc_auc".into(),
                descending: true
            })
        );
        assert!(SortKey::parse("m:sideways").is_err());
    }

    #[test]
    fn differing_params_are_those_not_equal_everywhere_in_stage_order() {
        let a = run(
            "a",
            &[
                ("seed", "1"),
                ("train.lr", "0.1"),
                ("load.size", "32"),
                ("evaluate.t", "0.5"),
            ],
            &[],
        );
        let b = run(
            "b",
            &[("seed", "1"), ("train.lr", "0.2"), ("load.size", "64")],
            &[],
        );
        assert_eq!(
            differing_params(&[&a, &b]),
            ["load.size", "train.lr", "evaluate.t"]
        );
        assert!(differing_params(&[&a]).is_empty());
    }

    #[test]
    fn differing_params_of_runs_that_share_their_strings() {
        let a = run("a", &[("seed", "1"), ("train.lr", "0.1")], &[]);
        let mut b = a.clone();
        b.id = "b".into();
        assert!(differing_params(&[&a, &b]).is_empty(), "same Arcs");
        b.params.insert("train.lr".into(), "0.2".into());
        let mut c = a.clone();
        c.params.remove("seed");
        c.params.insert("model.units".into(), "8".into());
        assert_eq!(differing_params(&[&a, &b]), ["train.lr"]);
        assert_eq!(
            differing_params(&[&a, &b, &c]),
            ["seed", "train.lr", "model.units"],
            "seed first, then in stage order; a stage no run ran last"
        );
    }
}
