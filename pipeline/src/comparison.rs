//! The runs `pipeline compare` sets side by side, each read once from its run directory:
//! what both the terminal comparison (`cli::compare`) and the HTML page
//! (`html::compare_page`) show, and the cells they both write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pipeline_engine::runs::index::flatten_params;
use pipeline_engine::runs::record::RunRecord;

/// One run and what the comparison reads from it.
pub struct Compared {
    pub record: RunRecord,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    /// `history.csv`: epoch against each column (loss, val_loss, accuracy, val_accuracy).
    pub history: BTreeMap<String, Vec<(f64, f64)>>,
    /// `roc.csv`: (false positive rate, true positive rate).
    pub roc: Vec<(f64, f64)>,
}

impl Compared {
    /// The run with its parameters, metrics and published curves, read from `dir`, its run
    /// directory (a curve the run did not publish, or that cannot be read, is empty).
    pub fn read(record: RunRecord, dir: &Path) -> Compared {
        let published = |file: &str| published_file(&record, dir, file);
        Compared {
            params: flatten_params(&record.params),
            metrics: record.metrics(),
            history: published("history.csv")
                .map(|p| read_history(&p))
                .unwrap_or_default(),
            roc: published("roc.csv")
                .map(|p| read_roc(&p))
                .unwrap_or_default(),
            record,
        }
    }
}

/// The run directory's copy of a published output file, when the run has one.
fn published_file(record: &RunRecord, dir: &Path, file: &str) -> Option<PathBuf> {
    record
        .stages
        .iter()
        .flat_map(|s| s.outputs.values())
        .filter_map(|o| o.published.as_deref())
        .find(|p| *p == file)
        .map(|p| dir.join(p))
        .filter(|p| p.is_file())
}

/// The parameters whose values are not the same in every run (absent counts as a value).
pub fn differing_params(runs: &[Compared]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.params.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let first = runs[0].params.get(*k);
            runs.iter().any(|r| r.params.get(*k) != first)
        })
        .cloned()
        .collect()
}

fn read_csv(path: &Path) -> Option<(Vec<String>, Vec<Vec<f64>>)> {
    let mut reader = csv::Reader::from_path(path).ok()?;
    let header: Vec<String> = reader.headers().ok()?.iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .filter_map(Result::ok)
        .map(|r| {
            r.iter()
                .map(|c| c.trim().parse::<f64>().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    Some((header, rows))
}

fn read_history(path: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
    let Some((header, rows)) = read_csv(path) else {
        return BTreeMap::new();
    };
    let Some(epoch) = header.iter().position(|h| h == "epoch") else {
        return BTreeMap::new();
    };
    ["loss", "val_loss", "accuracy", "val_accuracy"]
        .iter()
        .filter_map(|name| {
            let col = header.iter().position(|h| h == name)?;
            let points = rows
                .iter()
                .filter_map(|r| Some((*r.get(epoch)?, *r.get(col)?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            Some((name.to_string(), points))
        })
        .collect()
}

fn read_roc(path: &Path) -> Vec<(f64, f64)> {
    let Some((header, rows)) = read_csv(path) else {
        return Vec::new();
    };
    let (Some(fpr), Some(tpr)) = (
        header.iter().position(|h| h == "fpr"),
        header.iter().position(|h| h == "tpr"),
    ) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| Some((*r.get(fpr)?, *r.get(tpr)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

pub fn status_text(r: &RunRecord) -> String {
    match (r.failed_at(), r.failure_reason()) {
        (Some(stage), Some(why)) => format!("failed at stage `{stage}`: {why}"),
        (Some(stage), None) => format!("failed at stage `{stage}`"),
        _ => r.status_label().to_string(),
    }
}

/// A metric's cell: counts (`evaluate.n_test`, `external.false_positives`) as integers, the
/// rest with four decimals.
pub fn metric_cell(metric: &str, value: f64) -> String {
    let name = metric.rsplit('.').next().unwrap_or(metric);
    crate::headline::count_text(name, value).unwrap_or_else(|| format!("{value:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_and_rates_keep_four_decimals() {
        assert_eq!(metric_cell("evaluate.n_test", 55.0), "55");
        assert_eq!(metric_cell("external.false_positives", 102.0), "102");
        assert_eq!(metric_cell("evaluate.specificity", 1.0), "1.0000");
        assert_eq!(metric_cell("evaluate.roc_auc", 0.99362), "0.9936");
        assert_eq!(metric_cell("evaluate.n_test", 5.5), "5.5000");
    }
}
