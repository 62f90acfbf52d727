//! What differs between two recorded runs, and why. Reads run records only.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::runs::index::flatten_params;
use crate::runs::record::{RunRecord, StageRecord};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    /// `stage.param`, or `seed`.
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageChange {
    pub stage: String,
    /// The first cause of the new key: a parameter of its own, or which input changed.
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    pub name: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
}

impl MetricChange {
    pub fn change(&self) -> Option<f64> {
        Some(self.new? - self.old?)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputChange {
    pub stage: String,
    pub output: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The stage had the same key in both runs: equal inputs gave different bytes.
    pub non_reproducible: bool,
    /// Float data of a stage computed on two device classes: expected to differ in its last
    /// bits, so compared through the metrics instead.
    #[serde(default)]
    pub across_devices: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDiff {
    pub old: String,
    pub new: String,
    /// What to know before reading the rest: runs of two different experiments, a run that
    /// failed (and where).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub params: Vec<ParamChange>,
    pub stages: Vec<StageChange>,
    pub metrics: Vec<MetricChange>,
    pub outputs: Vec<OutputChange>,
    /// The device classes of the two runs, and so how outputs were compared.
    pub device: DeviceComparison,
}

/// Which comparison a diff made: bit for bit within one device class; across classes, float
/// outputs of device-dependent stages through the metrics, within `tolerance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceComparison {
    pub old: String,
    pub new: String,
    pub exact: bool,
    /// Absolute tolerance of the metrics across device classes.
    pub tolerance: f64,
    /// Metrics beyond the tolerance, across device classes.
    pub out_of_tolerance: Vec<String>,
}

impl RunDiff {
    /// An output differs beyond what the comparison allows: any digest within one device
    /// class; across classes, a non-float digest or a metric out of tolerance.
    pub fn any_output_differs(&self) -> bool {
        self.outputs.iter().any(|o| !o.across_devices) || !self.device.out_of_tolerance.is_empty()
    }

    pub fn non_reproducible(&self) -> impl Iterator<Item = &OutputChange> {
        self.outputs.iter().filter(|o| o.non_reproducible)
    }
}

/// Compares run `old` with run `new`. With `all`, unchanged parameters and metrics are listed
/// too.
pub fn diff(old: &RunRecord, new: &RunRecord, all: bool) -> RunDiff {
    RunDiff {
        old: old.id.clone(),
        new: new.id.clone(),
        notes: notes(old, new),
        params: param_changes(old, new, all),
        stages: stage_changes(old, new),
        metrics: metric_changes(old, new, all),
        outputs: output_changes(old, new),
        device: device_comparison(old, new),
    }
}

/// Absolute tolerance of metrics between runs on different device classes (as lock files
/// allow between instruction sets).
pub const DEVICE_METRIC_TOLERANCE: f64 = crate::repro::lock::DEFAULT_METRIC_TOLERANCE;

fn device_comparison(old: &RunRecord, new: &RunRecord) -> DeviceComparison {
    let (a, b) = (
        crate::runs::record::device_class(old),
        crate::runs::record::device_class(new),
    );
    let exact = a == b;
    let out_of_tolerance = if exact {
        Vec::new()
    } else {
        crate::repro::verify::compare_metrics(old, new, DEVICE_METRIC_TOLERANCE)
            .into_iter()
            .filter(|m| !m.within)
            .map(|m| m.name)
            .collect()
    };
    DeviceComparison {
        old: a.to_string(),
        new: b.to_string(),
        exact,
        tolerance: DEVICE_METRIC_TOLERANCE,
        out_of_tolerance,
    }
}

/// Warnings that change how the rest reads.
fn notes(old: &RunRecord, new: &RunRecord) -> Vec<String> {
    let mut notes = Vec::new();
    if old.experiment.name != new.experiment.name {
        notes.push(format!(
            "these runs are of different experiments: `{}` ({}) and `{}` ({}); every difference \
             below may come from that",
            old.experiment.name, old.experiment.path, new.experiment.name, new.experiment.path
        ));
    }
    for (which, r) in [("old", old), ("new", new)] {
        if let Some(stage) = r.failed_at() {
            let error = r.failure_reason().unwrap_or("no error recorded");
            notes.push(format!(
                "the {which} run {} failed at stage `{stage}`: {error}",
                r.id
            ));
        }
    }
    notes
}

/// Names the data files behind each "its data files changed", given each stage key's data
/// files (name -> digest) as the cache's manifests record them; `files_of` returns `None`
/// for an entry no longer cached, whose cause then stays as it is.
pub fn name_data_files(
    d: &mut RunDiff,
    old: &RunRecord,
    new: &RunRecord,
    files_of: impl Fn(&str) -> Option<BTreeMap<String, String>>,
) {
    for change in &mut d.stages {
        if change.cause != DATA_CHANGED {
            continue;
        }
        let (Some(o), Some(n)) = (old.stage(&change.stage), new.stage(&change.stage)) else {
            continue;
        };
        let (Some(before), Some(after)) = (files_of(&o.key), files_of(&n.key)) else {
            continue;
        };
        let mut modified = Vec::new();
        let mut added = Vec::new();
        for (name, digest) in &after {
            match before.get(name) {
                None => added.push(name.as_str()),
                Some(old_digest) if old_digest != digest => modified.push(name.as_str()),
                Some(_) => {}
            }
        }
        let removed: Vec<&str> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(String::as_str)
            .collect();
        let parts: Vec<String> = [
            ("modified", modified),
            ("added", added),
            ("removed", removed),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(label, names)| format!("{} {label} ({})", names.len(), crate::human::brief(&names)))
        .collect();
        if !parts.is_empty() {
            change.cause = format!("{DATA_CHANGED}: {}", parts.join(", "));
        }
    }
}

const DATA_CHANGED: &str = "its data files changed";

fn param_changes(old: &RunRecord, new: &RunRecord, all: bool) -> Vec<ParamChange> {
    let a = flatten_params(&old.params);
    let b = flatten_params(&new.params);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| all || a.get(*k) != b.get(*k))
        .map(|k| ParamChange {
            key: k.clone(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

fn stage_changes(old: &RunRecord, new: &RunRecord) -> Vec<StageChange> {
    let mut changes = Vec::new();
    for s in &new.stages {
        match old.stage(&s.name) {
            None => changes.push(StageChange {
                stage: s.name.clone(),
                cause: missing_cause(old, &s.name, "old").unwrap_or_else(|| "new stage".into()),
            }),
            Some(o) if o.key != s.key => changes.push(StageChange {
                stage: s.name.clone(),
                cause: first_cause(o, s),
            }),
            Some(_) => {}
        }
    }
    for o in &old.stages {
        if new.stage(&o.name).is_none() {
            changes.push(StageChange {
                stage: o.name.clone(),
                cause: missing_cause(new, &o.name, "new").unwrap_or_else(|| "removed".into()),
            });
        }
    }
    changes
}

/// Why `run` has no record of `stage` when that is because it failed: the stage failed
/// there, or the run stopped before it. `None` when the stage is simply not in that run.
fn missing_cause(run: &RunRecord, stage: &str, which: &str) -> Option<String> {
    let failed_at = run.failed_at()?;
    if !run.params.get(stage).is_some_and(toml::Value::is_table) {
        return None;
    }
    Some(if failed_at == stage {
        format!("failed in the {which} run")
    } else {
        format!("not reached in the {which} run (it failed at `{failed_at}`)")
    })
}

fn first_cause(old: &StageRecord, new: &StageRecord) -> String {
    if old.kind != new.kind {
        return format!("kind changed from `{}` to `{}`", old.kind, new.kind);
    }
    if old.kind_version != new.kind_version {
        return format!(
            "kind `{}` changed its behaviour (version {} -> {})",
            new.kind, old.kind_version, new.kind_version
        );
    }
    let params: BTreeSet<&String> = old.params.keys().chain(new.params.keys()).collect();
    for p in params {
        let (a, b) = (old.params.get(p), new.params.get(p));
        if a != b {
            let show = |v: Option<&toml::Value>| v.map_or("(unset)".into(), |v| v.to_string());
            return format!("parameter `{p}` changed: {} -> {}", show(a), show(b));
        }
    }
    for (slot, input) in &new.inputs {
        if old.inputs.get(slot).map(|i| &i.digest) != Some(&input.digest) {
            return format!("input `{slot}` changed (from `{}`)", input.from);
        }
    }
    if old.external.as_ref().map(|e| &e.digest) != new.external.as_ref().map(|e| &e.digest) {
        return DATA_CHANGED.into();
    }
    "its key changed (a different version of pipeline?)".into()
}

fn metric_changes(old: &RunRecord, new: &RunRecord, all: bool) -> Vec<MetricChange> {
    let a = old.metrics();
    let b = new.metrics();
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .map(|n| MetricChange {
            name: n.clone(),
            old: a.get(n).copied(),
            new: b.get(n).copied(),
        })
        .filter(|m| all || m.old.map(f64::to_bits) != m.new.map(f64::to_bits))
        .collect()
}

fn output_changes(old: &RunRecord, new: &RunRecord) -> Vec<OutputChange> {
    let mut changes = Vec::new();
    for s in &new.stages {
        let Some(o) = old.stage(&s.name) else {
            continue;
        };
        let names: BTreeSet<&String> = s.outputs.keys().chain(o.outputs.keys()).collect();
        for name in names {
            let volatile = [s.outputs.get(name), o.outputs.get(name)]
                .iter()
                .any(|r| r.is_some_and(|r| r.volatile));
            if volatile {
                continue;
            }
            let a = o.outputs.get(name).map(|r| r.blake3.clone());
            let b = s.outputs.get(name).map(|r| r.blake3.clone());
            let floats = s.outputs.get(name).is_some_and(|r| r.floats);
            let classes_differ = o
                .device_class
                .as_deref()
                .unwrap_or(crate::device::CPU_CLASS)
                != s.device_class
                    .as_deref()
                    .unwrap_or(crate::device::CPU_CLASS);
            if a != b {
                changes.push(OutputChange {
                    stage: s.name.clone(),
                    output: name.clone(),
                    old: a,
                    new: b,
                    non_reproducible: o.key == s.key,
                    across_devices: floats && classes_differ,
                });
            }
        }
    }
    changes
}

/// Renders a diff for people: plain text or a Markdown report.
pub fn render(d: &RunDiff, markdown: bool) -> String {
    let mut out = String::new();
    let heading = |out: &mut String, title: &str| {
        if markdown {
            out.push_str(&format!("\n### {title}\n\n"));
        } else {
            out.push_str(&format!("\n{title}\n"));
        }
    };
    let row = |out: &mut String, cells: &[String]| {
        if markdown {
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        } else {
            out.push_str(&format!("  {}\n", cells.join("  ")));
        }
    };
    if markdown {
        out.push_str(&format!("## `{}` -> `{}`\n", d.old, d.new));
    } else {
        out.push_str(&format!("{} -> {}\n", d.old, d.new));
    }
    for note in &d.notes {
        out.push_str(&if markdown {
            format!("\n> **Note:** {note}\n")
        } else {
            format!("\nnote: {note}\n")
        });
    }
    let dev = &d.device;
    out.push_str(&if dev.exact {
        format!(
            "device: {} in both: outputs compared bit for bit\n",
            dev.old
        )
    } else {
        format!(
            "device: {} -> {}: float outputs of device-dependent stages compared through metrics within {}{}\n",
            dev.old,
            dev.new,
            dev.tolerance,
            if dev.out_of_tolerance.is_empty() {
                " (all within)".to_string()
            } else {
                format!(" (OUT OF TOLERANCE: {})", dev.out_of_tolerance.join(", "))
            }
        )
    });
    let non_repro: Vec<&OutputChange> = d.non_reproducible().collect();
    if !non_repro.is_empty() {
        let warn = format!(
            "NOT REPRODUCIBLE: {} output(s) differ although their stage had the same key: {}",
            non_repro.len(),
            non_repro
                .iter()
                .map(|o| format!("{}.{}", o.stage, o.output))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push_str(&if markdown {
            format!("\n> **{warn}**\n")
        } else {
            format!("\n!!! {warn}\n")
        });
    }

    heading(&mut out, "parameters");
    if d.params.is_empty() {
        out.push_str(if markdown {
            "none changed\n"
        } else {
            "  none changed\n"
        });
    } else {
        if markdown {
            out.push_str("| parameter | old | new |\n|---|---|---|\n");
        }
        for p in &d.params {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
            if markdown {
                row(
                    &mut out,
                    &[format!("`{}`", p.key), show(&p.old), show(&p.new)],
                );
            } else {
                row(
                    &mut out,
                    &[format!("{}: {} -> {}", p.key, show(&p.old), show(&p.new))],
                );
            }
        }
    }

    heading(&mut out, "stages recomputed");
    if d.stages.is_empty() {
        out.push_str(if markdown {
            "none: every key is the same\n"
        } else {
            "  none: every key is the same\n"
        });
    }
    for s in &d.stages {
        if markdown {
            out.push_str(&format!("- `{}`: {}\n", s.stage, s.cause));
        } else {
            row(&mut out, &[format!("{}: {}", s.stage, s.cause)]);
        }
    }

    heading(&mut out, "metrics");
    if d.metrics.is_empty() {
        out.push_str(if markdown {
            "none changed\n"
        } else {
            "  none changed\n"
        });
    } else {
        let width = d.metrics.iter().map(|m| m.name.len()).max().unwrap_or(0);
        if markdown {
            out.push_str("| metric | old | new | change |\n|---|---:|---:|---:|\n");
        }
        for m in &d.metrics {
            let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.6}"));
            let change = m.change().map_or("-".into(), |c| format!("{c:+.6}"));
            if markdown {
                row(
                    &mut out,
                    &[format!("`{}`", m.name), show(m.old), show(m.new), change],
                );
            } else {
                row(
                    &mut out,
                    &[
                        format!("{:<width$}", m.name),
                        format!("{:>12}", show(m.old)),
                        format!("{:>12}", show(m.new)),
                        format!("{change:>12}"),
                    ],
                );
            }
        }
    }

    heading(&mut out, "outputs that differ");
    if d.outputs.is_empty() {
        out.push_str(if markdown {
            "none: every output is byte-identical\n"
        } else {
            "  none: every output is byte-identical\n"
        });
    }
    for o in &d.outputs {
        let short = |v: &Option<String>| {
            v.as_deref()
                .map_or("-".to_string(), |s| s[..12.min(s.len())].to_string())
        };
        let flag = if o.non_reproducible {
            "  NOT REPRODUCIBLE (same key)"
        } else if o.across_devices {
            "  (float data from another device class: compared through metrics)"
        } else {
            ""
        };
        let line = format!(
            "{}.{}: {} -> {}{flag}",
            o.stage,
            o.output,
            short(&o.old),
            short(&o.new)
        );
        if markdown {
            out.push_str(&format!("- {line}\n"));
        } else {
            row(&mut out, &[line]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repro::verify::tests::run_on;

    #[test]
    fn a_diff_says_which_comparison_it_made() {
        // One device class: the differing float output is a difference, bit for bit.
        let same = diff(&run_on("cpu", "f1", 0.9), &run_on("cpu", "f2", 0.9), false);
        assert!(same.device.exact);
        assert!(same.any_output_differs());
        let text = render(&same, false);
        assert!(
            text.contains("device: cpu in both: outputs compared bit for bit"),
            "{text}"
        );

        // Across classes: the float output is expected to differ; the metrics decide.
        let across = diff(
            &run_on("cpu", "f1", 0.9),
            &run_on("cuda-fp32", "f2", 0.9003),
            false,
        );
        assert!(!across.device.exact);
        assert!(
            across.outputs.iter().all(|o| o.across_devices),
            "{across:?}"
        );
        assert!(!across.any_output_differs(), "{across:?}");
        let text = render(&across, false);
        assert!(text.contains("device: cpu -> cuda-fp32"), "{text}");
        assert!(text.contains("(all within)"), "{text}");

        let far = diff(
            &run_on("cpu", "f1", 0.9),
            &run_on("cuda-tf32", "f2", 0.7),
            false,
        );
        assert_eq!(far.device.out_of_tolerance, ["evaluate.accuracy"]);
        assert!(far.any_output_differs());
        assert!(render(&far, false).contains("OUT OF TOLERANCE: evaluate.accuracy"));
    }
}
