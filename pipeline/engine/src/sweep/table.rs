//! A sweep's table: one row per point with its status, run and metrics, kept as
//! `artifacts/sweeps/ID/table.json` (whole, read back to resume) and `table.csv`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiment::sweep_spec::{value_text, Goal, Point, SweepSpec};
use crate::experiment::Experiment;

use super::write_atomically;

/// Version of the table's layout.
pub const TABLE_FORMAT: u32 = 1;

/// Where a point's run stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub point: Point,
    pub status: PointStatus,
    /// The point's run, once it has one.
    pub run: Option<String>,
    pub error: Option<String>,
    /// The point's log, relative to the sweep's directory.
    pub log: String,
    pub duration_s: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// A sweep's table: `table.json` (this, whole) and `table.csv` (one row per point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepTable {
    pub format: u32,
    pub id: String,
    pub experiment: String,
    pub experiment_path: String,
    /// `--set` overrides every point shares.
    pub base_overrides: Vec<String>,
    pub search: String,
    /// The swept keys, in order.
    pub keys: Vec<String>,
    pub goal: Option<Goal>,
    /// The experiment's headline metrics, which lead the metric columns (empty: the
    /// default order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headline: Vec<String>,
    pub points: Vec<PointRecord>,
    pub updated: String,
}

impl SweepTable {
    pub fn new(
        id: &str,
        exp: &Experiment,
        base_overrides: &[String],
        spec: &SweepSpec,
        points: &[Point],
        goal: Option<Goal>,
    ) -> SweepTable {
        let width = points.len().to_string().len().max(2);
        SweepTable {
            format: TABLE_FORMAT,
            id: id.to_string(),
            experiment: exp.name.clone(),
            experiment_path: exp.path.display().to_string(),
            base_overrides: base_overrides.to_vec(),
            search: spec.describe(points.len()),
            keys: spec.keys(),
            goal,
            headline: exp.headline.clone(),
            points: points
                .iter()
                .map(|p| PointRecord {
                    point: p.clone(),
                    status: PointStatus::Pending,
                    run: None,
                    error: None,
                    log: format!("logs/{:0width$}.log", p.index),
                    duration_s: None,
                    metrics: BTreeMap::new(),
                })
                .collect(),
            updated: now(),
        }
    }

    /// The succeeded point with the best value of the goal's metric.
    pub fn best(&self) -> Option<&PointRecord> {
        let goal = self.goal.as_ref()?;
        self.points
            .iter()
            .filter(|p| p.status == PointStatus::Succeeded)
            .filter_map(|p| p.metrics.get(&goal.metric).map(|v| (p, *v)))
            .filter(|(_, v)| v.is_finite())
            .fold(
                None,
                |best: Option<(&PointRecord, f64)>, (p, v)| match best {
                    Some((_, b)) if !goal.better(v, b) => best,
                    _ => Some((p, v)),
                },
            )
            .map(|(p, _)| p)
    }

    /// Every metric any point has, in display order (headline metrics first).
    pub fn metric_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.points.iter().flat_map(|p| p.metrics.keys()).collect();
        let headline = (!self.headline.is_empty()).then_some(self.headline.as_slice());
        crate::runs::query::metric_order(names, headline)
    }

    pub fn read(dir: &Path) -> Option<SweepTable> {
        let bytes = fs::read(dir.join("table.json")).ok()?;
        serde_json::from_slice::<SweepTable>(&bytes)
            .ok()
            .filter(|t| t.format == TABLE_FORMAT)
    }

    /// Writes `table.json` and `table.csv`, each atomically.
    pub fn write(&mut self, dir: &Path) -> std::io::Result<()> {
        self.updated = now();
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(&dir.join("table.json"), &json)?;
        write_atomically(&dir.join("table.csv"), self.csv().as_bytes())
    }

    /// One row per point: point, the swept values, status, run, the metrics, error, log.
    pub fn csv(&self) -> String {
        let metrics = self.metric_names();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["point".to_string()];
        header.extend(self.keys.iter().cloned());
        header.extend(["status", "run", "duration_s"].map(String::from));
        header.extend(metrics.iter().cloned());
        header.extend(["error", "log"].map(String::from));
        rows.push(header);
        for p in &self.points {
            let mut row = vec![p.point.index.to_string()];
            for key in &self.keys {
                row.push(
                    p.point
                        .values
                        .iter()
                        .find(|v| &v.key == key)
                        .map_or(String::new(), |v| value_text(&v.value)),
                );
            }
            row.push(
                match p.status {
                    PointStatus::Pending => "pending",
                    PointStatus::Succeeded => "succeeded",
                    PointStatus::Failed => "failed",
                }
                .to_string(),
            );
            row.push(p.run.clone().unwrap_or_default());
            row.push(p.duration_s.map_or(String::new(), |d| format!("{d:.3}")));
            for m in &metrics {
                row.push(p.metrics.get(m).map_or(String::new(), |v| format!("{v}")));
            }
            row.push(p.error.clone().unwrap_or_default());
            row.push(p.log.clone());
            rows.push(row);
        }
        rows.iter()
            .map(|r| r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","))
            .map(|line| line + "\n")
            .collect()
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The directory of sweep `id` in the store at `artifacts`.
pub fn sweep_dir(artifacts: &Path, id: &str) -> PathBuf {
    artifacts.join("sweeps").join(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::sweep_spec::tests::axis;

    #[test]
    fn goals_parse_and_the_best_point_follows_them() {
        assert_eq!(
            Goal::parse("evaluate.roc_auc").expect("goal"),
            Goal {
                metric: "evaluate.roc_auc".into(),
                maximize: true
            }
        );
        assert!(!Goal::parse("train.final_loss:min").expect("goal").maximize);
        assert!(Goal::parse("x:best").is_err());
        let spec = SweepSpec {
            grid: vec![axis("a.x", &[1, 2, 3])],
            ..SweepSpec::default()
        };
        let points = spec.points().expect("points");
        let exp_text = "name = \"e\"\n[stages.s]\nkind = \"k\"\n";
        let exp = Experiment {
            path: "e.toml".into(),
            text: exp_text.into(),
            digest: blake3::hash(exp_text.as_bytes()),
            name: "e".into(),
            description: String::new(),
            seed: 0,
            stages: vec![],
            overrides: vec![],
            sweep: None,
            caveats: vec![],
            headline: vec![],
        };
        let mut table =
            SweepTable::new("e-1", &exp, &[], &spec, &points, Goal::parse("m:min").ok());
        for (i, v) in [(0, 0.5), (1, 0.2), (2, f64::NAN)] {
            table.points[i].status = PointStatus::Succeeded;
            table.points[i].metrics.insert("m".into(), v);
        }
        assert_eq!(table.best().map(|p| p.point.index), Some(2));
        table.goal = Goal::parse("m:max").ok();
        assert_eq!(table.best().map(|p| p.point.index), Some(1));
        let csv = table.csv();
        assert!(
            csv.starts_with("point,a.x,status,run,duration_s,m,error,log\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\n2,2,succeeded,,,0.2,,logs/02.log\n"),
            "{csv}"
        );

        // The experiment's headline metrics lead, each with its other evaluation sets.
        for name in [
            "evaluate.accuracy",
            "external.roc_auc",
            "evaluate.roc_auc",
            "x.zeta",
        ] {
            table.points[0].metrics.insert(name.into(), 1.0);
        }
        table.headline = vec!["roc_auc".into()];
        assert_eq!(
            table.metric_names(),
            [
                "evaluate.roc_auc",
                "external.roc_auc",
                "evaluate.accuracy",
                "m",
                "x.zeta"
            ]
        );
    }
}
