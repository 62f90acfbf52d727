//! The run report: one self-contained `report.html` in each run directory, for a person to open
//! in a browser or to mail on its own.
//!
//! It shows what `pipeline show` shows, plus every figure the run published, embedded as a
//! `data:` URI. The CSS is inline, there is no script and nothing is fetched, so the file reads
//! the same offline, archived or attached. It knows nothing of what the stages compute: a figure
//! is any published `.png` file (or `.svg` file with no `.png` of the same stem), titled by its
//! file stem; every other published file is linked by its path relative to the report.

use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use pipeline_engine::human::{format_bytes, format_seconds};
use pipeline_engine::runs::record::{CacheUse, RunRecord, StageRecord};

use crate::headline::{value_text as metric_text, Headline};
use crate::html::escape::{Esc, Href};
use crate::html::page;

/// The report's file name in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Figures larger than this are linked rather than embedded: base64 adds a third, and a report
/// of hundreds of megabytes no longer opens quickly or fits in a mail.
const MAX_EMBEDDED_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write the run report {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Where the report of the run in `run_dir` is (or will be).
pub fn path_in(run_dir: &Path) -> PathBuf {
    run_dir.join(REPORT_FILE)
}

/// Writes the run's report into its directory, atomically: a browser reloading it, or a copy
/// taken meanwhile, sees the previous report or this one, never a half-written file.
pub fn write(record: &RunRecord, run_dir: &Path) -> Result<PathBuf, ReportError> {
    let html = render(record, run_dir);
    let path = path_in(run_dir);
    // The process id keeps two writers (a run finishing, `pipeline show`) off each other's file.
    let tmp = run_dir.join(format!(".{REPORT_FILE}.{}.tmp", std::process::id()));
    fs::write(&tmp, html).map_err(|source| ReportError::Write {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, &path).map_err(|source| {
        // Best effort: the rename error is the one to report, a stray temp file is harmless.
        let _ = fs::remove_file(&tmp);
        ReportError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// The run's report, written first when the run has none: a run that was killed before it
/// could write one, or one recorded before reports existed.
pub fn ensure(record: &RunRecord, run_dir: &Path) -> Result<PathBuf, ReportError> {
    let path = path_in(run_dir);
    if path.is_file() {
        Ok(path)
    } else {
        write(record, run_dir)
    }
}

/// The report as HTML. Published files are read from `run_dir`; one that cannot be read shows
/// as a note in place of its figure rather than costing the whole report.
pub fn render(record: &RunRecord, run_dir: &Path) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail; fmt::Result only lets the writer use `?`.
    let _ = render_into(&mut out, record, run_dir);
    out
}

fn render_into(out: &mut String, r: &RunRecord, run_dir: &Path) -> fmt::Result {
    let status = r.status_label();
    page::open(out, &format!("{} · run {}", r.experiment.name, r.id), "")?;

    writeln!(out, "<header>")?;
    writeln!(
        out,
        "<h1>{} <span class=\"badge {status}\">{status}</span></h1>",
        Esc(&r.experiment.name)
    )?;
    let name = r
        .name
        .as_deref()
        .map_or(String::new(), |n| format!(" · {}", Esc(n)));
    writeln!(
        out,
        "<p class=\"sub\">run <code>{}</code>{name}</p>",
        Esc(&r.id)
    )?;
    let description = r.experiment.description.trim();
    if !description.is_empty() {
        writeln!(out, "<p class=\"description\">{}</p>", Esc(description))?;
    }
    writeln!(out, "</header>")?;

    // What went wrong comes first: it is what a person opening a failed run looks for.
    if let Some(error) = &r.error {
        writeln!(
            out,
            "<section class=\"alert failed\" id=\"error\"><h2>Run failed</h2><pre>{}</pre></section>",
            Esc(error)
        )?;
    } else if status == "interrupted" {
        writeln!(
            out,
            "<section class=\"alert interrupted\"><h2>Run interrupted</h2><p>The process \
             ended before the run finished; the stages below are those that completed.</p></section>"
        )?;
    } else if status == "running" {
        writeln!(
            out,
            "<section class=\"alert running\"><h2>Run in progress</h2><p>The run was still going \
             when this report was written; it rewrites the report when it ends.</p></section>"
        )?;
    }

    let headline = Headline::of(r);
    summary(out, &headline)?;
    facts(out, r)?;
    metrics(out, r, &headline)?;
    figures(out, r, run_dir)?;
    stages(out, r)?;
    parameters(out, r)?;
    files(out, r)?;

    writeln!(
        out,
        "<footer>Written by pipeline {}. Self-contained: figures and styles are embedded; \
         linked files sit next to this report in the run directory.</footer>",
        Esc(env!("CARGO_PKG_VERSION"))
    )?;
    page::close(out, None)
}

/// The run's identity and circumstances, as a two-column list.
fn facts(out: &mut String, r: &RunRecord) -> fmt::Result {
    let mut rows: Vec<(&str, String)> = vec![("Run id", code(&r.id))];
    if let Some(name) = &r.name {
        rows.push(("Name", Esc(name).to_string()));
    }
    rows.push(("Status", Esc(r.status_label()).to_string()));
    rows.push(("Experiment", code(&r.experiment.path)));
    rows.push(("Started", Esc(&timestamp(&r.started)).to_string()));
    if let Some(finished) = &r.finished {
        rows.push(("Finished", Esc(&timestamp(finished)).to_string()));
    }
    if let Some(d) = r.duration_s {
        rows.push(("Duration", Esc(&format_seconds(d)).to_string()));
    }
    rows.push(("Seed", r.experiment.seed.to_string()));
    if !r.experiment.overrides.is_empty() {
        let list: Vec<String> = r.experiment.overrides.iter().map(|o| code(o)).collect();
        rows.push(("Overrides", list.join(" ")));
    }
    if r.no_cache {
        rows.push(("Cache", "not used (<code>--no-cache</code>)".into()));
    }
    rows.push(("Tool version", Esc(&r.tool_version).to_string()));
    if let Some(commit) = &r.git_commit {
        let dirty = if r.git_dirty == Some(true) {
            " with uncommitted changes"
        } else {
            ""
        };
        rows.push(("Git commit", format!("{}{dirty}", code(commit))));
    }
    rows.push(("Host CPU", Esc(&r.host.cpu).to_string()));
    rows.push(("Threads", r.host.threads.to_string()));
    rows.push((
        "Platform",
        Esc(&format!("{}-{}", r.host.os, r.host.arch)).to_string(),
    ));
    rows.push(("Data root", code(&r.data_root)));

    writeln!(
        out,
        "<section id=\"run\"><h2>Run</h2>\n<dl class=\"facts\">"
    )?;
    for (label, value) in rows {
        writeln!(out, "<dt>{label}</dt><dd>{value}</dd>")?;
    }
    writeln!(out, "</dl></section>")
}

/// The headline, first thing on the page: where the weights came from, the caveats, each
/// evaluation set side by side with intervals, and the generalization warnings.
fn summary(out: &mut String, h: &Headline) -> fmt::Result {
    if h.is_empty() {
        return Ok(());
    }
    writeln!(out, "<section id=\"headline\"><h2>Results</h2>")?;
    if let Some(w) = &h.weights {
        writeln!(
            out,
            "<p class=\"banner\"><strong>Base weights:</strong> {}</p>",
            Esc(w)
        )?;
    }
    for w in &h.warnings {
        writeln!(
            out,
            "<p class=\"alert failed warning\"><strong>Warning:</strong> {}</p>",
            Esc(w)
        )?;
    }
    if !h.caveats.is_empty() {
        writeln!(out, "<div class=\"caveats\"><h3>Caveats</h3><ul>")?;
        for c in h.caveats {
            writeln!(out, "<li>{}</li>", Esc(c))?;
        }
        writeln!(out, "</ul></div>")?;
    }
    if !h.sets.is_empty() {
        writeln!(out, "<table class=\"headline\"><thead><tr><th></th>")?;
        for s in &h.sets {
            writeln!(
                out,
                "<th>{}<br><span class=\"muted\">{}</span></th>",
                Esc(&s.title()),
                Esc(&s.make_up())
            )?;
        }
        writeln!(out, "</tr></thead><tbody>")?;
        for m in &h.metrics {
            write!(out, "<tr><th>{}</th>", Esc(&h.label(m)))?;
            for s in &h.sets {
                write!(out, "<td class=\"num\">{}</td>", Esc(&s.value_text(m)))?;
            }
            writeln!(out, "</tr>")?;
        }
        if h.class_rows.is_empty() {
            writeln!(
                out,
                "</tbody></table><p class=\"muted\">Brackets: 95 % intervals (Wilson for \
                 proportions). The remaining metrics are listed below.</p>"
            )?;
        } else {
            writeln!(out, "</tbody></table>")?;
            class_table(out, h)?;
            writeln!(
                out,
                "<p class=\"muted\">Brackets: 95 % intervals (Wilson for proportions); n/a: \
                 undefined (a class absent from a set has no sensitivity there). The remaining \
                 metrics are listed below.</p>"
            )?;
        }
    }
    writeln!(out, "</section>")
}

/// Three or more classes: each class's one-vs-rest metrics and the pairwise AUCs, the
/// evaluation sets side by side as in the headline table.
fn class_table(out: &mut String, h: &Headline) -> fmt::Result {
    writeln!(
        out,
        "<h3>Per class (one vs rest)</h3>\n<table class=\"headline per-class\"><thead><tr><th></th>"
    )?;
    for s in &h.sets {
        writeln!(out, "<th>{}</th>", Esc(&s.title()))?;
    }
    writeln!(out, "</tr></thead><tbody>")?;
    for (label, m) in &h.class_rows {
        write!(out, "<tr><th>{}</th>", Esc(label))?;
        for s in &h.sets {
            write!(out, "<td class=\"num\">{}</td>", Esc(&s.value_text(m)))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody></table>")
}

fn metrics(out: &mut String, r: &RunRecord, headline: &Headline) -> fmt::Result {
    let metrics: Vec<(String, f64)> = r
        .metrics()
        .into_iter()
        .filter(|(name, _)| !headline.shows(name))
        .collect();
    if metrics.is_empty() {
        return Ok(());
    }
    // A list flowing into columns: runs often have dozens of metrics, and one long two-column
    // table would push the figures far down the page.
    writeln!(
        out,
        "<section id=\"metrics\"><h2>Metrics</h2>\n<ul class=\"metrics\">"
    )?;
    for (name, value) in &metrics {
        writeln!(
            out,
            "<li><code>{}</code><span class=\"num\">{}</span></li>",
            Esc(name),
            Esc(&metric_text(name, *value))
        )?;
    }
    writeln!(out, "</ul></section>")
}

/// A file a stage placed in the run directory.
struct Published<'a> {
    stage: &'a str,
    /// Its name in the run directory.
    name: &'a str,
    size: u64,
}

fn published(r: &RunRecord) -> Vec<Published<'_>> {
    r.stages
        .iter()
        .flat_map(|s| {
            s.outputs.values().filter_map(move |o| {
                o.published.as_deref().map(|name| Published {
                    stage: &s.name,
                    name,
                    size: o.size,
                })
            })
        })
        .collect()
}

/// The extension of a file name, lower-cased, and its stem.
fn split_name(name: &str) -> (String, &str) {
    let path = Path::new(name);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    (ext, stem)
}

/// The published files shown as figures, with their media types: every `.png`, and every
/// `.svg` whose stem has no `.png` (stages often write both; the bitmap is the one to show).
fn figure_files<'a>(files: &'a [Published<'a>]) -> Vec<(&'a Published<'a>, &'static str)> {
    let png_stems: Vec<&str> = files
        .iter()
        .filter_map(|f| match split_name(f.name) {
            (ext, stem) if ext == "png" => Some(stem),
            _ => None,
        })
        .collect();
    files
        .iter()
        .filter_map(|f| match split_name(f.name) {
            (ext, _) if ext == "png" => Some((f, "image/png")),
            (ext, stem) if ext == "svg" && !png_stems.contains(&stem) => Some((f, "image/svg+xml")),
            _ => None,
        })
        .collect()
}

/// `figures` reordered so that figures of one name from different stages sit side by side, in
/// the order the first of each name came: each evaluation draws a `confusion.png`, published
/// as `confusion.png` and `external-confusion.png`, and the external set's belongs beside the
/// test split's.
fn side_by_side<'a>(
    mut figures: Vec<(&'a Published<'a>, &'static str)>,
) -> Vec<(&'a Published<'a>, &'static str)> {
    // The engine publishes a name already taken as `<stage>-<name>`.
    let base = |f: &Published<'a>| -> &'a str {
        f.name
            .strip_prefix(f.stage)
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(f.name)
    };
    let mut order: Vec<&str> = Vec::new();
    for (f, _) in &figures {
        if !order.contains(&base(f)) {
            order.push(base(f));
        }
    }
    figures.sort_by_key(|(f, _)| order.iter().position(|b| *b == base(f)));
    figures
}

fn figures(out: &mut String, r: &RunRecord, run_dir: &Path) -> fmt::Result {
    let files = published(r);
    let figures = side_by_side(figure_files(&files));
    if figures.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "<section id=\"figures\"><h2>Figures</h2>\n<div class=\"figures\">"
    )?;
    for (file, mime) in figures {
        let (_, stem) = split_name(file.name);
        // The prediction grid holds dozens of captioned thumbnails: at a grid cell's width its
        // captions are unreadable, so it takes the page's whole width (and links to itself).
        if stem.ends_with("predictions") {
            writeln!(out, "<figure class=\"wide\">")?;
        } else {
            writeln!(out, "<figure>")?;
        }
        match embed(&run_dir.join(file.name), file.size, mime) {
            // SVG goes in through <img> as well, not inline: an <img> runs no script the file
            // may hold and loads nothing it may reference.
            Ok(uri) => writeln!(
                out,
                "<a href=\"{}\"><img src=\"{uri}\" alt=\"{}\"></a>",
                Href(file.name),
                Esc(stem)
            )?,
            Err(reason) => writeln!(
                out,
                "<p class=\"missing\">Not embedded: {}. <a href=\"{}\">Open {}</a>.</p>",
                Esc(&reason),
                Href(file.name),
                Esc(file.name)
            )?,
        }
        writeln!(out, "<figcaption>{}</figcaption>\n</figure>", Esc(stem))?;
    }
    writeln!(out, "</div></section>")
}

/// A `data:` URI holding the file, or why it is not embedded.
fn embed(path: &Path, recorded_size: u64, mime: &str) -> Result<String, String> {
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(recorded_size);
    if size > MAX_EMBEDDED_BYTES {
        return Err(format!("{} is too large to embed", format_bytes(size)));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn stages(out: &mut String, r: &RunRecord) -> fmt::Result {
    writeln!(out, "<section id=\"stages\"><h2>Stages</h2>")?;
    if r.stages.is_empty() {
        return writeln!(out, "<p class=\"sub\">No stage finished.</p></section>");
    }
    writeln!(out, "<div class=\"scroll\"><table>")?;
    writeln!(
        out,
        "<thead><tr><th>Stage</th><th>Kind</th><th>Cache</th><th class=\"num\">Duration</th>\
         <th>Published</th><th>Key</th></tr></thead><tbody>"
    )?;
    for s in &r.stages {
        let (class, label) = cache_label(s.cache);
        let links: Vec<String> = s
            .outputs
            .values()
            .filter_map(|o| o.published.as_deref())
            .map(|p| format!("<a href=\"{}\">{}</a>", Href(p), Esc(p)))
            .collect();
        writeln!(
            out,
            "<tr><td><strong>{}</strong>{}</td><td class=\"nowrap\">{} <span class=\"sub\">v{}</span></td>\
             <td><span class=\"badge {class}\">{label}</span></td><td class=\"num\">{}</td>\
             <td>{}</td><td><code class=\"key\" title=\"{}\">{}</code></td></tr>",
            Esc(&s.name),
            notes(s),
            Esc(&s.kind),
            s.kind_version,
            Esc(&format_seconds(s.duration_s)),
            links.join("<br>"),
            Esc(&s.key),
            Esc(&s.key.chars().take(12).collect::<String>())
        )?;
    }
    writeln!(out, "</tbody></table></div></section>")
}

/// What a stage noted about its work (counts, sizes), under its name.
fn notes(s: &StageRecord) -> String {
    if s.notes.is_empty() {
        return String::new();
    }
    let items: Vec<String> = s
        .notes
        .iter()
        .map(|(k, v)| format!("{} = {}", Esc(k), Esc(&value_text(v))))
        .collect();
    format!("<div class=\"notes\">{}</div>", items.join("<br>"))
}

/// The cache use as hit or miss, with why a result was recomputed when it was not simply new.
fn cache_label(cache: CacheUse) -> (&'static str, &'static str) {
    match cache {
        CacheUse::Hit => ("hit", "hit"),
        CacheUse::Miss => ("miss", "miss"),
        CacheUse::Forced => ("miss", "miss (--no-cache)"),
        CacheUse::Damaged => ("miss", "miss (cache entry damaged)"),
        CacheUse::Remote => ("hit", "hit (remote cache)"),
    }
}

/// The effective parameters: top-level values (the seed), then one group per stage in run
/// order, then stages the run did not reach.
fn parameters(out: &mut String, r: &RunRecord) -> fmt::Result {
    writeln!(
        out,
        "<section id=\"parameters\"><h2>Parameters</h2>\n<div class=\"scroll\"><table>"
    )?;
    writeln!(
        out,
        "<thead><tr><th>Stage</th><th>Parameter</th><th>Value</th></tr></thead><tbody>"
    )?;
    let scalars: Vec<(&String, &toml::Value)> =
        r.params.iter().filter(|(_, v)| !v.is_table()).collect();
    // Top-level values such as the seed belong to the experiment, not to one stage.
    param_group(out, "(experiment)", &scalars)?;
    let mut order: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    for (name, value) in &r.params {
        if value.is_table() && !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    for stage in order {
        if let Some(table) = r.params.get(stage).and_then(|v| v.as_table()) {
            let rows: Vec<(&String, &toml::Value)> = table.iter().collect();
            param_group(out, stage, &rows)?;
        }
    }
    writeln!(out, "</tbody></table></div></section>")
}

fn param_group(out: &mut String, stage: &str, rows: &[(&String, &toml::Value)]) -> fmt::Result {
    for (i, (name, value)) in rows.iter().enumerate() {
        write!(out, "<tr>")?;
        if i == 0 {
            write!(
                out,
                "<th scope=\"rowgroup\" rowspan=\"{}\" class=\"group\">{}</th>",
                rows.len(),
                Esc(stage)
            )?;
        }
        writeln!(
            out,
            "<td><code>{}</code></td><td><code>{}</code></td></tr>",
            Esc(name),
            Esc(&value_text(value))
        )?;
    }
    Ok(())
}

fn files(out: &mut String, r: &RunRecord) -> fmt::Result {
    writeln!(
        out,
        "<section id=\"files\"><h2>Files</h2>\n<div class=\"scroll\"><table class=\"narrow\">"
    )?;
    writeln!(
        out,
        "<thead><tr><th>File</th><th>Stage</th><th class=\"num\">Size</th></tr></thead><tbody>"
    )?;
    for f in published(r) {
        writeln!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td></tr>",
            Href(f.name),
            Esc(f.name),
            Esc(f.stage),
            format_bytes(f.size)
        )?;
    }
    for (name, what) in [
        ("run.toml", "the run record"),
        ("experiment.toml", "the experiment as run"),
    ] {
        writeln!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"sub\">{what}</td><td></td></tr>",
            Href(name),
            Esc(name)
        )?;
    }
    writeln!(out, "</tbody></table></div></section>")
}

/// A parameter or note as written in TOML, strings without their quotes.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", Esc(text))
}

/// An RFC 3339 time from the record as `2026-11-25 18:15:02 UTC`, or as recorded if it is not
/// one.
fn timestamp(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use pipeline_engine::runs::record::{
        ExperimentRecord, Host, OutputRecord, RunStatus, StageRecord, RECORD_FORMAT,
    };

    fn output(file: &str, published: bool) -> OutputRecord {
        OutputRecord {
            file: file.into(),
            size: 3,
            blake3: "00".repeat(32),
            published: published.then(|| file.to_string()),
            volatile: false,
            floats: false,
        }
    }

    fn stage(name: &str, outputs: &[(&str, bool)], metrics: &[(&str, f64)]) -> StageRecord {
        StageRecord {
            name: name.into(),
            kind: "shell".into(),
            kind_version: 1,
            key: "ab".repeat(32),
            cache: CacheUse::Miss,
            duration_s: 1.25,
            params: toml::Table::new(),
            inputs: BTreeMap::new(),
            external: None,
            outputs: outputs
                .iter()
                .map(|(f, p)| (f.to_string(), output(f, *p)))
                .collect(),
            notes: toml::Table::new(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            device_class: None,
        }
    }

    fn record(stages: Vec<StageRecord>) -> RunRecord {
        let params: toml::Table = toml::from_str(
            "seed = 3\n[train]\nepochs = 2\nnote = \"a <b> & 'c'\"\n[evaluate]\nthreshold = 0.5\n",
        )
        .expect("params parse");
        RunRecord {
            format: RECORD_FORMAT,
            id: "20261125-181502-042-7c1e".into(),
            name: Some("base<line>".into()),
            status: RunStatus::Succeeded,
            error: None,
            failed_stage: None,
            pid: std::process::id(),
            started: "2026-11-25T18:15:02.042Z".into(),
            finished: Some("2026-11-25T18:15:05.000Z".into()),
            duration_s: Some(2.958),
            tool_version: "0.1.0".into(),
            git_commit: Some("c0ffee".into()),
            git_dirty: Some(true),
            host: Host {
                cpu: "Test CPU".into(),
                threads: 2,
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            data_root: "/data".into(),
            no_cache: false,
            experiment: ExperimentRecord {
                path: "exp.toml".into(),
                name: "demo".into(),
                description: "first line\nsecond <i>line</i>".into(),
                digest: "00".into(),
                seed: 3,
                overrides: vec![],
                caveats: vec![],
                headline: vec![],
            },
            params,
            device: None,
            stages,
        }
    }

    /// An evaluate stage's record: `test` input for the test split, none for an external set.
    fn evaluation(name: &str, internal: bool, metrics: &[(&str, f64)]) -> StageRecord {
        let mut s = stage(name, &[], metrics);
        s.kind = "evaluate".into();
        if internal {
            s.inputs.insert(
                "test".into(),
                pipeline_engine::runs::record::InputRecord {
                    from: "split.test".into(),
                    digest: "00".into(),
                },
            );
        }
        s
    }

    #[test]
    fn the_headline_comes_first_with_sets_side_by_side_caveats_weights_and_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = stage("model", &[], &[]);
        model.kind = "model".into();
        model.notes.insert(
            "weights".into(),
            "random (He-uniform kernels, zero biases, seed 42)".into(),
        );
        let rates = |sens: f64, spec: f64, n: f64| {
            vec![
                ("n_test", n),
                ("n_covid", 33.0),
                ("n_normal", n - 33.0),
                ("sensitivity", sens),
                ("sensitivity_ci_low", 0.847),
                ("sensitivity_ci_high", 0.995),
                ("specificity", spec),
                ("specificity_ci_low", 0.851),
                ("specificity_ci_high", 1.0),
                ("roc_auc", 0.99),
                ("true_positives", 32.0),
            ]
        };
        let mut r = record(vec![
            model,
            evaluation("evaluate", true, &rates(0.97, 1.0, 55.0)),
            evaluation("external", false, &rates(0.987, 0.01, 138.0)),
        ]);
        r.experiment.caveats = vec!["Every NORMAL image is <pediatric>.".into()];
        let html = render(&r, dir.path());
        let at = |needle: &str| {
            html.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing"))
        };
        // Before the run's facts and the other metrics.
        assert!(at("id=\"headline\"") < at("id=\"run\""));
        assert!(at("id=\"headline\"") < at("id=\"metrics\""));
        assert!(html.contains("random He-uniform, seed 42: not the seed&#39;s ImageNet weights"));
        assert!(html.contains("<li>Every NORMAL image is &lt;pediatric&gt;.</li>"));
        assert!(html.contains(
            "test split (`evaluate`)<br><span class=\"muted\">55 images: 33 COVID, 22 NORMAL"
        ));
        assert!(html.contains(
            "external set `external`<br><span class=\"muted\">138 images: 33 COVID, 105 NORMAL"
        ));
        assert!(html.contains(
            "<tr><th>sensitivity</th><td class=\"num\">0.970 [0.847, 0.995]</td><td class=\"num\">0.987 [0.847, 0.995]</td></tr>"
        ));
        assert!(html.contains("<strong>Warning:</strong> specificity on the external set `external` is 0.010, outside the test split&#39;s 95 % interval [0.851, 1.000]"));
        assert!(
            !html.contains("Warning:</strong> sensitivity"),
            "0.987 is inside"
        );
        // Counts are integers; headline metrics are not repeated below.
        assert!(
            html.contains("<li><code>external.true_positives</code><span class=\"num\">32</span>")
        );
        assert!(!html.contains("<code>external.sensitivity</code>"));

        // The experiment names its own headline metrics: those rows, in that order, and
        // the default ones move down to the other metrics.
        r.experiment.headline = vec!["specificity".into(), "true_positives".into()];
        let html = render(&r, dir.path());
        assert!(
            html.contains("<tr><th>specificity</th><td class=\"num\">1.000 [0.851, 1.000]</td>")
        );
        assert!(html.contains(
            "<tr><th>true positives</th><td class=\"num\">32</td><td class=\"num\">32</td></tr>"
        ));
        assert!(!html.contains("<tr><th>sensitivity</th>"));
        assert!(html.contains("<code>external.sensitivity</code>"));
        let (spec, tp) = (
            html.find("<tr><th>specificity</th>").expect("row"),
            html.find("<tr><th>true positives</th>").expect("row"),
        );
        assert!(spec < tp, "in the order named");

        // No external set disagreeing, no warning.
        let r = record(vec![
            evaluation("evaluate", true, &rates(0.97, 1.0, 55.0)),
            evaluation("external", false, &rates(0.96, 0.95, 138.0)),
        ]);
        let html = render(&r, dir.path());
        assert!(html.contains("id=\"headline\""));
        assert!(!html.contains("Warning:"));
    }

    #[test]
    fn three_classes_get_a_per_class_table_with_named_classes_and_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = |covid_sens: f64, n: f64| {
            vec![
                ("n_test", n),
                ("n_normal", 10.0),
                ("n_pneumonia", 0.0),
                ("n_covid_19", n - 10.0),
                ("test_accuracy", 0.8),
                ("test_accuracy_ci_low", 0.7),
                ("test_accuracy_ci_high", 0.9),
                ("macro_roc_auc", 0.9),
                ("sensitivity_covid_19", covid_sens),
                ("sensitivity_covid_19_ci_low", 0.8),
                ("sensitivity_covid_19_ci_high", 0.99),
                ("specificity_covid_19", 0.9),
                ("roc_auc_covid_19", 0.95),
                ("pairwise_roc_auc_pneumonia_vs_covid_19", 0.52),
            ]
        };
        let classes =
            toml::Value::Array(vec!["NORMAL".into(), "PNEUMONIA".into(), "COVID-19".into()]);
        let mut test = evaluation("evaluate", true, &metrics(0.95, 30.0));
        test.notes.insert("classes".into(), classes.clone());
        let mut external = evaluation("external", false, &metrics(0.4, 25.0));
        external.notes.insert("classes".into(), classes);
        let mut r = record(vec![test, external]);
        r.experiment.headline = vec![
            "sensitivity_covid_19".into(),
            "macro_roc_auc".into(),
            "pairwise_roc_auc_pneumonia_vs_covid_19".into(),
        ];
        let html = render(&r, dir.path());
        assert!(html.contains(
            "test split (`evaluate`)<br><span class=\"muted\">30 images: 10 NORMAL, 0 PNEUMONIA, 20 COVID-19"
        ), "{html}");
        assert!(html.contains(
            "<tr><th>COVID-19 sensitivity</th><td class=\"num\">0.950 [0.800, 0.990]</td><td class=\"num\">0.400 [0.800, 0.990]</td></tr>"
        ), "{html}");
        assert!(html.contains("<tr><th>macro ROC AUC</th><td class=\"num\">0.900</td>"));
        assert!(html.contains("<h3>Per class (one vs rest)</h3>"));
        // PNEUMONIA is absent from both sets: n/a, not 0.
        assert!(html.contains(
            "<tr><th>PNEUMONIA sensitivity</th><td class=\"num\">n/a</td><td class=\"num\">n/a</td></tr>"
        ), "{html}");
        assert!(html.contains(
            "<tr><th>PNEUMONIA vs COVID-19: pairwise ROC AUC</th><td class=\"num\">0.520</td>"
        ));
        assert!(html.contains(
            "<strong>Warning:</strong> COVID-19&#39;s sensitivity on the external set `external` is 0.400"
        ), "{html}");
        // Per-class metrics shown in the tables are not listed again below.
        assert!(!html.contains("<code>external.specificity_covid_19</code>"));
        assert!(!html.contains("<code>evaluate.n_covid_19</code>"));
    }

    #[test]
    fn the_prediction_grid_takes_the_whole_width() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("predictions.png"), b"\x89PNG").expect("write");
        fs::write(dir.path().join("roc.png"), b"\x89PNG").expect("write");
        let r = record(vec![stage(
            "plot",
            &[("predictions.png", true), ("roc.png", true)],
            &[],
        )]);
        let html = render(&r, dir.path());
        assert_eq!(html.matches("<figure class=\"wide\">").count(), 1, "{html}");
        assert!(html.contains("<figure class=\"wide\">\n<a href=\"./predictions.png\">"));
    }

    #[test]
    fn each_evaluation_s_figures_sit_beside_the_test_split_s() {
        let r = record(vec![
            stage(
                "evaluate",
                &[("confusion.png", true), ("roc.png", true)],
                &[],
            ),
            stage(
                "plot",
                &[("accuracy.png", true), ("predictions.png", true)],
                &[],
            ),
            stage(
                "external",
                &[("external-confusion.png", true), ("external-roc.png", true)],
                &[],
            ),
            // Named like its stage but not published under a taken name: left where it is.
            stage("external-extra", &[("external-extra.png", true)], &[]),
        ]);
        let files = published(&r);
        let names: Vec<&str> = side_by_side(figure_files(&files))
            .iter()
            .map(|(f, _)| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "confusion.png",
                "external-confusion.png",
                "roc.png",
                "external-roc.png",
                "accuracy.png",
                "predictions.png",
                "external-extra.png",
            ]
        );
    }

    #[test]
    fn figures_are_pngs_and_svgs_without_a_png() {
        let r = record(vec![
            stage("plot", &[("roc.png", true), ("roc.svg", true)], &[]),
            stage("draw", &[("curve.SVG", true), ("table.csv", true)], &[]),
            stage("hidden", &[("private.png", false)], &[]),
        ]);
        let files = published(&r);
        let figures: Vec<(&str, &str)> = figure_files(&files)
            .into_iter()
            .map(|(f, mime)| (f.name, mime))
            .collect();
        assert_eq!(
            figures,
            [("roc.png", "image/png"), ("curve.SVG", "image/svg+xml")]
        );
    }

    #[test]
    fn renders_metrics_parameters_and_facts_escaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("roc.png"), b"\x89PNG").expect("write");
        let r = record(vec![
            stage("train", &[("history.csv", true)], &[("loss", 0.25)]),
            stage("evaluate", &[("roc.png", true)], &[("accuracy", 0.875)]),
        ]);
        let html = render(&r, dir.path());
        assert!(html.contains("<title>demo · run 20261125-181502-042-7c1e</title>"));
        assert!(html.contains("<li><code>evaluate.accuracy</code><span class=\"num\">0.875</span>"));
        assert!(html.contains("<li><code>train.loss</code><span class=\"num\">0.25</span>"));
        assert!(html.contains("src=\"data:image/png;base64,iVBORw==\""));
        assert!(html.contains("<a href=\"./history.csv\">history.csv</a>"));
        assert!(html.contains("second &lt;i&gt;line&lt;/i&gt;"));
        assert!(html.contains("base&lt;line&gt;"));
        assert!(html.contains("<code>a &lt;b&gt; &amp; &#39;c&#39;</code>"));
        assert!(html.contains("<dt>Started</dt><dd>2026-11-25 18:15:02 UTC</dd>"));
        assert!(html.contains("<code>c0ffee</code> with uncommitted changes"));
        assert!(html.contains("<dt>Host CPU</dt><dd>Test CPU</dd>"));
        assert!(html.contains("<dt>Threads</dt><dd>2</dd>"));
        assert!(
            !html.contains("id=\"error\""),
            "a succeeded run has no error"
        );
        // Parameters follow the stages' run order, not the alphabet.
        let train = html
            .find("rowspan=\"2\" class=\"group\">train<")
            .expect("train");
        let evaluate = html.find("class=\"group\">evaluate<").expect("evaluate");
        assert!(train < evaluate);
    }

    #[test]
    fn a_failed_run_shows_its_error_first_and_a_missing_figure_is_noted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = record(vec![stage("plot", &[("gone.png", true)], &[])]);
        r.status = RunStatus::Failed;
        r.error = Some("stage `x` failed: <boom> & more".into());
        let html = render(&r, dir.path());
        let error = html
            .find("<pre>stage `x` failed: &lt;boom&gt; &amp; more</pre>")
            .expect("error shown escaped");
        assert!(error < html.find("id=\"run\"").expect("facts"));
        assert!(html.contains("<span class=\"badge failed\">failed</span>"));
        assert!(html.contains("Not embedded: cannot read"), "{html}");
        assert!(html.contains("<a href=\"./gone.png\">Open gone.png</a>"));
    }

    #[test]
    fn writes_atomically_and_ensure_keeps_an_existing_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = record(vec![]);
        let path = write(&r, dir.path()).expect("write");
        assert_eq!(path, dir.path().join(REPORT_FILE));
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [REPORT_FILE], "no temp file left");
        fs::write(&path, "kept").expect("overwrite");
        assert_eq!(ensure(&r, dir.path()).expect("ensure"), path);
        assert_eq!(fs::read_to_string(&path).expect("read"), "kept");
        fs::remove_file(&path).expect("remove");
        ensure(&r, dir.path()).expect("ensure");
        assert!(fs::read_to_string(&path)
            .expect("read")
            .starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn a_report_that_cannot_be_written_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-run");
        let err = write(&record(vec![]), &missing).expect_err("no directory");
        let text = err.to_string();
        assert!(text.contains("no-such-run"), "{text}");
        assert!(text.starts_with("cannot write the run report"), "{text}");
    }
}
