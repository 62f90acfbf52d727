//! A submission's directory: what every task runs (`job.json`: the binary, experiment, data
//! root, store and each point's `--set` overrides), the job script `sbatch` is given, each
//! point's log, and the status file each task writes. Everything a task needs is in this
//! directory on the shared filesystem, so the cluster side is only our binary.
//!
//! ```text
//! DIR/job.json              the points and how to run them
//! DIR/task.sh               the job script: exec the same binary's `slurm-task DIR`
//! DIR/jobs.json             the submitted job ids (to follow or cancel them later)
//! DIR/logs/point-N.log      point N's output, every attempt appended
//! DIR/status/point-N.json   point N's outcome: attempt, exit code, run, error
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::resources::Resources;
use super::scheduler::JobId;

/// Version of `job.json` and the status files.
pub const FORMAT: u32 = 1;

/// What every task of a submission runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub format: u32,
    /// The `pipeline` binary (the submitter's own, on the shared filesystem).
    pub exe: PathBuf,
    /// The directory runs start in (the project root).
    pub project: PathBuf,
    /// The store every task uses.
    pub artifacts: PathBuf,
    pub experiment: PathBuf,
    pub data_root: PathBuf,
    pub allow_shell: bool,
    pub no_cache: bool,
    /// Runs of a point after its first that fail, before it is recorded as failed.
    pub retries: u32,
    /// The points, in index order (`points[i].index == i`).
    pub points: Vec<PointSpec>,
}

/// One point: one `pipeline run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSpec {
    pub index: usize,
    /// `--set` overrides, as given (`train.learning_rate=0.001`).
    pub set: Vec<String>,
    /// `--name` for the run.
    pub name: Option<String>,
}

impl JobSpec {
    /// The arguments of the `pipeline` command line that runs `point` locally on the node.
    pub fn run_args(&self, point: &PointSpec) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--artifacts".into(),
            self.artifacts.clone().into(),
            "run".into(),
            self.experiment.clone().into(),
            "--data-root".into(),
            self.data_root.clone().into(),
            // On the node the run is local: never submit again from there.
            "--executor".into(),
            "local".into(),
        ];
        for set in &point.set {
            args.push("--set".into());
            args.push(set.into());
        }
        if let Some(name) = &point.name {
            args.push("--name".into());
            args.push(name.into());
        }
        if self.allow_shell {
            args.push("--allow-shell".into());
        }
        if self.no_cache {
            args.push("--no-cache".into());
        }
        args
    }
}

/// The job ids of a submission: the first point's job, then the array of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub first: JobId,
    pub array: Option<JobId>,
}

impl Submitted {
    /// The Slurm id of point `index`'s job.
    pub fn job_of(&self, index: usize) -> Option<JobId> {
        match (index, &self.array) {
            (0, _) => Some(self.first.clone()),
            (i, Some(array)) => Some(format!("{array}_{i}")),
            (_, None) => None,
        }
    }

    pub fn ids(&self) -> Vec<JobId> {
        std::iter::once(self.first.clone())
            .chain(self.array.clone())
            .collect()
    }
}

/// Where a point stands, as its task wrapper last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    Succeeded,
    Failed,
}

/// `status/point-N.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointStatus {
    pub format: u32,
    pub index: usize,
    pub state: TaskState,
    /// The attempt running or last run, from 1.
    pub attempt: u32,
    /// 1 + retries.
    pub attempts_allowed: u32,
    /// The last attempt's exit code, once it ended.
    pub exit_code: Option<i32>,
    /// The run directory the point produced (the last attempt's, failed runs included).
    pub run_dir: Option<PathBuf>,
    /// The last attempt's error line.
    pub error: Option<String>,
    pub log: PathBuf,
    pub host: String,
    pub slurm_job: Option<String>,
}

/// A submission's directory.
#[derive(Debug, Clone)]
pub struct JobDir {
    pub root: PathBuf,
}

impl JobDir {
    /// Creates `root` with its `logs/` and `status/` folders.
    pub fn create(root: PathBuf) -> anyhow::Result<JobDir> {
        for sub in ["logs", "status"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(JobDir { root })
    }

    pub fn open(root: &Path) -> JobDir {
        JobDir {
            root: root.to_path_buf(),
        }
    }

    pub fn spec_file(&self) -> PathBuf {
        self.root.join("job.json")
    }

    pub fn script(&self) -> PathBuf {
        self.root.join("task.sh")
    }

    pub fn submitted_file(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    pub fn log(&self, index: usize) -> PathBuf {
        self.root.join("logs").join(format!("point-{index}.log"))
    }

    pub fn status_file(&self, index: usize) -> PathBuf {
        self.root.join("status").join(format!("point-{index}.json"))
    }

    pub fn write_spec(&self, spec: &JobSpec) -> anyhow::Result<()> {
        write_json(&self.spec_file(), spec)
    }

    pub fn read_spec(&self) -> anyhow::Result<JobSpec> {
        read_json(&self.spec_file())
    }

    pub fn write_submitted(&self, s: &Submitted) -> anyhow::Result<()> {
        write_json(&self.submitted_file(), s)
    }

    pub fn write_status(&self, s: &PointStatus) -> anyhow::Result<()> {
        write_json(&self.status_file(s.index), s)
    }

    /// Point `index`'s status, if its task has started.
    pub fn read_status(&self, index: usize) -> Option<PointStatus> {
        read_json(&self.status_file(index)).ok()
    }

    /// Writes the job script, executable.
    pub fn write_script(&self, spec: &JobSpec) -> anyhow::Result<()> {
        let path = self.script();
        fs::write(&path, job_script(spec, &self.root))
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
        Ok(())
    }

    /// `sbatch` options for the first point's job (which computes the stages all points
    /// share) and, with `array`, for the others' array, run once the first has succeeded.
    pub fn sbatch_args(
        &self,
        name: &str,
        spec: &JobSpec,
        resources: &Resources,
        after: Option<&str>,
        throttle: Option<usize>,
    ) -> Vec<String> {
        let mut args = vec![
            format!("--job-name={name}"),
            format!("--chdir={}", spec.project.display()),
            // Every attempt, requeues included, adds to the same log.
            "--open-mode=append".to_string(),
            // A job preempted or on a node that failed comes back (where the cluster allows
            // it), and its task goes on counting attempts where it was.
            "--requeue".to_string(),
        ];
        match after {
            None => args.push(format!("--output={}", self.log(0).display())),
            Some(first) => {
                let last = spec.points.len() - 1;
                // `%N`: at most N of the array's tasks at a time (`-j N`).
                let limit = throttle.map_or(String::new(), |n| format!("%{n}"));
                args.push(format!("--array=1-{last}{limit}"));
                // `%a` is the task id, which is the point's index.
                let pattern = self.root.join("logs").join("point-%a.log");
                args.push(format!("--output={}", pattern.display()));
                args.push(format!("--dependency=afterok:{first}"));
                // If the first point fails, the others are cancelled rather than left
                // pending forever on a dependency that can never be met.
                args.push("--kill-on-invalid-dep=yes".to_string());
            }
        }
        args.extend(resources.sbatch_args());
        args
    }
}

/// The job script: the same binary's task wrapper on this directory. `sbatch` reads no
/// option from it (they are on its command line), so paths need no `#SBATCH` quoting.
pub fn job_script(spec: &JobSpec, dir: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by `pipeline` for Slurm: runs one point of {job} (the point is\n\
         # $SLURM_ARRAY_TASK_ID, or 0), retrying it up to {retries} time(s), and writes its\n\
         # outcome to status/point-N.json beside this script.\n\
         exec {exe} slurm-task {dir}\n",
        job = dir.join("job.json").display(),
        retries = spec.retries,
        exe = shell_quote(&spec.exe.to_string_lossy()),
        dir = shell_quote(&dir.to_string_lossy()),
    )
}

/// `text` as one POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Writes JSON through a temporary file and a rename, so that a reader on another node
/// never sees half a file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(points: usize) -> JobSpec {
        JobSpec {
            format: FORMAT,
            exe: "/opt/my tools/pipeline".into(),
            project: "/home/a/proj".into(),
            artifacts: "/shared/store".into(),
            experiment: "/home/a/proj/experiments/q.toml".into(),
            data_root: "/shared/data".into(),
            allow_shell: false,
            no_cache: false,
            retries: 2,
            points: (0..points)
                .map(|index| PointSpec {
                    index,
                    set: vec![format!("train.epochs={}", index + 1)],
                    name: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_job_script_execs_the_same_binary_on_the_job_dir_with_quoted_paths() {
        let script = job_script(&spec(1), Path::new("/shared/store/slurm/it's"));
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(
            script.ends_with(
                "exec '/opt/my tools/pipeline' slurm-task '/shared/store/slurm/it'\\''s'\n"
            ),
            "{script}"
        );
        assert!(script.contains("up to 2 time(s)"), "{script}");
    }

    #[test]
    fn the_first_point_runs_alone_and_the_rest_as_an_array_after_it() {
        let dir = JobDir::open(Path::new("/s/slurm/x"));
        let resources = Resources {
            gres: Some("gpu:1".parse().expect("gres")),
            ..Resources::default()
        };
        let s = spec(12);
        assert_eq!(
            dir.sbatch_args("pipeline-q", &s, &resources, None, None),
            [
                "--job-name=pipeline-q",
                "--chdir=/home/a/proj",
                "--open-mode=append",
                "--requeue",
                "--output=/s/slurm/x/logs/point-0.log",
                "--gres=gpu:1"
            ]
        );
        assert_eq!(
            dir.sbatch_args("pipeline-q", &s, &resources, Some("41"), None),
            [
                "--job-name=pipeline-q",
                "--chdir=/home/a/proj",
                "--open-mode=append",
                "--requeue",
                "--array=1-11",
                "--output=/s/slurm/x/logs/point-%a.log",
                "--dependency=afterok:41",
                "--kill-on-invalid-dep=yes",
                "--gres=gpu:1"
            ]
        );
        assert!(dir
            .sbatch_args("pipeline-q", &s, &resources, Some("41"), Some(3))
            .contains(&"--array=1-11%3".to_string()));
        let submitted = Submitted {
            first: "41".into(),
            array: Some("42".into()),
        };
        assert_eq!(submitted.job_of(0).as_deref(), Some("41"));
        assert_eq!(submitted.job_of(11).as_deref(), Some("42_11"));
        assert_eq!(submitted.ids(), ["41", "42"]);
    }

    #[test]
    fn a_point_runs_locally_on_the_node_with_its_overrides() {
        let mut s = spec(2);
        s.allow_shell = true;
        let args: Vec<String> = s
            .run_args(&s.points[1])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--artifacts",
                "/shared/store",
                "run",
                "/home/a/proj/experiments/q.toml",
                "--data-root",
                "/shared/data",
                "--executor",
                "local",
                "--set",
                "train.epochs=2",
                "--allow-shell"
            ]
        );
    }

    #[test]
    fn spec_and_status_files_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = JobDir::create(tmp.path().join("job")).expect("create");
        let s = spec(3);
        dir.write_spec(&s).expect("write");
        assert_eq!(dir.read_spec().expect("read"), s);
        assert_eq!(dir.read_status(1), None);
        let status = PointStatus {
            format: FORMAT,
            index: 1,
            state: TaskState::Failed,
            attempt: 3,
            attempts_allowed: 3,
            exit_code: Some(3),
            run_dir: None,
            error: Some("error: stage `a` failed".into()),
            log: dir.log(1),
            host: "node1".into(),
            slurm_job: Some("42_1".into()),
        };
        dir.write_status(&status).expect("write");
        assert_eq!(dir.read_status(1), Some(status));
    }
}
