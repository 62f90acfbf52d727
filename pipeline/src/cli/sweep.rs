//! `pipeline sweep EXP`: runs an experiment at every point of a grid or a seeded random
//! search. Each point is an ordinary `pipeline run`, so `diff`, `verify` and `lock` work on
//! points as on any run. The points run through an executor ([`crate::executor`]): this
//! machine's pool of child processes, or Slurm jobs; this command resumes, writes the table,
//! sweep.html and the summary for both.
//!
//! The sweep's table (`table.json`, `table.csv`) is rewritten after every point, so a sweep
//! stopped half-way, or with failed points, resumes where it stopped when run again: points
//! that succeeded are not run again.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use pipeline_engine::experiment::kind::Registry;
use pipeline_engine::experiment::sweep_spec::{
    parse_grid, parse_range, Goal, Point, Random, SweepSpec,
};
use pipeline_engine::experiment::{self, Experiment, Override};
use pipeline_engine::human::format_seconds;
use pipeline_engine::run::plan::Planner;
use pipeline_engine::run::store::Store;
use pipeline_engine::sweep;
use pipeline_engine::sweep::plan::across_points;
use pipeline_engine::sweep::resume;
use pipeline_engine::sweep::table::{sweep_dir, PointStatus, SweepTable};

use super::{ExperimentArgs, ShellArgs};
use crate::executor::local::{threads_per_point, ChildRun, LocalPool};
use crate::executor::{default_goal, Ended, PointExecutor};
use crate::session::Session;
use crate::slurm::sweep::SweepOnSlurm;
use crate::slurm::Executor;
use crate::usage::UsageError;

#[derive(Args)]
#[command(after_help = "Examples:
  pipeline sweep experiments/model1.toml --grid train.learning_rate=1e-4,3e-4,1e-3 \\
      --grid model.units=32,64 --metric evaluate.roc_auc:max -j 2
  pipeline sweep EXP --random 20 --seed 1 --range train.learning_rate=1e-4..1e-2:log \\
      --grid model.units=32,64,128
  pipeline sweep EXP --dry-run      # the points, shared and new stages, a time estimate

Without --grid or --range, the experiment's [sweep] table says what to sweep. The sweep's \
table, logs and sweep.html are in artifacts/sweeps/ID/; running the same sweep again resumes \
it (points that succeeded are not run again). Each point is a run named ID.NN.")]
pub struct SweepArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// A grid axis: every value is tried with every value of the other axes (repeatable)
    #[arg(long, value_name = "STAGE.PARAM=V1,V2,...")]
    pub grid: Vec<String>,
    /// A range drawn from by a random search, uniform or log-uniform (`:log`) (repeatable)
    #[arg(long, value_name = "STAGE.PARAM=MIN..MAX[:log]")]
    pub range: Vec<String>,
    /// A seeded random search of N points over the ranges and grid values (as choices)
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// The random search's seed [default: the [sweep] table's, else 0]
    #[arg(long, value_name = "S", requires = "random")]
    pub seed: Option<u64>,
    /// The goal: a metric and whether to maximize it [default: the first headline metric, max]
    #[arg(long, value_name = "METRIC[:max|:min]")]
    pub metric: Option<String>,
    /// Points run at a time, each on its share of the cores (unless `RAYON_NUM_THREADS` is
    /// set) [default: `jobs` in [sweep], else 1]
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Show the points, which stages all points share and which are new, and a time
    /// estimate from recorded stage durations; run nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub shell: ShellArgs,
    #[command(flatten)]
    pub executor: crate::slurm::ExecutorArgs,
}

/// Everything a sweep is, resolved from the command line and the experiment's `[sweep]`.
struct Sweep {
    exp: Experiment,
    spec: SweepSpec,
    points: Vec<Point>,
    goal: Option<Goal>,
    jobs: usize,
    id: String,
}

pub fn sweep(args: &SweepArgs, session: &Session) -> anyhow::Result<ExitCode> {
    args.executor.check()?;
    let sweep = resolve(args, session)?;
    let ws = session.workspace()?;
    let store = &ws.store;
    let dir = sweep_dir(&store.root, &sweep.id);
    let goal_text = sweep
        .goal
        .as_ref()
        .map_or("the first headline metric".to_string(), |g| g.to_string());
    eprintln!(
        "sweep {}: {} ({} points), goal {goal_text}",
        sweep.id,
        sweep.spec.describe(sweep.points.len()),
        sweep.points.len()
    );
    if args.dry_run {
        return dry_run(&sweep, &session.registry, store, &ws.data_root.value, &dir)
            .map_err(|e| ws.hint(e));
    }

    fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create the sweep directory {}", dir.display()))?;
    let mut table = SweepTable::new(
        &sweep.id,
        &sweep.exp,
        &args.experiment.set,
        &sweep.spec,
        &sweep.points,
        sweep.goal.clone(),
    );
    let done = resume_earlier(&mut table, &dir, store);
    let todo: Vec<usize> = (0..table.points.len())
        .filter(|&i| table.points[i].status != PointStatus::Succeeded)
        .collect();
    if done > 0 {
        eprintln!(
            "resuming: {done} point(s) already succeeded in an earlier run of this sweep, {} to run",
            todo.len()
        );
    }
    default_goal(&mut table);
    table
        .write(&dir)
        .with_context(|| format!("cannot write the sweep's table in {}", dir.display()))?;

    let executor: Box<dyn PointExecutor + '_> = match args.executor.executor {
        Executor::Slurm => Box::new(SweepOnSlurm {
            executor: &args.executor,
            experiment: &args.experiment.experiment,
            name: &sweep.exp.name,
            base: &args.experiment.set,
            allow_shell: args.shell.allow_shell,
            throttle: args.jobs,
            id: &sweep.id,
            project: &session.project,
            settings: &session.settings,
            store,
            data_root: &ws.data_root.value,
            dir: &dir,
        }),
        Executor::Local => Box::new(LocalPool {
            child: ChildRun {
                exe: std::env::current_exe().context("cannot find the pipeline executable")?,
                experiment: args.experiment.experiment.clone(),
                base: args.experiment.set.clone(),
                data_root: ws.data_root.value.clone(),
                artifacts: store.root.clone(),
                allow_shell: args.shell.allow_shell,
                project: session.project.clone(),
                threads: threads_per_point(
                    sweep.jobs,
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                    std::env::var_os("RAYON_NUM_THREADS").as_deref(),
                ),
            },
            jobs: sweep.jobs,
            id: &sweep.id,
            dir: &dir,
            store,
        }),
    };
    let started = Instant::now();
    let ended = executor.run_points(&mut table, &todo)?;
    finish(
        &mut table,
        &dir,
        started.elapsed().as_secs_f64(),
        todo.len(),
        ended,
        &executor.logs_hint(&dir),
    )
}

/// The end of a sweep, whichever executor ran it: the table and sweep.html written, the
/// summary, the sweep's directory on stdout, and an error when points did not succeed.
fn finish(
    table: &mut SweepTable,
    dir: &Path,
    seconds: f64,
    ran: usize,
    ended: Ended,
    logs_hint: &str,
) -> anyhow::Result<ExitCode> {
    default_goal(table);
    table
        .write(dir)
        .with_context(|| format!("cannot write the sweep's table in {}", dir.display()))?;
    let html = dir.join("sweep.html");
    sweep::write_atomically(&html, crate::html::sweep_page::render(table).as_bytes())
        .with_context(|| format!("cannot write {}", html.display()))?;

    summarize(table, seconds, ran);
    println!("{}", dir.display());
    let table = &*table;
    let count = |s: PointStatus| table.points.iter().filter(|p| p.status == s).count();
    let (failed, pending) = (count(PointStatus::Failed), count(PointStatus::Pending));
    if ended == Ended::Interrupted {
        anyhow::bail!(
            "interrupted: {} of {} points done, {failed} failed or interrupted, {pending} not \
             started (the table is in {}); run the same command again to resume",
            count(PointStatus::Succeeded),
            table.points.len(),
            dir.join("table.csv").display(),
        );
    }
    // Points still pending here were left to a scheduler that was interrupted.
    if failed > 0 || pending > 0 {
        anyhow::bail!(
            "{failed} of {} points failed{} (their errors are in {}, {logs_hint}); run the \
             sweep again to retry them",
            table.points.len(),
            if pending > 0 {
                format!(" and {pending} did not finish")
            } else {
                String::new()
            },
            dir.join("table.csv").display(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the flags and the experiment's `[sweep]`, and checks every point's experiment:
/// a value that does not fit its parameter is refused before anything runs.
fn resolve(args: &SweepArgs, session: &Session) -> anyhow::Result<Sweep> {
    let registry = &session.registry;
    let base: Vec<Override> = crate::session::parse_overrides(&args.experiment.set)?;
    let exp = experiment::load(&args.experiment.experiment, &base, registry)?;
    let table = exp.sweep.clone().unwrap_or_default();
    let mut spec = if args.grid.is_empty() && args.range.is_empty() {
        table.clone()
    } else {
        SweepSpec {
            grid: args
                .grid
                .iter()
                .map(|g| parse_grid(g))
                .collect::<Result<_, _>>()
                .map_err(UsageError)?,
            ranges: args
                .range
                .iter()
                .map(|r| parse_range(r))
                .collect::<Result<_, _>>()
                .map_err(UsageError)?,
            random: None,
            ..table.clone()
        }
    };
    if let Some(count) = args.random {
        spec.random = Some(Random {
            count,
            // The table's seed when the flag gives none: `--random 50` widens its search.
            seed: args.seed.or(table.random.map(|r| r.seed)).unwrap_or(0),
        });
    }
    if let Some(m) = &args.metric {
        spec.metric = Some(Goal::parse(m).map_err(|e| UsageError(format!("--metric: {e}")))?);
    }
    if spec.is_empty() {
        return Err(UsageError(format!(
            "nothing to sweep: give --grid STAGE.PARAM=V1,V2 (or --random N with --range \
             STAGE.PARAM=MIN..MAX), or add a [sweep] table to {}",
            args.experiment.experiment.display()
        ))
        .into());
    }
    let points = spec.points().map_err(UsageError)?;
    for key in spec.keys() {
        if args.experiment.set.iter().any(|s| {
            s.split_once('=')
                .is_some_and(|(k, _)| k.trim() == key.as_str())
        }) {
            return Err(UsageError(format!(
                "`{key}` is both swept and set with --set; drop one of them"
            ))
            .into());
        }
    }
    // Every point's experiment must load: the first bad value is refused, naming the point.
    for point in &points {
        let mut overrides = base.clone();
        overrides.extend(point.overrides().map_err(UsageError)?);
        experiment::load(&args.experiment.experiment, &overrides, registry)
            .with_context(|| format!("sweep point {:02} ({})", point.index, point.label()))?;
    }
    let base_flags: Vec<String> = args.experiment.set.clone();
    let id = sweep::sweep_id(&exp, &base_flags, &points);
    let jobs = args.jobs.or(spec.jobs).unwrap_or(1);
    if jobs == 0 {
        return Err(UsageError("-j/--jobs must be at least 1".into()).into());
    }
    Ok(Sweep {
        goal: spec.metric.clone(),
        exp,
        spec,
        points,
        jobs,
        id,
    })
}

/// Takes over the points that succeeded in an earlier run of this sweep (with their run
/// records' metrics: [`resume::resume`]) and warns about each one that runs again, and why.
fn resume_earlier(table: &mut SweepTable, dir: &Path, store: &Store) -> usize {
    let resumed = resume::resume(table, SweepTable::read(dir).as_ref(), &store.runs);
    for rerun in &resumed.rerun {
        eprintln!(
            "warning: point {:02} succeeded in an earlier run of this sweep but runs again: {}",
            rerun.index, rerun.why
        );
    }
    resumed.done
}

/// `--dry-run`: the points, and for each stage across them whether it is shared by all, new
/// for each, or cached, with a time estimate from recorded durations.
fn dry_run(
    sweep: &Sweep,
    registry: &Registry,
    store: &Store,
    data_root: &Path,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    // Done as a run of the sweep would take it over: by the points' run records.
    let mut table = SweepTable::new(
        &sweep.id,
        &sweep.exp,
        &sweep.exp.overrides,
        &sweep.spec,
        &sweep.points,
        sweep.goal.clone(),
    );
    resume_earlier(&mut table, dir, store);
    let done: Vec<&Point> = table
        .points
        .iter()
        .filter(|p| p.status == PointStatus::Succeeded)
        .map(|p| &p.point)
        .collect();
    println!("points:");
    for p in &sweep.points {
        let mark = if done.contains(&p) {
            "  (done in an earlier run of this sweep)"
        } else {
            ""
        };
        println!("  {:02}  {}{mark}", p.index, p.label());
    }
    let runs = store.runs.summaries()?;
    let planner = Planner::new(registry, store, data_root, &runs, false);
    let base: Vec<Override> = sweep
        .exp
        .overrides
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_, _>>()
        .map_err(UsageError)?;
    let mut plans = Vec::new();
    for p in &sweep.points {
        let mut overrides = base.clone();
        overrides.extend(p.overrides().map_err(UsageError)?);
        let exp = experiment::load(&sweep.exp.path, &overrides, registry)?;
        plans.push(planner.plan(&exp)?);
    }
    let across = across_points(&plans);
    let width = across.iter().map(|a| a.stage.len()).max().unwrap_or(5);
    let n = sweep.points.len();
    println!("stages across the {n} points:");
    let mut total = 0.0;
    let mut computations = 0;
    let mut unknown = 0;
    for a in &across {
        let sharing = if a.distinct == 1 {
            format!("shared by all {n} points")
        } else if a.distinct == a.points {
            format!("new for each point ({})", a.distinct)
        } else {
            format!("{} distinct computations", a.distinct)
        };
        let mut state = Vec::new();
        if a.cached > 0 {
            state.push(format!("{} cached", a.cached));
        }
        if a.expected > 0 {
            state.push(format!(
                "{} cached if its inputs come out as predicted{}",
                a.expected,
                a.note.as_ref().map_or(String::new(), |n| format!(" ({n})"))
            ));
        }
        if a.to_run > 0 {
            let est = if a.unestimated == a.to_run {
                " (no recorded duration)".to_string()
            } else {
                format!(", about {}", format_seconds(a.estimate_s))
            };
            state.push(format!("{} to run{est}", a.to_run));
        }
        println!("  {:<width$}  {sharing}: {}", a.stage, state.join(", "));
        total += a.estimate_s;
        computations += a.to_run;
        unknown += a.unestimated;
    }
    if computations == 0 {
        println!("everything is cached: the sweep would compute nothing");
    } else {
        let partial = if unknown > 0 {
            format!(" ({unknown} computation(s) without a recorded duration not counted)")
        } else {
            String::new()
        };
        println!(
            "{computations} computation(s) to run: about {} of work, about {} with -j {}{partial}",
            format_seconds(total),
            format_seconds(total / sweep.jobs.min(n.max(1)) as f64),
            sweep.jobs
        );
    }
    println!("sweep directory: {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn summarize(table: &SweepTable, seconds: f64, ran: usize) {
    let count = |s: PointStatus| table.points.iter().filter(|p| p.status == s).count();
    eprintln!(
        "sweep {}: {ran} point(s) run in {}; {} succeeded, {} failed",
        table.id,
        format_seconds(seconds),
        count(PointStatus::Succeeded),
        count(PointStatus::Failed)
    );
    if let (Some(best), Some(goal)) = (table.best(), table.goal.as_ref()) {
        let value = best.metrics.get(&goal.metric).copied().unwrap_or(f64::NAN);
        eprintln!(
            "best ({goal}): point {:02} {} = {value:.4}: {}  (run {})",
            best.point.index,
            goal.metric,
            best.point.label(),
            best.run.as_deref().unwrap_or("-")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose points have these statuses; the first point has a metric.
    fn table(statuses: &[PointStatus]) -> SweepTable {
        let points = statuses
            .iter()
            .enumerate()
            .map(|(i, &status)| pipeline_engine::sweep::table::PointRecord {
                point: Point {
                    index: i + 1,
                    values: vec![pipeline_engine::experiment::sweep_spec::PointValue {
                        key: "train.epochs".into(),
                        value: toml::Value::Integer(i as i64 + 1),
                    }],
                },
                status,
                run: None,
                error: (status == PointStatus::Failed).then(|| "boom".to_string()),
                log: format!("logs/{:02}.log", i + 1),
                duration_s: None,
                metrics: if i == 0 {
                    [("evaluate.accuracy".to_string(), 0.5)].into()
                } else {
                    Default::default()
                },
            })
            .collect();
        SweepTable {
            format: 1,
            id: "s1".into(),
            experiment: "e".into(),
            experiment_path: "e.toml".into(),
            base_overrides: Vec::new(),
            search: "grid".into(),
            keys: vec!["train.epochs".into()],
            goal: None,
            headline: Vec::new(),
            points,
            updated: String::new(),
        }
    }

    #[test]
    fn the_end_is_written_once_and_says_what_did_not_succeed_in_each_executors_words() {
        use PointStatus::{Failed, Pending, Succeeded};
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let d = dir.display();

        let mut all = table(&[Succeeded, Succeeded]);
        finish(&mut all, dir, 1.0, 2, Ended::Done, "unused").expect("all succeeded");
        assert!(dir.join("sweep.html").is_file() && dir.join("table.csv").is_file());
        let goal = all.goal.expect("the default goal is filled in");
        assert_eq!(
            (goal.metric.as_str(), goal.maximize),
            ("evaluate.accuracy", true)
        );

        let local_logs = format!("their logs in {}", dir.join("logs").display());
        let e = finish(
            &mut table(&[Succeeded, Failed]),
            dir,
            1.0,
            2,
            Ended::Done,
            &local_logs,
        )
        .expect_err("a point failed");
        assert_eq!(
            e.to_string(),
            format!(
                "1 of 2 points failed (their errors are in {d}/table.csv, their logs in \
                 {d}/logs); run the sweep again to retry them"
            )
        );

        let slurm_logs = "their logs beside it";
        let mut left = table(&[Succeeded, Failed, Pending]);
        let e = finish(&mut left, dir, 1.0, 2, Ended::Done, slurm_logs).expect_err("unfinished");
        assert_eq!(
            e.to_string(),
            format!(
                "1 of 3 points failed and 1 did not finish (their errors are in {d}/table.csv, \
                 their logs beside it); run the sweep again to retry them"
            )
        );

        let mut stopped = table(&[Succeeded, Failed, Pending]);
        let e = finish(&mut stopped, dir, 1.0, 2, Ended::Interrupted, &local_logs)
            .expect_err("interrupted");
        assert_eq!(
            e.to_string(),
            format!(
                "interrupted: 1 of 3 points done, 1 failed or interrupted, 1 not started (the \
                 table is in {d}/table.csv); run the same command again to resume"
            )
        );
    }
}
