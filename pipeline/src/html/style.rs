//! The pages' CSS: one style sheet (light and dark, print) that the run report, compare and
//! sweep pages all start from, plus the rules of their inline SVG charts.

/// The style sheet every page starts from.
pub const CSS: &str = r#"
:root {
  color-scheme: light dark;
  --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --panel: #f6f8fa; --line: #d1d9e0;
  --accent: #0969da; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700;
}
@media (prefers-color-scheme: dark) {
  :root {
    --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --panel: #151b23; --line: #3d444d;
    --accent: #4493f8; --ok: #3fb950; --bad: #f85149; --warn: #d29922;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main { max-width: 1200px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 1.9em; line-height: 1.25; margin: 0 0 4px; overflow-wrap: anywhere; }
h1 .badge { font-size: 0.45em; vertical-align: middle; }
h2 { font-size: 1.2em; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
.alert h2 { margin: 0 0 8px; border: 0; padding: 0; }
.sub { color: var(--muted); margin: 0; }
.description { margin: 12px 0 0; max-width: 80ch; white-space: pre-line; overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.88em; }
code { white-space: pre-wrap; overflow-wrap: anywhere; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.badge {
  display: inline-block; padding: 0 9px; border: 1px solid currentColor; border-radius: 999px;
  font-size: 0.82em; font-weight: 600; white-space: nowrap;
}
.succeeded, .hit { color: var(--ok); }
.failed { color: var(--bad); }
.running, .interrupted { color: var(--warn); }
.miss { color: var(--muted); }
.alert {
  margin: 24px 0 0; padding: 14px 18px; border: 1px solid currentColor; border-left-width: 5px;
  border-radius: 6px; background: var(--panel);
}
.alert p, .alert pre { color: var(--fg); margin: 0; }
.alert pre { white-space: pre-wrap; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 20px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
table.narrow { width: auto; min-width: 50%; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--panel); font-weight: 600; white-space: nowrap; }
th.group { background: var(--panel); font-weight: 600; white-space: nowrap; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notes { color: var(--muted); font-size: 0.85em; margin-top: 2px; overflow-wrap: anywhere; }
code.key, .nowrap { white-space: nowrap; }
ul.metrics { list-style: none; margin: 0; padding: 0; columns: 3 260px; column-gap: 32px; }
ul.metrics li {
  display: flex; justify-content: space-between; gap: 16px; padding: 4px 2px;
  border-bottom: 1px solid var(--line); break-inside: avoid;
}
.figures {
  display: grid; gap: 18px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr));
}
figure {
  margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 8px;
  display: flex; flex-direction: column; justify-content: space-between; min-width: 0;
}
figure a { display: block; }
figure img {
  display: block; margin: 0 auto; max-width: 100%; max-height: 560px; height: auto;
  /* Thumbnails a few pixels wide would otherwise be a dot in their card. */
  min-width: min(100%, 160px);
  background: #ffffff; border-radius: 4px;
}
figure.wide { grid-column: 1 / -1; }
figure.wide img { max-height: none; }
.muted { color: var(--muted); font-weight: normal; }
.banner { margin: 0 0 10px; }
p.warning { margin: 10px 0; }
.caveats { margin: 10px 0; padding: 10px 16px; border-left: 5px solid var(--warn); background: var(--panel); border-radius: 6px; }
.caveats h3 { margin: 0 0 4px; font-size: 1em; }
.caveats ul { margin: 0; padding-left: 20px; }
table.headline { width: auto; margin-top: 12px; }
figcaption { margin-top: 10px; text-align: center; font-weight: 600; overflow-wrap: anywhere; }
.missing { color: var(--muted); margin: 0; }
footer { margin-top: 44px; color: var(--muted); font-size: 0.85em; }
@media print {
  main { max-width: none; padding: 0; }
  figure, tr { break-inside: avoid; }
}
"#;

/// The rule of the inline SVG charts ([`super::charts`]): as wide as the page allows, drawn in
/// the text colour.
pub const CHART_CSS: &str = "svg.chart { max-width: 100%; height: auto; color: var(--fg); }";
