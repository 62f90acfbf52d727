//! `compare --html FILE`: runs side by side on one self-contained page (same rules as
//! report.html: inline CSS and SVG, nothing fetched): the runs, the parameters that differ,
//! every metric, and their learning and ROC curves overlaid.

use std::fmt::Write as _;

use crate::comparison::{metric_cell, status_text, Compared};

use super::charts::{self, Series, PALETTE};
use super::escape::Esc;
use super::page;
use super::style::CHART_CSS;

/// The page, for runs in the order given, with the rows `params` and `metrics`.
pub fn render(runs: &[Compared], params: &[String], metrics: &[String]) -> String {
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
