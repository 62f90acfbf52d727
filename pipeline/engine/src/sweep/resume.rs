//! What a rerun of a sweep takes over from the earlier run of it: the points that succeeded,
//! each with the metrics of its run record. The run records are the truth and the table is a
//! view of them, so a done point's metrics are read from its record, never from the earlier
//! `table.json` (an edited table would otherwise name a wrong best point).

use crate::runs::record::{RecordError, RunStatus, RunStore};

use super::point_run_name;
use super::table::{PointStatus, SweepTable};

/// A point that succeeded in the earlier run but runs again, because its run record cannot
/// be taken over: gone, damaged, not succeeded, or not this point's run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerun {
    pub index: usize,
    pub why: String,
}

/// What [`resume`] took over.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Points taken over as succeeded.
    pub done: usize,
    pub rerun: Vec<Rerun>,
}

/// Takes over the rows of `earlier` (the same sweep's table, as last written) into `table`:
/// a point that succeeded is kept, with its metrics from its run record, when that record is
/// a readable succeeded run named as this point's run; otherwise it is run again (said in
/// [`Resumed::rerun`]), which is safe: the cache makes a rerun of what was computed cheap, and
/// a damaged record is left in place for `pipeline runs` to name. A failed point keeps its
/// error until it runs again, so that an interrupted retry still shows why it failed.
pub fn resume(table: &mut SweepTable, earlier: Option<&SweepTable>, runs: &RunStore) -> Resumed {
    let mut resumed = Resumed::default();
    let Some(earlier) = earlier else {
        return resumed;
    };
    let sweep_id = table.id.clone();
    for row in &mut table.points {
        let Some(old) = earlier.points.iter().find(|o| o.point == row.point) else {
            continue;
        };
        match old.status {
            PointStatus::Succeeded => {
                let name = point_run_name(&sweep_id, row.point.index);
                match done_run(old.run.as_deref(), &name, runs) {
                    Ok((id, metrics)) => {
                        row.status = PointStatus::Succeeded;
                        row.run = Some(id);
                        row.error = None;
                        row.duration_s = old.duration_s;
                        row.metrics = metrics;
                        resumed.done += 1;
                    }
                    Err(why) => resumed.rerun.push(Rerun {
                        index: row.point.index,
                        why,
                    }),
                }
            }
            PointStatus::Failed => {
                row.error = old.error.clone();
                row.run = old.run.clone();
                row.status = PointStatus::Failed;
            }
            PointStatus::Pending => {}
        }
    }
    resumed
}

/// The id and metrics of the succeeded run `run` (as the earlier table names it) when its
/// record says it is the point's run `name`; otherwise why not.
fn done_run(
    run: Option<&str>,
    name: &str,
    runs: &RunStore,
) -> Result<(String, std::collections::BTreeMap<String, f64>), String> {
    let id = run.ok_or("the earlier table names no run for it")?;
    let record = match runs.load(id) {
        Ok(record) => record,
        // An edited table must not make the store read a record elsewhere.
        Err(RecordError::NotAnId(_)) => {
            return Err(format!(
                "the earlier table names the run {id:?}, not a run id"
            ))
        }
        Err(RecordError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("its run {id} is gone"))
        }
        Err(e) => return Err(format!("its run record is damaged: {e}")),
    };
    if record.id != id || record.name.as_deref() != Some(name) {
        return Err(format!(
            "the run {id} the earlier table names is not this point's run {name}"
        ));
    }
    if record.status != RunStatus::Succeeded {
        return Err(format!(
            "its run {id} is recorded as {}",
            record.status_label()
        ));
    }
    Ok((record.id.clone(), record.metrics()))
}
