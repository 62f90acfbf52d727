//! `pipeline sweep EXP`: runs an experiment at every point of a grid or a seeded random
//! search. Each point is an ordinary `pipeline run` (a child process of this one, with the
//! point's values as `--set` flags and its stderr in `artifacts/sweeps/ID/logs/NN.log`), so
//! `diff`, `verify` and `lock` work on points as on any run, a point that fails or crashes
//! leaves the others going, and points that share a stage compute it once: the cache's
//! per-key locks make a second point wait for the first one's result, then reuse it.
//!
//! The sweep's table (`table.json`, `table.csv`) is rewritten after every point, so a sweep
//! stopped half-way, or with failed points, resumes where it stopped when run again: points
//! that succeeded are not run again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use pipeline_engine::experiment::{self, Experiment, Override};
use pipeline_engine::human::format_seconds;
use pipeline_engine::kind::Registry;
use pipeline_engine::plan::Planner;
use pipeline_engine::record::RunStatus;
use pipeline_engine::sweep::{
    self, across_points, parse_grid, parse_range, sweep_dir, Goal, Point, PointStatus, Random,
    SweepSpec, SweepTable,
};

use super::{open_store, resolved_data_root, with_data_root_hint, ExperimentArgs, ShellArgs};
use crate::exit::UsageError;

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

pub fn sweep(
    args: &SweepArgs,
    registry: &Registry,
    project: &Path,
    artifacts: &Path,
) -> anyhow::Result<ExitCode> {
    args.executor.check()?;
    let sweep = resolve(args, registry)?;
    let store = open_store(artifacts)?;
    let root = resolved_data_root(args.experiment.data_root.as_deref(), project);
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
        return dry_run(&sweep, registry, &store, &root.value, &dir)
            .map_err(|e| with_data_root_hint(e, &root));
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
    let done = resume(&mut table, &SweepTable::read(&dir), &store);
    let todo: Vec<usize> = (0..table.points.len())
        .filter(|&i| table.points[i].status != PointStatus::Succeeded)
        .collect();
    if done > 0 {
        eprintln!(
            "resuming: {done} point(s) already succeeded in an earlier run of this sweep, {} to run",
            todo.len()
        );
    }
    finish_goal(&mut table);
    table
        .write(&dir)
        .with_context(|| format!("cannot write the sweep's table in {}", dir.display()))?;

    if args.executor.executor == crate::slurm::Executor::Slurm {
        let on_slurm = super::slurm::SweepOnSlurm {
            args,
            exp: &sweep.exp,
            id: &sweep.id,
            project,
            store: &store,
            data_root: &root.value,
            dir: &dir,
        };
        return on_slurm.run(table, &todo);
    }
    let child = ChildRun {
        exe: std::env::current_exe().context("cannot find the pipeline executable")?,
        experiment: args.experiment.experiment.clone(),
        base: args.experiment.set.clone(),
        data_root: root.value.clone(),
        artifacts: store.root.clone(),
        allow_shell: args.shell.allow_shell,
        project: project.to_path_buf(),
        threads: threads_per_point(
            sweep.jobs,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            std::env::var_os("RAYON_NUM_THREADS").as_deref(),
        ),
    };
    let started = Instant::now();
    let table = Mutex::new(table);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let total = todo.len();
    // Ctrl-C reaches the running points too (one process group), which stop; the table then
    // says which were interrupted and which never started, and a rerun resumes.
    crate::interrupt::install();
    let interrupted = || crate::interrupt::received() != 0;
    sweep::run_queue(&todo, sweep.jobs, interrupted, |&i| {
        let (point, log) = {
            let t = table.lock().unwrap_or_else(|e| e.into_inner());
            (t.points[i].point.clone(), dir.join(&t.points[i].log))
        };
        let name = format!("{}.{:02}", sweep.id, point.index);
        let outcome = child.run(&point, &name, &log);
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let n = finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let row = &mut t.points[i];
        row.duration_s = Some(outcome.seconds);
        row.run = outcome.run.clone();
        match &outcome.error {
            None => {
                row.status = PointStatus::Succeeded;
                row.error = None;
            }
            Some(e) => {
                row.status = PointStatus::Failed;
                row.error = Some(if interrupted() {
                    format!("interrupted ({e})")
                } else {
                    e.clone()
                });
                row.metrics.clear();
            }
        }
        if let Some(run) = &outcome.run {
            if let Ok(record) = store.runs.load(run) {
                row.metrics = record.metrics();
            }
        }
        // Before the line: the default goal is known once the first point has metrics.
        finish_goal(&mut t);
        let line = match &outcome.error {
            None => {
                let shown = t
                    .goal
                    .as_ref()
                    .and_then(|g| t.points[i].metrics.get(&g.metric).map(|v| (g, v)))
                    .map_or(String::new(), |(g, v)| format!(", {} = {v:.4}", g.metric));
                format!("ok in {}{shown}", format_seconds(outcome.seconds))
            }
            Some(e) => format!("FAILED: {e} (log: {})", log.display()),
        };
        eprintln!(
            "[{n}/{total}] point {:02} {}: {line}",
            point.index,
            point.label()
        );
        if let Err(e) = t.write(&dir) {
            eprintln!(
                "warning: cannot write the sweep's table in {}: {e}",
                dir.display()
            );
        }
    });
    let mut table = table.into_inner().unwrap_or_else(|e| e.into_inner());
    finish_goal(&mut table);
    table
        .write(&dir)
        .with_context(|| format!("cannot write the sweep's table in {}", dir.display()))?;
    let html = dir.join("sweep.html");
    sweep::write_atomically(&html, crate::html::sweep_page::render(&table).as_bytes())
        .with_context(|| format!("cannot write {}", html.display()))?;

    summarize(&table, started.elapsed().as_secs_f64(), total);
    println!("{}", dir.display());
    let count = |s: PointStatus| table.points.iter().filter(|p| p.status == s).count();
    let (failed, pending) = (count(PointStatus::Failed), count(PointStatus::Pending));
    if interrupted() {
        anyhow::bail!(
            "interrupted: {} of {} points done, {failed} failed or interrupted, {pending} not \
             started (the table is in {}); run the same command again to resume",
            count(PointStatus::Succeeded),
            table.points.len(),
            dir.join("table.csv").display(),
        );
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} points failed (their errors are in {}, their logs in {}); run the \
             sweep again to retry them",
            table.points.len(),
            dir.join("table.csv").display(),
            dir.join("logs").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the flags and the experiment's `[sweep]`, and checks every point's experiment:
/// a value that does not fit its parameter is refused before anything runs.
fn resolve(args: &SweepArgs, registry: &Registry) -> anyhow::Result<Sweep> {
    let base: Vec<Override> = args
        .experiment
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_, _>>()
        .map_err(UsageError)?;
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

/// Takes over the rows of an earlier run of the same sweep whose runs still exist and
/// succeeded; returns how many.
fn resume(
    table: &mut SweepTable,
    earlier: &Option<SweepTable>,
    store: &pipeline_engine::execute::Store,
) -> usize {
    let Some(earlier) = earlier else {
        return 0;
    };
    let mut done = 0;
    for row in &mut table.points {
        let Some(old) = earlier.points.iter().find(|o| o.point == row.point) else {
            continue;
        };
        let still_there = old
            .run
            .as_ref()
            .and_then(|id| store.runs.load(id).ok())
            .is_some_and(|r| r.status == RunStatus::Succeeded);
        if old.status == PointStatus::Succeeded && still_there {
            *row = old.clone();
            done += 1;
        } else if old.status == PointStatus::Failed {
            // Kept until the point is run again, so that an interrupted retry still shows why
            // it failed before.
            row.error = old.error.clone();
            row.run = old.run.clone();
            row.status = PointStatus::Failed;
        }
    }
    done
}

/// Without a goal, the first headline metric that the points have, maximized.
pub(super) fn finish_goal(table: &mut SweepTable) {
    if table.goal.is_none() {
        table.goal = table.metric_names().first().map(|m| Goal {
            metric: m.clone(),
            maximize: true,
        });
    }
}

/// How to start one point's run.
struct ChildRun {
    exe: PathBuf,
    experiment: PathBuf,
    base: Vec<String>,
    data_root: PathBuf,
    artifacts: PathBuf,
    allow_shell: bool,
    project: PathBuf,
    /// Worker threads for each point, when the user has not chosen (`RAYON_NUM_THREADS`).
    threads: Option<usize>,
}

/// Each point's share of the cores when `jobs` points run at once: without it every point
/// starts a thread per core, and `-j 2` on 2 cores runs 4 busy threads that take turns (the
/// 24-point bench took 17 % more CPU time that way). `None` when the user has set
/// `RAYON_NUM_THREADS`, which the points then inherit.
fn threads_per_point(
    jobs: usize,
    cores: usize,
    user_choice: Option<&std::ffi::OsStr>,
) -> Option<usize> {
    if user_choice.is_some() {
        return None;
    }
    Some((cores / jobs.max(1)).max(1))
}

struct Outcome {
    run: Option<String>,
    error: Option<String>,
    seconds: f64,
}

impl ChildRun {
    /// Runs `pipeline run` for the point, its stderr into `log`; the run's id is the last
    /// line of its stdout (its directory), or, when it failed, the newest run named `name`.
    fn run(&self, point: &Point, name: &str, log: &Path) -> Outcome {
        let started = Instant::now();
        let log_file = match fs::File::create(log) {
            Ok(f) => f,
            Err(e) => {
                return Outcome {
                    run: None,
                    error: Some(format!("cannot create the log {}: {e}", log.display())),
                    seconds: 0.0,
                }
            }
        };
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(&self.project)
            .arg("--artifacts")
            .arg(&self.artifacts)
            .arg("run")
            .arg(&self.experiment)
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--name")
            .arg(name);
        for s in &self.base {
            cmd.arg("--set").arg(s);
        }
        for v in &point.values {
            cmd.arg("--set").arg(format!("{}={}", v.key, v.value));
        }
        if self.allow_shell {
            cmd.arg("--allow-shell");
        }
        if let Some(threads) = self.threads {
            cmd.env("RAYON_NUM_THREADS", threads.to_string());
        }
        cmd.env_remove("PIPELINE_ALLOW_SHELL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let output = cmd.output();
        let seconds = started.elapsed().as_secs_f64();
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                return Outcome {
                    run: None,
                    error: Some(format!("cannot start {}: {e}", self.exe.display())),
                    seconds,
                }
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let run_id = dir.and_then(|d| {
            Path::new(d.trim())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        if output.status.success() {
            return Outcome {
                run: run_id,
                error: None,
                seconds,
            };
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        let error = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            .map(str::to_string)
            .unwrap_or_else(|| match output.status.code() {
                Some(c) => format!("`pipeline run` exited with {c}"),
                None => "`pipeline run` was killed by a signal".into(),
            });
        let failed_run = pipeline_engine::record::RunStore::open(&self.artifacts.join("runs"))
            .ok()
            .and_then(|runs| runs.summaries().ok())
            .and_then(|all| all.into_iter().find(|r| r.name.as_deref() == Some(name)))
            .map(|r| r.id);
        Outcome {
            run: failed_run,
            error: Some(error),
            seconds,
        }
    }
}

/// `--dry-run`: the points, and for each stage across them whether it is shared by all, new
/// for each, or cached, with a time estimate from recorded durations.
fn dry_run(
    sweep: &Sweep,
    registry: &Registry,
    store: &pipeline_engine::execute::Store,
    data_root: &Path,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let earlier = SweepTable::read(dir);
    let done: Vec<&Point> = earlier
        .as_ref()
        .map(|t| {
            t.points
                .iter()
                .filter(|p| p.status == PointStatus::Succeeded)
                .map(|p| &p.point)
                .collect()
        })
        .unwrap_or_default();
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

pub(super) fn summarize(table: &SweepTable, seconds: f64, ran: usize) {
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
    use super::threads_per_point;

    #[test]
    fn points_share_the_cores_unless_the_user_chose() {
        assert_eq!(threads_per_point(2, 2, None), Some(1));
        assert_eq!(threads_per_point(4, 16, None), Some(4));
        assert_eq!(threads_per_point(3, 16, None), Some(5));
        assert_eq!(threads_per_point(8, 2, None), Some(1));
        assert_eq!(threads_per_point(1, 16, None), Some(16));
        assert_eq!(threads_per_point(2, 2, Some("3".as_ref())), None);
    }
}
