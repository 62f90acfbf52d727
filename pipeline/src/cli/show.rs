//! `pipeline show RUN [--open]`: one run in full (status, where it failed, device, stages,
//! metrics, files, parameters), and its report.html, written now if the run has none.

use std::process::ExitCode;

use crate::report;
use pipeline_engine::run::store::Store;

use pipeline_engine::human::format_seconds;

pub fn show(store: &Store, spec: &str, open: bool) -> anyhow::Result<ExitCode> {
    let r = store.runs.resolve(spec)?;
    println!("run         {}", r.id);
    if let Some(name) = &r.name {
        println!("name        {name}");
    }
    println!("experiment  {} ({})", r.experiment.name, r.experiment.path);
    if !r.experiment.description.is_empty() {
        println!("            {}", r.experiment.description.trim());
    }
    match (r.failed_at(), r.failure_reason()) {
        (Some(stage), Some(why)) => {
            println!("status      failed at stage `{stage}`");
            println!("error       {why}");
        }
        _ => {
            println!("status      {}", r.status_label());
            if let Some(e) = &r.error {
                println!("error       {e}");
            }
        }
    }
    let not_reached = stages_not_reached(&r);
    if !not_reached.is_empty() {
        let verb = if r.status_label() == "running" {
            "not yet run"
        } else {
            "not reached"
        };
        println!("{verb:<11} {}", not_reached.join(", "));
    }
    println!(
        "started     {}{}",
        r.started,
        r.duration_s
            .map_or(String::new(), |d| format!(" (took {})", format_seconds(d)))
    );
    if let Some(commit) = &r.git_commit {
        let dirty = if r.git_dirty == Some(true) {
            " with uncommitted changes"
        } else {
            ""
        };
        println!("git         {commit}{dirty}");
    }
    println!(
        "host        {} ({} threads, {}-{})",
        r.host.cpu, r.host.threads, r.host.os, r.host.arch
    );
    if let Some(d) = &r.device {
        let what = d
            .facts
            .get("name")
            .map(|n| {
                let fact = |k: &str| d.facts.get(k).map_or("?", String::as_str);
                format!(
                    " on {n} (driver CUDA {}, cuDNN {}, cuBLAS {})",
                    fact("driver_cuda"),
                    fact("cudnn"),
                    fact("cublas")
                )
            })
            .unwrap_or_default();
        let why = d
            .reason
            .as_deref()
            .map(|r| format!("; {r}"))
            .unwrap_or_default();
        println!(
            "device      {}{what} (asked: {}{why})",
            d.class, d.requested
        );
    }
    println!("data root   {}", r.data_root);
    if !r.experiment.overrides.is_empty() {
        println!("overrides   {}", r.experiment.overrides.join(" "));
    }
    // Weights, caveats, each evaluation set side by side, warnings: before the detail.
    let headline = crate::headline::Headline::of(&r);
    if !headline.is_empty() {
        println!();
        for line in headline.lines() {
            println!("{line}");
        }
    }
    println!("\nstages");
    for s in &r.stages {
        println!(
            "  {:<12} {:<10} {:<26} {:>9}  {}",
            s.name,
            s.kind,
            s.cache.label(),
            format_seconds(s.duration_s),
            &s.key[..12.min(s.key.len())]
        );
    }
    let metrics = r.metrics();
    if !metrics.is_empty() {
        println!("\nmetrics");
        for (name, value) in metrics {
            println!("  {name:<32} {value:.6}");
        }
    }
    let dir = store.runs.dir_of(&r.id);
    let published: Vec<&String> = r
        .stages
        .iter()
        .flat_map(|s| s.outputs.values().filter_map(|o| o.published.as_ref()))
        .collect();
    if !published.is_empty() {
        println!("\nfiles in {}", dir.display());
        for p in published {
            println!("  {p}");
        }
    }
    println!("\nparameters");
    let params = toml::to_string(&r.params).unwrap_or_default();
    for line in params.lines() {
        println!("  {line}");
    }
    // A run killed before it ended, or recorded before reports existed, gets its report now.
    let report = match report::ensure(&r, &dir) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("warning: {e}");
            report::path_in(&dir)
        }
    };
    if open {
        crate::desktop::open_in_browser(&report);
    }
    println!("\nreport: {}", report.display());
    Ok(ExitCode::SUCCESS)
}

/// The experiment's stages that a run did not finish (it failed, or is still going), named
/// from its parameters (every stage has a table there, finished or not).
pub fn stages_not_reached(r: &pipeline_engine::runs::record::RunRecord) -> Vec<String> {
    r.params
        .iter()
        .filter(|(name, v)| {
            v.is_table() && r.stage(name).is_none() && r.failed_at() != Some(name.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect()
}
