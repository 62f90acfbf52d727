//! Where a sweep's points run: the seam between `pipeline sweep` and what executes its
//! points, this machine's pool of child processes ([`local`]) or Slurm jobs
//! (`slurm::sweep`). The command writes resume, the table, sweep.html and the summary once,
//! for both; an executor only runs the points it is given and fills in their rows.

pub mod local;

use std::path::Path;

use pipeline_engine::experiment::sweep_spec::Goal;
use pipeline_engine::sweep::table::SweepTable;

/// Runs a sweep's points.
pub trait PointExecutor {
    /// Runs the points `todo` (indices into `table.points`, none of them succeeded yet) and
    /// records each one's outcome in its row. An error stops the sweep before its table is
    /// written again.
    fn run_points(&self, table: &mut SweepTable, todo: &[usize]) -> anyhow::Result<Ended>;

    /// Where the failed points' logs are, as the sweep's closing error says it ("their logs
    /// in DIR"); `dir` is the sweep's directory.
    fn logs_hint(&self, dir: &Path) -> String;
}

/// How running the points ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every point given was run, or was left to the scheduler: a point that did not finish
    /// stays pending in its row.
    Done,
    /// Ctrl-C stopped the points running here: those it caught failed as interrupted, the
    /// others never started.
    Interrupted,
}

/// Without a goal, the first headline metric that the points have, maximized. Called as
/// soon as a point has metrics, so that the line saying it finished can show the goal.
pub fn default_goal(table: &mut SweepTable) {
    if table.goal.is_none() {
        table.goal = table.metric_names().first().map(|m| Goal {
            metric: m.clone(),
            maximize: true,
        });
    }
}
