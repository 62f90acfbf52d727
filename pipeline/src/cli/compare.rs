//! `pipeline compare RUN... [--html FILE]`: several runs side by side: the parameters that
//! differ, every metric, and their learning curves and ROC curves overlaid in one figure each,
//! in the terminal (character plots) and as one self-contained HTML page (inline SVG, as
//! report.html).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use pipeline_engine::run::store::Store;
use pipeline_engine::runs::index::flatten_params;
use pipeline_engine::runs::query::metric_order;
use pipeline_engine::runs::record::RunRecord;

use crate::html::charts::{self, Bounds, Series, PALETTE};
use crate::html::escape::Esc;
use crate::html::page;
use crate::html::style::CHART_CSS;

#[derive(Args)]
pub struct CompareArgs {
    /// The runs (two or more): run ids, unique prefixes or suffixes of one (`7c1e`), run
    /// names, `latest` (the newest run that succeeded) or `latest~N`
    #[arg(required = true, num_args = 2.., value_name = "RUN")]
    pub runs: Vec<String>,
    /// Also write the comparison as one self-contained HTML page (no network, no scripts)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// One run and what the comparison reads from it.
struct Compared {
    record: RunRecord,
    params: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    /// `history.csv`: epoch against each column (loss, val_loss, accuracy, val_accuracy).
    history: BTreeMap<String, Vec<(f64, f64)>>,
    /// `roc.csv`: (false positive rate, true positive rate).
    roc: Vec<(f64, f64)>,
}

pub fn compare(store: &Store, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for spec in &args.runs {
        let record = store.runs.resolve(spec)?;
        if runs.iter().any(|r: &Compared| r.record.id == record.id) {
            return Err(crate::usage::UsageError(format!(
                "`{spec}` is run {}, already named: compare different runs",
                record.id
            ))
            .into());
        }
        let dir = store.runs.dir_of(&record.id);
        let published = |file: &str| published_file(&record, &dir, file);
        runs.push(Compared {
            params: flatten_params(&record.params),
            metrics: record.metrics(),
            history: published("history.csv")
                .map(|p| read_history(&p))
                .unwrap_or_default(),
            roc: published("roc.csv")
                .map(|p| read_roc(&p))
                .unwrap_or_default(),
            record,
        });
    }
    let experiments: BTreeSet<&str> = runs
        .iter()
        .map(|r| r.record.experiment.name.as_str())
        .collect();
    if experiments.len() > 1 {
        eprintln!(
            "warning: these runs are of different experiments ({}): their stages and metrics may \
             not correspond",
            experiments.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let params = differing_params(&runs);
    // The experiment's own headline leads when every run declares the same one.
    let headline = runs
        .first()
        .map(|r| &r.record.experiment.headline)
        .filter(|first| {
            !first.is_empty() && runs.iter().all(|r| &r.record.experiment.headline == *first)
        });
    let metrics = metric_order(
        runs.iter().flat_map(|r| r.metrics.keys()),
        headline.map(Vec::as_slice),
    );

    print_terminal(&runs, &params, &metrics);
    if let Some(file) = &args.html {
        let html = render_html(&runs, &params, &metrics);
        pipeline_engine::sweep::write_atomically(file, html.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
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
fn differing_params(runs: &[Compared]) -> Vec<String> {
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

fn status_text(r: &RunRecord) -> String {
    match (r.failed_at(), r.failure_reason()) {
        (Some(stage), Some(why)) => format!("failed at stage `{stage}`: {why}"),
        (Some(stage), None) => format!("failed at stage `{stage}`"),
        _ => r.status_label().to_string(),
    }
}

fn print_terminal(runs: &[Compared], params: &[String], metrics: &[String]) {
    println!("runs");
    for (i, r) in runs.iter().enumerate() {
        println!(
            "  {}  {}  {} ({}), {}",
            i + 1,
            r.record.id,
            r.record.experiment.name,
            r.record.name.as_deref().unwrap_or("no name"),
            status_text(&r.record)
        );
    }
    let columns = |rows: Vec<(String, Vec<String>)>| {
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let cell = rows
            .iter()
            .flat_map(|(_, v)| v.iter().map(String::len))
            .max()
            .unwrap_or(1)
            .max(runs.len().to_string().len());
        let head: Vec<String> = (1..=runs.len()).map(|i| format!("{i:>cell$}")).collect();
        println!("  {:width$}  {}", "", head.join("  "));
        for (k, v) in rows {
            let v: Vec<String> = v.iter().map(|c| format!("{c:>cell$}")).collect();
            println!("  {k:<width$}  {}", v.join("  "));
        }
    };
    if params.is_empty() {
        println!("parameters: the same in every run");
    } else {
        println!("parameters that differ");
        columns(
            params
                .iter()
                .map(|k| {
                    let v = runs
                        .iter()
                        .map(|r| r.params.get(k).cloned().unwrap_or_else(|| "-".into()))
                        .collect();
                    (k.clone(), v)
                })
                .collect(),
        );
    }
    if !metrics.is_empty() {
        println!("metrics");
        columns(
            metrics
                .iter()
                .map(|m| {
                    let v = runs
                        .iter()
                        .map(|r| r.metrics.get(m).map_or("-".into(), |&v| metric_cell(m, v)))
                        .collect();
                    (m.clone(), v)
                })
                .collect(),
        );
    }
    let curves: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.history
                .get("val_loss")
                .or(r.history.get("loss"))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if curves.iter().any(|c| !c.is_empty()) {
        let which = if runs.iter().any(|r| r.history.contains_key("val_loss")) {
            "validation loss"
        } else {
            "loss"
        };
        println!("learning curves: {which} by epoch (1, 2, ...: the runs above)");
        print!("{}", text_plot(&curves, None));
    }
    let rocs: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| r.roc.clone()).collect();
    if rocs.iter().any(|c| !c.is_empty()) {
        println!("ROC curves: true positive rate by false positive rate");
        print!("{}", text_plot(&rocs, Some(((0.0, 1.0), (0.0, 1.0)))));
    }
}

const PLOT_W: usize = 60;
const PLOT_H: usize = 14;

/// A character plot: series `i` drawn with the digit `i + 1` (`*` where several meet).
fn text_plot(series: &[Vec<(f64, f64)>], fixed: Option<Bounds>) -> String {
    let ((x0, x1), (y0, y1)) = fixed.unwrap_or_else(|| charts::bounds(series.iter().flatten()));
    let mut grid = vec![vec![' '; PLOT_W]; PLOT_H];
    let col = |x: f64| {
        (((x - x0) / (x1 - x0)) * (PLOT_W - 1) as f64)
            .round()
            .clamp(0.0, (PLOT_W - 1) as f64) as usize
    };
    let row = |y: f64| {
        (((y1 - y) / (y1 - y0)) * (PLOT_H - 1) as f64)
            .round()
            .clamp(0.0, (PLOT_H - 1) as f64) as usize
    };
    for (i, s) in series.iter().enumerate() {
        let mark = char::from_digit((i + 1) as u32 % 36, 36).unwrap_or('+');
        // Points along each segment, so that steep parts (ROC) stay connected.
        let segments: Vec<((f64, f64), (f64, f64))> = match s.as_slice() {
            [one] => vec![(*one, *one)],
            many => many.windows(2).map(|w| (w[0], w[1])).collect(),
        };
        for (a, b) in segments {
            let steps = (col(b.0).abs_diff(col(a.0)) + row(b.1).abs_diff(row(a.1))).max(1);
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                let cell = &mut grid[row(y)][col(x)];
                *cell = if *cell == ' ' || *cell == mark {
                    mark
                } else {
                    '*'
                };
            }
        }
    }
    let mut out = String::new();
    let top = charts::number_text(y1);
    let bottom = charts::number_text(y0);
    let w = top.len().max(bottom.len());
    for (r, line) in grid.iter().enumerate() {
        let axis = match r {
            0 => top.clone(),
            r if r == PLOT_H - 1 => bottom.clone(),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {axis:>w$} |{}", line.iter().collect::<String>());
    }
    let _ = writeln!(out, "  {:>w$} +{}", "", "-".repeat(PLOT_W));
    let left = charts::number_text(x0);
    let right = charts::number_text(x1);
    let _ = writeln!(
        out,
        "  {:>w$}  {left}{}{right}",
        "",
        " ".repeat(PLOT_W.saturating_sub(left.len() + right.len()))
    );
    out
}

fn render_html(runs: &[Compared], params: &[String], metrics: &[String]) -> String {
    let mut out = String::new();
    let _ = html_into(&mut out, runs, params, metrics);
    out
}

fn html_into(
    out: &mut String,
    runs: &[Compared],
    params: &[String],
    metrics: &[String],
) -> std::fmt::Result {
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    page::open(
        out,
        &format!("compare {} runs", runs.len()),
        &format!("\n{CHART_CSS}\n{SWATCH_CSS}\n"),
    )?;
    writeln!(out, "<h1>Comparing {} runs</h1>", runs.len())?;
    writeln!(
        out,
        "<div class=\"scroll\"><table><thead><tr><th>#</th><th>run</th><th>experiment</th><th>name</th><th>status</th><th>started</th></tr></thead><tbody>"
    )?;
    for (i, r) in runs.iter().enumerate() {
        let status = r.record.status_label();
        writeln!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td><span class=\"badge {status}\">{}</span></td><td>{}</td></tr>",
            color(i),
            i + 1,
            Esc(&r.record.id),
            Esc(&r.record.experiment.name),
            Esc(r.record.name.as_deref().unwrap_or("")),
            Esc(&status_text(&r.record)),
            Esc(&r.record.started)
        )?;
    }
    writeln!(out, "</tbody></table></div>")?;

    let table =
        |out: &mut String, title: &str, rows: Vec<(String, Vec<String>)>| -> std::fmt::Result {
            writeln!(out, "<h2>{}</h2>", Esc(title))?;
            write!(out, "<div class=\"scroll\"><table><thead><tr><th></th>")?;
            for i in 0..runs.len() {
                write!(out, "<th class=\"num\">{}</th>", i + 1)?;
            }
            writeln!(out, "</tr></thead><tbody>")?;
            for (k, v) in rows {
                write!(out, "<tr><td><code class=\"key\">{}</code></td>", Esc(&k))?;
                for c in v {
                    write!(out, "<td class=\"num\">{}</td>", Esc(&c))?;
                }
                writeln!(out, "</tr>")?;
            }
            writeln!(out, "</tbody></table></div>")
        };
    if params.is_empty() {
        writeln!(
            out,
            "<h2>Parameters that differ</h2><p>None: the same in every run.</p>"
        )?;
    } else {
        table(
            out,
            "Parameters that differ",
            params
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        runs.iter()
                            .map(|r| r.params.get(k).cloned().unwrap_or_else(|| "-".into()))
                            .collect(),
                    )
                })
                .collect(),
        )?;
    }
    table(
        out,
        "Metrics",
        metrics
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    runs.iter()
                        .map(|r| r.metrics.get(m).map_or("-".into(), |&v| metric_cell(m, v)))
                        .collect(),
                )
            })
            .collect(),
    )?;

    writeln!(out, "<h2>Curves</h2>\n<div class=\"figures\">")?;
    let mut loss = Vec::new();
    let mut accuracy = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        for (name, dashed) in [
            ("loss", false),
            ("val_loss", true),
            ("accuracy", false),
            ("val_accuracy", true),
        ] {
            let into = if name.ends_with("loss") {
                &mut loss
            } else {
                &mut accuracy
            };
            if let Some(points) = r.history.get(name) {
                into.push(Series {
                    name: format!("{} {name}", i + 1),
                    points: points.clone(),
                    dashed,
                    color: color(i).to_string(),
                });
            }
        }
    }
    if !loss.is_empty() {
        writeln!(
            out,
            "<figure>{}<figcaption>training (solid) and validation (dashed) loss</figcaption></figure>",
            charts::line_chart("loss", "epoch", "loss", &loss, None)
        )?;
    }
    if !accuracy.is_empty() {
        writeln!(
            out,
            "<figure>{}<figcaption>training (solid) and validation (dashed) accuracy</figcaption></figure>",
            charts::line_chart("accuracy", "epoch", "accuracy", &accuracy, None)
        )?;
    }
    let mut roc: Vec<Series> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.roc.is_empty())
        .map(|(i, r)| Series {
            name: format!(
                "{}{}",
                i + 1,
                r.metrics
                    .get("evaluate.roc_auc")
                    .map_or(String::new(), |a| format!(" (AUC {a:.3})"))
            ),
            points: r.roc.clone(),
            dashed: false,
            color: color(i).to_string(),
        })
        .collect();
    if !roc.is_empty() {
        roc.push(Series {
            name: "chance".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            dashed: true,
            color: "#999999".into(),
        });
        writeln!(
            out,
            "<figure>{}<figcaption>ROC curves on each run's test split</figcaption></figure>",
            charts::line_chart(
                "ROC",
                "false positive rate",
                "true positive rate",
                &roc,
                Some(((0.0, 1.0), (0.0, 1.0)))
            )
        )?;
    }
    if loss.is_empty() && roc.is_empty() {
        writeln!(
            out,
            "<p>These runs published no learning or ROC curves.</p>"
        )?;
    }
    writeln!(out, "</div>")?;
    page::close(out, None)
}

/// The colour key of each run in the runs table.
const SWATCH_CSS: &str = ".swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }";

/// A metric's cell: counts (`evaluate.n_test`, `external.false_positives`) as integers, the
/// rest with four decimals.
fn metric_cell(metric: &str, value: f64) -> String {
    let name = metric.rsplit('.').next().unwrap_or(metric);
    crate::headline::count_text(name, value).unwrap_or_else(|| format!("{value:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_plot_draws_each_series_with_its_digit() {
        let plot = text_plot(
            &[vec![(0.0, 0.0), (1.0, 1.0)], vec![(0.0, 1.0), (1.0, 1.0)]],
            Some(((0.0, 1.0), (0.0, 1.0))),
        );
        let lines: Vec<&str> = plot.lines().collect();
        assert_eq!(lines.len(), PLOT_H + 2);
        // Both reach the top right corner: drawn as `*` there.
        assert!(lines[0].ends_with('*'), "{plot}");
        assert!(lines[0].contains("2222"), "{plot}");
        assert!(lines[PLOT_H - 1].contains("|1"), "{plot}");
    }

    #[test]
    fn counts_are_whole_numbers_and_rates_keep_four_decimals() {
        assert_eq!(metric_cell("evaluate.n_test", 55.0), "55");
        assert_eq!(metric_cell("external.false_positives", 102.0), "102");
        assert_eq!(metric_cell("evaluate.specificity", 1.0), "1.0000");
        assert_eq!(metric_cell("evaluate.roc_auc", 0.99362), "0.9936");
        assert_eq!(metric_cell("evaluate.n_test", 5.5), "5.5000");
    }
}
