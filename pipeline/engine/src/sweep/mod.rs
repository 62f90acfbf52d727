//! Parameter sweeps: a grid or a seeded random search over an experiment's parameters. Every
//! point is an ordinary run with the point's values as `--set` overrides, so `diff`, `verify`
//! and `lock` work on points as on any run; the cache's per-key locks make points that share
//! a stage compute it once.
//!
//! What a sweep is (its axes, points and goal) is the experiment's
//! ([`crate::experiment::sweep_spec`]). This layer holds a sweep's id, the queue that runs
//! its points and the atomic writes of its files (here), how its points are planned together
//! ([`plan`]: which stages all points share, which are new, what is cached) and its table
//! ([`table`]: `artifacts/sweeps/ID/table.json` and `table.csv`) and what a rerun takes over
//! from the earlier run ([`resume`]: the done points, with their run records' metrics). The
//! binary runs the points and draws the table.

pub mod plan;
pub mod resume;
pub mod table;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::experiment::sweep_spec::Point;
use crate::experiment::Experiment;
use crate::hash::FieldHasher;

/// A sweep's id: the experiment's name and a digest of what defines the sweep (the
/// experiment file, the overrides common to every point, every point's values), so that
/// running the same sweep again finds the same directory and resumes.
pub fn sweep_id(exp: &Experiment, base_overrides: &[String], points: &[Point]) -> String {
    let mut h = FieldHasher::new("pipeline.sweep");
    h.str(&exp.name).digest(&exp.digest);
    h.u64(base_overrides.len() as u64);
    for o in base_overrides {
        h.str(o);
    }
    h.u64(points.len() as u64);
    for p in points {
        h.u64(p.values.len() as u64);
        for v in &p.values {
            h.str(&v.key).value(&v.value);
        }
    }
    let name: String = exp
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{name}-{}", &h.finish().to_hex()[..8])
}

/// The name of point `index`'s run in sweep `sweep_id` (`ID.NN`): how `pipeline runs`,
/// `show` and a resumed sweep find a point's run.
pub fn point_run_name(sweep_id: &str, index: usize) -> String {
    format!("{sweep_id}.{index:02}")
}

/// Calls `work` on every item on `jobs` threads, each taking the next item when it is free,
/// until `stop` says so (items already taken finish; the rest are never started).
pub fn run_queue<T: Sync>(
    items: &[T],
    jobs: usize,
    stop: impl Fn() -> bool + Sync,
    work: impl Fn(&T) + Sync,
) {
    let next = AtomicUsize::new(0);
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if stop() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                match items.get(i) {
                    Some(item) => work(item),
                    None => break,
                }
            });
        }
    });
}

/// Writes under a temporary name, then renames: a reader sees the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.{}.tmp",
        path.extension()
            .map_or(String::new(), |e| e.to_string_lossy().into_owned()),
        std::process::id()
    ));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::sweep_spec::tests::axis;
    use crate::experiment::sweep_spec::SweepSpec;

    #[test]
    fn the_id_follows_the_definition() {
        let text = "name = \"my exp\"\n";
        let exp = Experiment {
            path: "e.toml".into(),
            text: text.into(),
            digest: blake3::hash(text.as_bytes()),
            name: "my exp".into(),
            description: String::new(),
            seed: 0,
            stages: vec![],
            overrides: vec![],
            sweep: None,
            caveats: vec![],
            headline: vec![],
        };
        let spec = SweepSpec {
            grid: vec![axis("a.x", &[1, 2])],
            ..SweepSpec::default()
        };
        let points = spec.points().expect("points");
        let id = sweep_id(&exp, &[], &points);
        assert!(
            id.starts_with("my_exp-") && id.len() == "my_exp-".len() + 8,
            "{id}"
        );
        assert_eq!(id, sweep_id(&exp, &[], &points));
        assert_ne!(id, sweep_id(&exp, &["b.y=1".into()], &points));
        assert_ne!(id, sweep_id(&exp, &[], &points[..1]));
    }

    #[test]
    fn the_queue_gives_every_item_to_exactly_one_worker() {
        let items: Vec<usize> = (0..100).collect();
        let done = std::sync::Mutex::new(Vec::new());
        run_queue(&items, 3, || false, |i| done.lock().expect("lock").push(*i));
        let mut done = done.into_inner().expect("lock");
        done.sort();
        assert_eq!(done, items);
    }

    #[test]
    fn a_stopped_queue_finishes_what_it_took_and_starts_nothing_more() {
        let items: Vec<usize> = (0..100).collect();
        let done = std::sync::Mutex::new(Vec::new());
        let stop = std::sync::atomic::AtomicBool::new(false);
        run_queue(
            &items,
            2,
            || stop.load(Ordering::SeqCst),
            |i| {
                done.lock().expect("lock").push(*i);
                if *i == 9 {
                    stop.store(true, Ordering::SeqCst);
                }
            },
        );
        let done = done.into_inner().expect("lock");
        assert!(done.contains(&9));
        // Item 9 stops the queue; the other worker may have taken one more item meanwhile.
        assert!(done.len() <= 11, "{} items ran", done.len());
    }
}
