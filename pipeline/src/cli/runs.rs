//! `pipeline runs`: the recorded runs as one table (text, markdown, JSON or CSV), filtered
//! and sorted, with the parameters that differ and the headline metrics.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::usage::UsageError;
use pipeline_engine::run::store::Store;
use pipeline_engine::runs::index::RunSummary;
use pipeline_engine::runs::query::{self, Filter, SortKey};

use pipeline_engine::human::{format_metric, format_seconds};

/// How many metric columns `pipeline runs` shows unless told which.
const METRIC_COLUMNS: usize = 4;
/// How many differing parameters the text table shows; JSON and CSV have them all.
const PARAM_COLUMNS: usize = 6;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
    Markdown,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    Succeeded,
    Failed,
    Running,
    Interrupted,
}

impl StatusFilter {
    fn label(self) -> &'static str {
        match self {
            StatusFilter::Succeeded => "succeeded",
            StatusFilter::Failed => "failed",
            StatusFilter::Running => "running",
            StatusFilter::Interrupted => "interrupted",
        }
    }
}

#[derive(Args)]
#[command(
    after_help = "KEY names a metric (evaluate.roc_auc), a parameter (train.learning_rate, \
seed) or id, name, experiment, status, started, duration. Columns: the parameters that differ \
among the listed runs, then the headline metrics (evaluate.test_accuracy, sensitivity, \
specificity, roc_auc, then the others)."
)]
pub struct RunsArgs {
    /// Only runs of this experiment (its name, as in the EXPERIMENT column)
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Only runs with this status
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Only runs where KEY compares so with VALUE (OP: < <= > >= = !=), e.g.
    /// `evaluate.roc_auc>0.9` or `model.units=64`; repeatable, all must hold
    #[arg(long = "where", value_name = "KEY OP VALUE")]
    pub filters: Vec<String>,
    /// Order by a metric, parameter or field, e.g. `evaluate.roc_auc:desc` [default: newest
    /// first]
    #[arg(long, value_name = "KEY[:asc|:desc]")]
    pub sort: Option<String>,
    /// Show at most N runs (after filtering and sorting)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only the points of this sweep (see `pipeline sweep`)
    #[arg(long, value_name = "ID")]
    pub sweep: Option<String>,
    /// The metric columns, comma-separated [default: the first four headline metrics]
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub metrics: Vec<String>,
    /// text: a table for people; json, csv: every parameter and metric, for programs;
    /// markdown: a table to paste
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The runs the arguments select, in the order asked for.
fn select(store: &Store, args: &RunsArgs) -> anyhow::Result<Vec<RunSummary>> {
    let listing = store.runs.listing()?;
    for damaged in &listing.damaged {
        eprintln!(
            "warning: {}: damaged run record, left out: {}",
            damaged.path.display(),
            damaged.why
        );
    }
    let all = listing.runs;
    let filters = args
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(UsageError)?;
    let sort = args
        .sort
        .as_deref()
        .map(SortKey::parse)
        .transpose()
        .map_err(UsageError)?;
    // A key no run has is a typo far more often than a question with no answer.
    for key in filters
        .iter()
        .map(|f| f.key.as_str())
        .chain(sort.iter().map(|s| s.key.as_str()))
        .chain(args.metrics.iter().map(String::as_str))
    {
        if !all.is_empty() {
            query::check_key(&all, key).map_err(UsageError)?;
        }
    }
    if let Some(name) = &args.experiment {
        if !all.is_empty() && !all.iter().any(|r| *r.experiment == **name) {
            let names: std::collections::BTreeSet<&str> =
                all.iter().map(|r| &*r.experiment).collect();
            return Err(UsageError(format!(
                "no run of an experiment named `{name}`{}; recorded experiments: {}",
                pipeline_engine::diagnostic::did_you_mean(name, names.iter().copied()),
                names.into_iter().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    let sweep_prefix = args.sweep.as_ref().map(|id| format!("{id}."));
    let mut runs: Vec<RunSummary> = all
        .into_iter()
        .filter(|r| {
            args.experiment
                .as_ref()
                .is_none_or(|e| *r.experiment == **e)
        })
        .filter(|r| args.status.is_none_or(|s| r.status_label() == s.label()))
        .filter(|r| {
            sweep_prefix
                .as_ref()
                .is_none_or(|p| r.name.as_deref().is_some_and(|n| n.starts_with(p.as_str())))
        })
        .filter(|r| filters.iter().all(|f| f.matches(r)))
        .collect();
    if let Some(sort) = &sort {
        sort.sort(&mut runs);
    }
    if let Some(limit) = args.limit {
        runs.truncate(limit);
    }
    Ok(runs)
}

pub fn list(store: &Store, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let runs = select(store, args)?;
    let refs: Vec<&RunSummary> = runs.iter().collect();
    let params = query::differing_params(&refs);
    let all_metrics = query::metric_order(query::metric_names(&runs), None);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Json => {
            write_json(&mut out, &runs)?;
            writeln!(out)?;
        }
        Format::Csv => write_csv(&mut out, &runs, &params, &all_metrics)?,
        Format::Text | Format::Markdown => {
            if runs.is_empty() {
                let filtered = args.experiment.is_some()
                    || args.status.is_some()
                    || !args.filters.is_empty()
                    || args.sweep.is_some();
                if filtered {
                    writeln!(out, "no run matches")?;
                } else {
                    writeln!(out, "no runs yet in {}", store.root.display())?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let metric_columns: Vec<String> = if args.metrics.is_empty() {
                all_metrics.iter().take(METRIC_COLUMNS).cloned().collect()
            } else {
                args.metrics.clone()
            };
            let shown_params: Vec<String> = params.iter().take(PARAM_COLUMNS).cloned().collect();
            let table = text_table(&runs, &shown_params, &metric_columns);
            if args.format == Format::Markdown {
                write_markdown(&mut out, &table)?;
            } else {
                write_text(&mut out, &table)?;
                if params.len() > shown_params.len() {
                    writeln!(
                        out,
                        "({} more parameters differ: --format json or csv lists them all)",
                        params.len() - shown_params.len()
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Column titles: the part after the stage's name where that is unambiguous among them.
fn short_titles(keys: &[String]) -> Vec<String> {
    let short = |k: &str| {
        k.split_once('.')
            .map_or(k.to_string(), |(_, s)| s.to_string())
    };
    keys.iter()
        .map(|k| {
            let s = short(k);
            let clash = keys.iter().filter(|other| short(other) == s).count() > 1;
            if clash {
                k.clone()
            } else {
                s
            }
        })
        .collect()
}

/// A parameter's value for a table: strings without their TOML quotes.
/// One line: a multi-line command reads as `a\nb`.
fn param_text(run: &RunSummary, key: &str) -> String {
    let Some(text) = run.params.get(key) else {
        return "-".into();
    };
    // Only a TOML string (quoted) reads as other than its text; the rest need no parsing.
    let value = if !text.starts_with(['"', '\'']) {
        text.to_string()
    } else {
        match toml::from_str::<toml::Table>(&format!("v = {text}")) {
            Ok(t) => match t.get("v") {
                Some(toml::Value::String(s)) => s.clone(),
                _ => query::unquote(text).to_string(),
            },
            Err(_) => query::unquote(text).to_string(),
        }
    };
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

fn status_text(run: &RunSummary) -> String {
    match (run.status_label(), &run.failed_stage) {
        ("failed", Some(stage)) => format!("failed ({stage})"),
        (label, _) => label.to_string(),
    }
}

fn text_table(runs: &[RunSummary], params: &[String], metrics: &[String]) -> Vec<Vec<String>> {
    let mut columns: Vec<String> = params.to_vec();
    columns.extend(metrics.iter().cloned());
    let mut header: Vec<String> = ["ID", "NAME", "EXPERIMENT", "STATUS", "DURATION"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(short_titles(&columns));
    let mut rows = vec![header];
    for r in runs {
        let mut row = vec![
            r.id.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.experiment.to_string(),
            status_text(r),
            r.duration_s.map_or("-".into(), format_seconds),
        ];
        row.extend(params.iter().map(|p| param_text(r, p)));
        row.extend(metrics.iter().map(|m| {
            r.metrics
                .get(m.as_str())
                .map_or("-".into(), |v| metric_cell(*v))
        }));
        rows.push(row);
    }
    rows
}

/// A metric in a table: counts as integers, other values to four decimals.
fn metric_cell(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1e-3 || v == 0.0 {
        format!("{v:.4}")
    } else {
        format_metric(v)
    }
}

fn write_text(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    // One buffer for every line: thousands of rows, not thousands of allocations per column.
    let mut line = String::new();
    for row in rows {
        line.clear();
        for (c, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn write_markdown(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let escape = |cell: &str| cell.replace('|', "\\|");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
        if i == 0 {
            let rules: Vec<&str> = row
                .iter()
                .enumerate()
                .map(|(c, _)| if c >= 5 { "---:" } else { "---" })
                .collect();
            writeln!(out, "|{}|", rules.join("|"))?;
        }
    }
    Ok(())
}

/// `--format json`: one object per run, its keys in alphabetical order.
fn write_json(out: &mut impl std::io::Write, runs: &[RunSummary]) -> serde_json::Result<()> {
    // Thousands of runs share most parameter values: each distinct text is read once.
    let mut values: HashMap<&str, serde_json::Value> = HashMap::new();
    for r in runs {
        for v in r.params.values() {
            values.entry(v).or_insert_with(|| param_json(v));
        }
    }
    let rows: Vec<JsonRow> = runs
        .iter()
        .map(|r| JsonRow {
            duration_s: r.duration_s,
            error: r.error.as_deref(),
            experiment: &r.experiment,
            experiment_path: &r.experiment_path,
            failed_stage: r.failed_stage.as_deref(),
            id: &r.id,
            metrics: &r.metrics,
            name: r.name.as_deref(),
            overrides: r.overrides.iter().map(|o| &**o).collect(),
            params: r
                .params
                .iter()
                .map(|(k, v)| (&**k, &values[&**v]))
                .collect(),
            started: &r.started,
            status: r.status_label(),
        })
        .collect();
    serde_json::to_writer_pretty(out, &rows)
}

/// A run in `--format json`. The fields are in alphabetical order, the order in which rows
/// have always been written (they were `serde_json::Map`s, which sort their keys).
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    duration_s: Option<f64>,
    error: Option<&'a str>,
    experiment: &'a str,
    experiment_path: &'a str,
    failed_stage: Option<&'a str>,
    id: &'a str,
    #[serde(serialize_with = "metrics_json")]
    metrics: &'a BTreeMap<Arc<str>, f64>,
    name: Option<&'a str>,
    overrides: Vec<&'a str>,
    #[serde(serialize_with = "params_json")]
    params: Vec<(&'a str, &'a serde_json::Value)>,
    started: &'a str,
    status: &'a str,
}

fn metrics_json<S: serde::Serializer>(
    metrics: &&BTreeMap<Arc<str>, f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(metrics.iter().map(|(k, v)| (&**k, v)))
}

fn params_json<S: serde::Serializer>(
    params: &[(&str, &serde_json::Value)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(params.iter().copied())
}

/// A parameter as JSON: numbers, booleans and strings as themselves, anything else (arrays,
/// tables) as its TOML text.
fn param_json(toml_text: &str) -> serde_json::Value {
    let parsed: Option<toml::Value> = toml::from_str::<toml::Table>(&format!("v = {toml_text}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(toml::Value::Integer(i)) => i.into(),
        Some(toml::Value::Float(f)) if f.is_finite() => f.into(),
        Some(toml::Value::Boolean(b)) => b.into(),
        Some(toml::Value::String(s)) => s.into(),
        _ => toml_text.into(),
    }
}

fn write_csv(
    out: &mut impl std::io::Write,
    runs: &[RunSummary],
    params: &[String],
    metrics: &[String],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "id",
        "name",
        "experiment",
        "status",
        "started",
        "duration_s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(params.iter().cloned());
    header.extend(metrics.iter().cloned());
    w.write_record(&header)?;
    for r in runs {
        let mut row = vec![
            r.id.clone(),
            r.name.clone().unwrap_or_default(),
            r.experiment.to_string(),
            r.status_label().to_string(),
            r.started.clone(),
            r.duration_s.map_or(String::new(), |d| format!("{d}")),
        ];
        row.extend(params.iter().map(|p| {
            r.params
                .get(p.as_str())
                .map_or(String::new(), |v| query::unquote(v).to_string())
        }));
        row.extend(metrics.iter().map(|m| {
            r.metrics
                .get(m.as_str())
                .map_or(String::new(), |v| format!("{v}"))
        }));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}
