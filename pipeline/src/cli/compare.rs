//! `pipeline compare RUN... [--html FILE]`: several runs side by side: the parameters that
//! differ, every metric, and their learning curves and ROC curves overlaid in one figure each,
//! in the terminal (character plots) and as one self-contained HTML page (inline SVG, as
//! report.html).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use pipeline_engine::run::store::Store;
use pipeline_engine::runs::query::metric_order;

use crate::comparison::{differing_params, metric_cell, status_text, Compared};
use crate::html::charts::{self, Bounds};
use crate::html::compare_page;

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
        runs.push(Compared::read(record, &dir));
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
        let html = compare_page::render(&runs, &params, &metrics);
        pipeline_engine::sweep::write_atomically(file, html.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
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
}
