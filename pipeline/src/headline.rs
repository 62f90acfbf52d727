//! What a run's results say, up front: where the base's weights came from, the experiment's
//! caveats, each evaluation set's size and headline metrics with 95 % intervals side by side,
//! and a computed warning when an external set disagrees with the test split.
//!
//! The terminal summary, `pipeline show` and `report.html` all render this one [`Headline`], so
//! they cannot tell different stories. An evaluation set is any `evaluate` stage: the one with
//! a `test` input is the test split (in-distribution), one without is an external set, named
//! by its stage (its metrics are `STAGE.sensitivity` and so on everywhere).

use pipeline_engine::human::format_metric;
use pipeline_engine::runs::record::{RunRecord, StageRecord};
use stages::metrics::slug;

/// Metrics shown first when the experiment names none (`headline = [...]`).
pub const DEFAULT_HEADLINE: [&str; 3] = ["sensitivity", "specificity", "roc_auc"];

/// The rates the generalization warning compares against the test split's interval (two
/// classes; with more, each class's own, see [`checked_rates`]).
const CHECKED_RATES: [&str; 2] = ["sensitivity", "specificity"];

/// Metrics shown first for three or more classes when the experiment names none.
pub const DEFAULT_CLASS_HEADLINE: [&str; 3] = ["test_accuracy", "macro_f1", "macro_roc_auc"];

/// The per-class metrics of a C-class evaluation, by the start of their names, with the
/// words a table row uses for them (see `stages::metrics::ClassResults::scalars`).
const PER_CLASS: [(&str, &str); 5] = [
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC (one vs rest)"),
];

/// One evaluation set's results, as recorded by its `evaluate` stage.
#[derive(Debug, Clone)]
pub struct EvalSet<'a> {
    /// The stage's name, the prefix of its metrics.
    pub stage: &'a str,
    /// `true` for the test split of the training data, `false` for an external set.
    pub internal: bool,
    pub metrics: &'a std::collections::BTreeMap<String, f64>,
    /// The class names the stage noted (any classes but model1's NORMAL and COVID), by label.
    pub classes: Option<Vec<String>>,
}

impl EvalSet<'_> {
    fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().filter(|v| v.is_finite())
    }

    /// "test split" or "external set `external`".
    pub fn title(&self) -> String {
        if self.internal {
            format!("test split (`{}`)", self.stage)
        } else {
            format!("external set `{}`", self.stage)
        }
    }

    /// "55 images: 33 COVID, 22 NORMAL": two classes positive first, more in label order,
    /// each named as the experiment names it.
    pub fn make_up(&self) -> String {
        let count = |n: Option<f64>| n.map_or("?".to_string(), |v| format!("{}", v as u64));
        let classes = match &self.classes {
            Some(names) => {
                let mut parts: Vec<String> = names
                    .iter()
                    .map(|name| {
                        let n = self.get(&format!("n_{}", slug(name)));
                        format!("{} {name}", count(n))
                    })
                    .collect();
                if parts.len() == 2 {
                    parts.reverse();
                }
                parts.join(", ")
            }
            None => format!(
                "{} COVID, {} NORMAL",
                count(self.get("n_covid")),
                count(self.get("n_normal"))
            ),
        };
        format!("{} images: {classes}", count(self.get("n_test")))
    }

    /// Three or more classes, named.
    fn many_classes(&self) -> Option<&[String]> {
        self.classes.as_deref().filter(|c| c.len() > 2)
    }

    /// A metric with its 95 % interval when the stage recorded one: `0.974 [0.868, 0.995]`.
    pub fn value_text(&self, metric: &str) -> String {
        let Some(v) = self.get(metric) else {
            return "n/a".into();
        };
        if is_count(metric) {
            return format!("{}", v as i64);
        }
        match self.interval(metric) {
            Some((low, high)) => format!("{v:.3} [{low:.3}, {high:.3}]"),
            None => format!("{v:.3}"),
        }
    }

    fn interval(&self, metric: &str) -> Option<(f64, f64)> {
        Some((
            self.get(&format!("{metric}_ci_low"))?,
            self.get(&format!("{metric}_ci_high"))?,
        ))
    }
}

/// Everything shown before the detailed metrics.
#[derive(Debug, Clone)]
pub struct Headline<'a> {
    /// Where the base's weights came from, when the run has a `model` stage.
    pub weights: Option<String>,
    pub caveats: &'a [String],
    /// The metrics to lead with, in order.
    pub metrics: Vec<String>,
    /// The test split first, then the external sets in run order.
    pub sets: Vec<EvalSet<'a>>,
    /// One plain sentence per external result outside the test split's 95 % interval.
    pub warnings: Vec<String>,
    /// With three or more classes, the per-class rows shown below the headline metrics:
    /// (label, metric name), e.g. ("COVID-19 sensitivity", "sensitivity_covid_19").
    pub class_rows: Vec<(String, String)>,
}

impl<'a> Headline<'a> {
    pub fn of(record: &'a RunRecord) -> Headline<'a> {
        let mut sets: Vec<EvalSet> = record
            .stages
            .iter()
            .filter(|s| s.kind == "evaluate" && !s.metrics.is_empty())
            .map(|s| EvalSet {
                stage: &s.name,
                internal: s.inputs.contains_key("test"),
                metrics: &s.metrics,
                classes: class_note(s),
            })
            .collect();
        // Stable: the test split first, the rest in the order they ran.
        sets.sort_by_key(|s| !s.internal);
        let many = sets.iter().find_map(EvalSet::many_classes);
        let metrics = if !record.experiment.headline.is_empty() {
            record.experiment.headline.clone()
        } else if many.is_some() {
            DEFAULT_CLASS_HEADLINE
                .iter()
                .map(|m| m.to_string())
                .collect()
        } else {
            DEFAULT_HEADLINE.iter().map(|m| m.to_string()).collect()
        };
        let class_rows = many.map_or_else(Vec::new, class_rows);
        let warnings = match sets.iter().find(|s| s.internal) {
            Some(internal) => missed_class_warnings(internal)
                .into_iter()
                .chain(
                    sets.iter()
                        .filter(|s| !s.internal)
                        .flat_map(|external| generalization_warnings(internal, external)),
                )
                .collect(),
            None => Vec::new(),
        };
        Headline {
            weights: record
                .stages
                .iter()
                .find(|s| s.kind == "model")
                .and_then(weights_banner),
            caveats: &record.experiment.caveats,
            metrics,
            sets,
            warnings,
            class_rows,
        }
    }

    /// A metric's row label: [`metric_label`], with a class's slug replaced by its name
    /// (`sensitivity_covid_19` -> "sensitivity COVID-19").
    pub fn label(&self, metric: &str) -> String {
        self.sets
            .iter()
            .find_map(|s| s.classes.as_deref())
            .and_then(|classes| class_metric_label(metric, classes))
            .unwrap_or_else(|| metric_label(metric))
    }

    /// Nothing to say: no banner, no caveat, no evaluation set.
    pub fn is_empty(&self) -> bool {
        self.weights.is_none() && self.caveats.is_empty() && self.sets.is_empty()
    }

    /// Whether `stage.metric` is already shown in the headline table.
    pub fn shows(&self, qualified: &str) -> bool {
        let Some((stage, metric)) = qualified.split_once('.') else {
            return false;
        };
        let shown = |m: &String| {
            metric == m || metric == format!("{m}_ci_low") || metric == format!("{m}_ci_high")
        };
        self.sets.iter().any(|s| s.stage == stage)
            && (metric.starts_with("n_")
                || self.metrics.iter().any(shown)
                || self.class_rows.iter().any(|(_, m)| shown(m)))
    }

    /// Plain-text lines for the terminal: banner, caveats, a table with one column per set,
    /// warnings.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(w) = &self.weights {
            out.push(format!("base weights: {w}"));
        }
        for c in self.caveats {
            out.push(format!("caveat: {c}"));
        }
        if !self.sets.is_empty() {
            let mut rows: Vec<Vec<String>> = vec![
                std::iter::once(String::new())
                    .chain(self.sets.iter().map(EvalSet::title))
                    .collect(),
                std::iter::once(String::new())
                    .chain(self.sets.iter().map(EvalSet::make_up))
                    .collect(),
            ];
            for m in &self.metrics {
                rows.push(
                    std::iter::once(self.label(m))
                        .chain(self.sets.iter().map(|s| s.value_text(m)))
                        .collect(),
                );
            }
            if !self.class_rows.is_empty() {
                rows.push(vec![String::new(); self.sets.len() + 1]);
                rows.push(
                    std::iter::once("per class (one vs rest)".to_string())
                        .chain(self.sets.iter().map(|_| String::new()))
                        .collect(),
                );
            }
            for (label, m) in &self.class_rows {
                rows.push(
                    std::iter::once(label.clone())
                        .chain(self.sets.iter().map(|s| s.value_text(m)))
                        .collect(),
                );
            }
            let columns = self.sets.len() + 1;
            let widths: Vec<usize> = (0..columns)
                .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                .collect();
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                out.push(format!("  {}", cells.join("   ").trim_end()));
            }
        }
        for w in &self.warnings {
            out.push(format!("WARNING: {w}"));
        }
        out
    }
}

/// "sensitivity (95 % CI)" for rates with intervals, the name otherwise.
pub fn metric_label(metric: &str) -> String {
    match metric {
        "roc_auc" => "ROC AUC".into(),
        "macro_roc_auc" => "macro ROC AUC".into(),
        m => m.replace('_', " "),
    }
}

/// The classes an evaluate stage noted (`classes`), when it did.
fn class_note(stage: &StageRecord) -> Option<Vec<String>> {
    let list = stage.notes.get("classes")?.as_array()?;
    list.iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .filter(|c| c.len() >= 2)
}

/// The per-class rows of `classes`: each class's five one-vs-rest metrics, then every
/// pairwise AUC.
fn class_rows(classes: &[String]) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for name in classes {
        for (metric, words) in PER_CLASS {
            rows.push((
                format!("{name} {words}"),
                format!("{metric}_{}", slug(name)),
            ));
        }
    }
    for (i, a) in classes.iter().enumerate() {
        for b in &classes[i + 1..] {
            rows.push((
                format!("{a} vs {b}: pairwise ROC AUC"),
                format!("pairwise_roc_auc_{}_vs_{}", slug(a), slug(b)),
            ));
        }
    }
    rows
}

/// "COVID-19 sensitivity" for `sensitivity_covid_19` when COVID-19 is among `classes`.
pub fn class_metric_label(metric: &str, classes: &[String]) -> Option<String> {
    if let Some((label, _)) = class_rows(classes).into_iter().find(|(_, m)| m == metric) {
        return Some(label);
    }
    classes.iter().find_map(|name| {
        let count = format!("n_{}", slug(name));
        (metric == count).then(|| format!("{name} images"))
    })
}

/// The rates the warning checks: two classes' `sensitivity` and `specificity`, and each
/// noted class's own (with its name, for the sentence).
fn checked_rates(classes: Option<&[String]>) -> Vec<(String, Option<&str>)> {
    let mut rates: Vec<(String, Option<&str>)> = CHECKED_RATES
        .iter()
        .map(|r| (r.to_string(), None))
        .collect();
    for name in classes.unwrap_or_default() {
        for rate in CHECKED_RATES {
            rates.push((format!("{rate}_{}", slug(name)), Some(name.as_str())));
        }
    }
    rates
}

/// Counts are integers: image numbers and confusion cells.
pub fn is_count(metric: &str) -> bool {
    metric.starts_with("n_") || metric.ends_with("_positives") || metric.ends_with("_negatives")
}

/// A count's value as a whole number (`55`); `None` for other metrics and for values that
/// are not whole.
pub fn count_text(metric: &str, value: f64) -> Option<String> {
    (is_count(metric) && value.is_finite() && value.fract() == 0.0)
        .then(|| format!("{}", value as i64))
}

/// A metric's value for display: counts as integers, the rest as [`format_metric`].
pub fn value_text(metric: &str, value: f64) -> String {
    count_text(metric, value).unwrap_or_else(|| format_metric(value))
}

/// The warnings for one external set: each checked rate whose external value falls outside
/// the test split's 95 % interval, as one plain sentence with both numbers.
///
/// With three or more classes each class is checked on its own, and the sentence names it:
/// "COVID-19's sensitivity on the external set ...". A class absent from either set has no
/// rate there and so no warning.
pub fn generalization_warnings(internal: &EvalSet, external: &EvalSet) -> Vec<String> {
    let classes = internal.classes.as_deref();
    checked_rates(classes)
        .into_iter()
        .filter_map(|(rate, class)| {
            let (low, high) = internal.interval(&rate)?;
            let inside = internal.get(&rate)?;
            let outside = external.get(&rate)?;
            // The Wilson bound of a perfect rate can round to just below 1 (28 of 28 gives
            // 1 - 1e-16): a perfect external rate is inside, so allow rounding's slack.
            if (low - BOUND_SLACK..=high + BOUND_SLACK).contains(&outside) {
                return None;
            }
            let what = match class {
                None => rate.clone(),
                Some(name) => {
                    let base = CHECKED_RATES
                        .iter()
                        .find(|r| rate.starts_with(*r))
                        .unwrap_or(&"rate");
                    format!("{name}'s {base}")
                }
            };
            Some(format!(
                "{what} on the external set `{}` is {outside:.3}, outside the test split's 95 % \
                 interval [{low:.3}, {high:.3}] (test split: {inside:.3}): the test split's \
                 results do not carry over to these images.",
                external.stage
            ))
        })
        .collect()
}

/// Rounding's slack past a Wilson bound (far below the 3 decimals shown).
const BOUND_SLACK: f64 = 1e-9;

/// A class the model misses on the test split: sensitivity whose 95 % interval lies wholly
/// below one half (three or more classes). One plain sentence each, so that a model calling
/// every PNEUMONIA image COVID-19 cannot pass unnoticed behind a good macro figure.
pub fn missed_class_warnings(internal: &EvalSet) -> Vec<String> {
    let Some(classes) = internal.many_classes() else {
        return Vec::new();
    };
    classes
        .iter()
        .filter_map(|name| {
            let rate = format!("sensitivity_{}", slug(name));
            let (low, high) = internal.interval(&rate)?;
            let value = internal.get(&rate)?;
            let n = internal.get(&format!("n_{}", slug(name)))?;
            (high < 0.5).then(|| {
                format!(
                    "the model misses {name}: it finds {} of the {} {name} images of the test \
                     split (sensitivity {value:.3}, 95 % interval [{low:.3}, {high:.3}]); it \
                     does not tell {name} from the other classes.",
                    (value * n).round() as u64,
                    n as u64
                )
            })
        })
        .collect()
}

/// Where the base's weights came from, from the `model` stage's record: its `weights` note
/// and, for a file, the digest the engine recorded of it.
fn weights_banner(model: &StageRecord) -> Option<String> {
    let note = model.notes.get("weights")?.as_str()?;
    if let Some(path) = note.strip_prefix("base from ") {
        let name = std::path::Path::new(path)
            .file_name()
            .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
        let digest = model
            .external
            .as_ref()
            .map_or(String::new(), |e| format!(", blake3 {}", e.digest));
        return Some(format!("ImageNet file {name}{digest}"));
    }
    if note.starts_with("random") {
        let init = if note.contains("He-uniform") {
            "He-uniform"
        } else if note.contains("Glorot-uniform") {
            "Glorot-uniform"
        } else {
            "initialization"
        };
        let seed = note
            .rsplit_once("seed ")
            .map(|(_, s)| s.trim_end_matches(')').to_string())
            .unwrap_or_else(|| "?".into());
        return Some(format!(
            "random {init}, seed {seed}: not the seed's ImageNet weights"
        ));
    }
    Some(note.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An evaluate stage's metrics for `tp` of `pos` COVID and `tn` of `neg` NORMAL right,
    /// with the Wilson intervals the evaluate stage records.
    fn metrics(tp: u64, pos: u64, tn: u64, neg: u64) -> BTreeMap<String, f64> {
        use stages::metrics::{Proportion, Z_95};
        let mut m = BTreeMap::new();
        for (name, k, n) in [("sensitivity", tp, pos), ("specificity", tn, neg)] {
            let p = Proportion {
                successes: k,
                trials: n,
            };
            let ci = p.wilson(Z_95).expect("trials");
            m.insert(name.to_string(), p.value().expect("trials"));
            m.insert(format!("{name}_ci_low"), ci.low);
            m.insert(format!("{name}_ci_high"), ci.high);
        }
        m.insert("n_test".into(), (pos + neg) as f64);
        m.insert("n_covid".into(), pos as f64);
        m.insert("n_normal".into(), neg as f64);
        m.insert("roc_auc".into(), 0.9);
        m
    }

    fn set<'a>(stage: &'a str, internal: bool, m: &'a BTreeMap<String, f64>) -> EvalSet<'a> {
        EvalSet {
            stage,
            internal,
            metrics: m,
            classes: None,
        }
    }

    /// A three-class evaluation's metrics: COVID-19 found `covid` of `n_covid` and kept out
    /// `rest` of `n_rest`; the other classes perfect.
    fn three(covid: u64, n_covid: u64, rest: u64, n_rest: u64) -> BTreeMap<String, f64> {
        use stages::metrics::{Proportion, Z_95};
        let mut m = BTreeMap::new();
        let mut put = |name: &str, k: u64, n: u64| {
            let p = Proportion {
                successes: k,
                trials: n,
            };
            let ci = p.wilson(Z_95).expect("trials");
            m.insert(name.to_string(), p.value().expect("trials"));
            m.insert(format!("{name}_ci_low"), ci.low);
            m.insert(format!("{name}_ci_high"), ci.high);
        };
        put("sensitivity_covid_19", covid, n_covid);
        put("specificity_covid_19", rest, n_rest);
        // Not perfect: a perfect rate's Wilson bound rounds to just below 1 (see the warning).
        put("sensitivity_pneumonia", 9, 10);
        put("specificity_pneumonia", 29, 30);
        m.insert("n_test".into(), (n_covid + n_rest) as f64);
        m.insert("n_covid_19".into(), n_covid as f64);
        m.insert("n_pneumonia".into(), 10.0);
        m.insert("n_normal".into(), (n_rest - 10) as f64);
        m.insert("macro_roc_auc".into(), 0.75);
        m
    }

    fn names() -> Option<Vec<String>> {
        Some(vec!["NORMAL".into(), "PNEUMONIA".into(), "COVID-19".into()])
    }

    #[test]
    fn a_class_outside_its_interval_is_named_and_the_others_are_not() {
        // Test split: COVID-19 19 of 20 found, 20 of 20 others kept out. External: 6 of 20
        // found (0.3, far below [0.764, 0.991]); specificity 38 of 40 (0.95, inside).
        let inside = three(19, 20, 20, 20);
        let outside = three(6, 20, 38, 40);
        let mut internal = set("evaluate", true, &inside);
        internal.classes = names();
        let mut external = set("external", false, &outside);
        external.classes = names();
        let w = generalization_warnings(&internal, &external);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "COVID-19's sensitivity on the external set `external` is 0.300, outside the \
                 test split's 95 % interval [0.764, 0.991] (test split: 0.950)"
            ),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("PNEUMONIA")));
        assert_eq!(
            external.make_up(),
            "60 images: 30 NORMAL, 10 PNEUMONIA, 20 COVID-19"
        );
    }

    #[test]
    fn the_terminal_lines_list_each_class_with_sets_side_by_side() {
        let inside = three(19, 20, 20, 20);
        let outside = three(6, 20, 38, 40);
        let mut internal = set("evaluate", true, &inside);
        internal.classes = names();
        let mut external = set("external", false, &outside);
        external.classes = names();
        let h = Headline {
            weights: None,
            caveats: &[],
            metrics: DEFAULT_CLASS_HEADLINE
                .iter()
                .map(|m| m.to_string())
                .collect(),
            warnings: generalization_warnings(&internal, &external),
            class_rows: class_rows(&names().expect("names")),
            sets: vec![internal, external],
        };
        let lines = h.lines();
        let find = |start: &str| {
            lines
                .iter()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in {lines:#?}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(find("macro ROC AUC"), "macro ROC AUC 0.750 0.750");
        assert_eq!(find("test accuracy"), "test accuracy n/a n/a");
        assert!(lines.iter().any(|l| l.trim() == "per class (one vs rest)"));
        assert_eq!(
            find("COVID-19 sensitivity"),
            // 6 of 20: Wilson centre 0.332, half-width 0.187.
            "COVID-19 sensitivity 0.950 [0.764, 0.991] 0.300 [0.145, 0.519]"
        );
        assert_eq!(find("NORMAL precision"), "NORMAL precision n/a n/a");
        assert!(lines
            .last()
            .is_some_and(|l| l.starts_with("WARNING: COVID-19's sensitivity")));
        assert!(h.shows("external.sensitivity_covid_19_ci_low"));
        assert!(h.shows("evaluate.n_pneumonia"));
        assert!(!h.shows("evaluate.test_loss"));
    }

    #[test]
    fn class_metrics_have_their_class_s_name_in_labels() {
        let classes = names().expect("names");
        assert_eq!(
            class_metric_label("sensitivity_covid_19", &classes).as_deref(),
            Some("COVID-19 sensitivity")
        );
        assert_eq!(
            class_metric_label("pairwise_roc_auc_pneumonia_vs_covid_19", &classes).as_deref(),
            Some("PNEUMONIA vs COVID-19: pairwise ROC AUC")
        );
        assert_eq!(class_metric_label("macro_f1", &classes), None);
        assert_eq!(metric_label("macro_roc_auc"), "macro ROC AUC");
        // A two-class experiment of other classes counts its own.
        let m: BTreeMap<String, f64> = [("n_test", 51.0), ("n_covid", 35.0), ("n_pneumonia", 16.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut s = set("evaluate", true, &m);
        s.classes = Some(vec!["PNEUMONIA".into(), "COVID".into()]);
        assert_eq!(s.make_up(), "51 images: 35 COVID, 16 PNEUMONIA");
    }

    #[test]
    fn an_external_rate_outside_the_interval_is_one_sentence_with_both_numbers() {
        // The seed's test split: 32/33 COVID, 22/22 NORMAL. Specificity's Wilson interval is
        // [0.851, 1]; an external set with 10 of 105 adult normals right (0.095) is far out.
        let inside = metrics(32, 33, 22, 22);
        let outside = metrics(78, 79, 10, 105);
        let w = generalization_warnings(
            &set("evaluate", true, &inside),
            &set("external", false, &outside),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0],
            "specificity on the external set `external` is 0.095, outside the test split's 95 % \
             interval [0.851, 1.000] (test split: 1.000): the test split's results do not carry \
             over to these images."
        );
        // Sensitivity 78/79 = 0.987 lies inside the test split's [0.847, 0.995]: no warning.
        assert!(!w[0].starts_with("sensitivity"));
    }

    #[test]
    fn external_results_inside_the_intervals_warn_nothing() {
        let inside = metrics(32, 33, 22, 22);
        let similar = metrics(75, 79, 100, 105);
        // 75/79 = 0.949 and 100/105 = 0.952: inside [0.847, 0.995] and [0.851, 1].
        assert!(generalization_warnings(
            &set("evaluate", true, &inside),
            &set("external", false, &similar)
        )
        .is_empty());
    }

    #[test]
    fn a_rate_just_below_the_low_bound_warns_and_one_on_it_does_not() {
        let mut inside = metrics(32, 33, 22, 22);
        inside.insert("sensitivity_ci_low".into(), 0.9);
        let mut external = metrics(9, 10, 22, 22);
        let internal = set("evaluate", true, &inside);
        external.insert("sensitivity".into(), 0.9);
        assert!(generalization_warnings(&internal, &set("x", false, &external)).is_empty());
        external.insert("sensitivity".into(), 0.899);
        let w = generalization_warnings(&internal, &set("x", false, &external));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("sensitivity on the external set `x` is 0.899"),
            "{w:?}"
        );
    }

    #[test]
    fn a_perfect_external_rate_is_inside_a_perfect_test_rate_s_rounded_bound() {
        // 28 of 28: the Wilson upper bound computes as 1 - 1e-16, not 1.
        let perfect = metrics(28, 28, 20, 20);
        assert!(perfect["sensitivity_ci_high"] <= 1.0);
        let external = metrics(40, 40, 30, 30);
        let w = generalization_warnings(
            &set("evaluate", true, &perfect),
            &set("x", false, &external),
        );
        assert!(w.is_empty(), "{w:?}");
        // A real miss past the bound still warns.
        let worse = metrics(30, 40, 30, 30);
        let w = generalization_warnings(&set("evaluate", true, &perfect), &set("x", false, &worse));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn a_class_the_model_misses_on_the_test_split_is_named() {
        // PNEUMONIA found 0 of 15 (interval [0.000, 0.204], wholly below one half); COVID-19
        // found 19 of 20; NORMAL not recorded at all (no rate, no warning).
        let mut m = three(19, 20, 20, 20);
        use stages::metrics::{Proportion, Z_95};
        let p = Proportion {
            successes: 0,
            trials: 15,
        };
        let ci = p.wilson(Z_95).expect("trials");
        m.insert("sensitivity_pneumonia".into(), 0.0);
        m.insert("sensitivity_pneumonia_ci_low".into(), ci.low);
        m.insert("sensitivity_pneumonia_ci_high".into(), ci.high);
        m.insert("n_pneumonia".into(), 15.0);
        let mut internal = set("evaluate", true, &m);
        internal.classes = names();
        let w = missed_class_warnings(&internal);
        assert_eq!(
            w,
            [
                "the model misses PNEUMONIA: it finds 0 of the 15 PNEUMONIA images of the test \
              split (sensitivity 0.000, 95 % interval [0.000, 0.204]); it does not tell \
              PNEUMONIA from the other classes."
            ]
        );
        // 9 of 10 is found: no warning; nor for a two-class evaluation.
        let fine = three(19, 20, 20, 20);
        let mut internal = set("evaluate", true, &fine);
        internal.classes = names();
        assert!(missed_class_warnings(&internal).is_empty());
        let binary = metrics(0, 20, 20, 20);
        assert!(missed_class_warnings(&set("evaluate", true, &binary)).is_empty());
    }

    #[test]
    fn values_show_intervals_and_counts_as_integers() {
        let m = metrics(37, 38, 10, 10);
        let s = set("evaluate", true, &m);
        assert_eq!(s.value_text("sensitivity"), "0.974 [0.865, 0.995]");
        assert_eq!(s.value_text("roc_auc"), "0.900");
        assert_eq!(s.value_text("n_test"), "48");
        assert_eq!(s.value_text("precision"), "n/a");
        assert_eq!(s.make_up(), "48 images: 38 COVID, 10 NORMAL");
        assert_eq!(value_text("evaluate.true_positives", 37.0), "37");
        assert_eq!(value_text("evaluate.test_accuracy", 1.0), "1");
        assert_eq!(value_text("evaluate.test_loss", 0.25), "0.25");
    }

    #[test]
    fn the_weights_banner_says_random_or_names_the_file() {
        let mut model = StageRecord {
            name: "model".into(),
            kind: "model".into(),
            kind_version: 1,
            key: String::new(),
            cache: pipeline_engine::runs::record::CacheUse::Miss,
            duration_s: 0.0,
            params: toml::Table::new(),
            inputs: BTreeMap::new(),
            external: None,
            outputs: BTreeMap::new(),
            notes: toml::Table::new(),
            metrics: BTreeMap::new(),
            device_class: None,
        };
        assert_eq!(weights_banner(&model), None);
        model.notes.insert(
            "weights".into(),
            "random (He-uniform kernels, zero biases, seed 42)".into(),
        );
        assert_eq!(
            weights_banner(&model).as_deref(),
            Some("random He-uniform, seed 42: not the seed's ImageNet weights")
        );
        model
            .notes
            .insert("weights".into(), "base from /data/vgg16.safetensors".into());
        model.external = Some(pipeline_engine::runs::record::ExternalRecord {
            files: 1,
            bytes: 10,
            digest: "abc123".into(),
        });
        assert_eq!(
            weights_banner(&model).as_deref(),
            Some("ImageNet file vgg16.safetensors, blake3 abc123")
        );
    }
}
