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

/// Metrics shown first when the experiment names none (`headline = [...]`).
pub const DEFAULT_HEADLINE: [&str; 3] = ["sensitivity", "specificity", "roc_auc"];

/// The rates the generalization warning compares against the test split's interval.
const CHECKED_RATES: [&str; 2] = ["sensitivity", "specificity"];

/// One evaluation set's results, as recorded by its `evaluate` stage.
#[derive(Debug, Clone)]
pub struct EvalSet<'a> {
    /// The stage's name, the prefix of its metrics.
    pub stage: &'a str,
    /// `true` for the test split of the training data, `false` for an external set.
    pub internal: bool,
    pub metrics: &'a std::collections::BTreeMap<String, f64>,
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

    /// "55 images: 33 COVID, 22 NORMAL".
    pub fn make_up(&self) -> String {
        let count = |n: Option<f64>| n.map_or("?".to_string(), |v| format!("{}", v as u64));
        format!(
            "{} images: {} COVID, {} NORMAL",
            count(self.get("n_test")),
            count(self.get("n_covid")),
            count(self.get("n_normal"))
        )
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
            })
            .collect();
        // Stable: the test split first, the rest in the order they ran.
        sets.sort_by_key(|s| !s.internal);
        let metrics = if record.experiment.headline.is_empty() {
            DEFAULT_HEADLINE.iter().map(|m| m.to_string()).collect()
        } else {
            record.experiment.headline.clone()
        };
        let warnings = match sets.iter().find(|s| s.internal) {
            Some(internal) => sets
                .iter()
                .filter(|s| !s.internal)
                .flat_map(|external| generalization_warnings(internal, external))
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
        }
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
        self.sets.iter().any(|s| s.stage == stage)
            && self.metrics.iter().any(|m| {
                metric == m
                    || metric == format!("{m}_ci_low")
                    || metric == format!("{m}_ci_high")
                    || ["n_test", "n_covid", "n_normal"].contains(&metric)
            })
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
                    std::iter::once(metric_label(m))
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
        m => m.replace('_', " "),
    }
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
pub fn generalization_warnings(internal: &EvalSet, external: &EvalSet) -> Vec<String> {
    CHECKED_RATES
        .iter()
        .filter_map(|&rate| {
            let (low, high) = internal.interval(rate)?;
            let inside = internal.get(rate)?;
            let outside = external.get(rate)?;
            if (low..=high).contains(&outside) {
                return None;
            }
            Some(format!(
                "{rate} on the external set `{}` is {outside:.3}, outside the test split's 95 % \
                 interval [{low:.3}, {high:.3}] (test split: {inside:.3}): the test split's \
                 results do not carry over to these images.",
                external.stage
            ))
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
        }
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
