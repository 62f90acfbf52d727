//! A one-node Slurm cluster for the tests, on localhost: its own munge key and socket, a
//! slurm.conf with free ports and every file in a temporary directory, and `munged`,
//! `slurmctld` and `slurmd` in the foreground as children of the test, stopped when the
//! [`Cluster`] is dropped (and killed with the test process should it die first). Where the
//! daemons are missing, we are not root, or the cluster does not come up in time, the test
//! is recorded as skipped, with the reason.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::skip;

/// How long the cluster may take to show its node idle.
const START_TIMEOUT: Duration = Duration::from_secs(40);

/// One cluster at a time: the node has the machine's two cores, and each test's jobs should
/// have them to itself.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    children: Vec<Child>,
    _turn: MutexGuard<'static, ()>,
}

/// A daemon or client program, wherever Debian puts it (`/usr/sbin` may be off `PATH`).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> Option<u16> {
    TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

fn short_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| {
            h.trim()
                .split('.')
                .next()
                .unwrap_or("localhost")
                .to_string()
        })
        .unwrap_or_else(|_| "localhost".into())
}

/// The last lines of a log, for a skip message that says why.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

impl Cluster {
    /// Starts a cluster, or records the calling test as skipped and returns `None`.
    pub fn start() -> Option<Cluster> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let programs = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"];
        let missing: Vec<&str> = programs
            .iter()
            .copied()
            .filter(|p| find(p).is_none())
            .collect();
        if !missing.is_empty() {
            skip(&format!(
                "no Slurm here ({} not found; on Debian: apt-get install slurm-wlm munge)",
                missing.join(", ")
            ));
            return None;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip("a test Slurm cluster needs root (slurmd runs jobs as their users)");
            return None;
        }
        match Cluster::try_start(turn) {
            Ok(cluster) => Some(cluster),
            Err(reason) => {
                skip(&format!("the test Slurm cluster did not come up: {reason}"));
                None
            }
        }
    }

    fn try_start(turn: MutexGuard<'static, ()>) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("slurm-test.")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let munge = d.join("munge");
        for sub in ["state", "spool", "log"] {
            fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        fs::create_dir(&munge).map_err(|e| e.to_string())?;
        fs::set_permissions(&munge, fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let key = munge.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(|e| e.to_string())?;
        fs::write(&key, &bytes).map_err(|e| e.to_string())?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).map_err(|e| e.to_string())?;
        let socket = munge.join("munge.socket");
        let (Some(ctld_port), Some(slurmd_port)) = (free_port(), free_port()) else {
            return Err("no free port".into());
        };
        let host = short_hostname();
        let conf = d.join("slurm.conf");
        let p = |name: &str| d.join(name).display().to_string();
        fs::write(
            &conf,
            format!(
                "ClusterName=pipeline-test\n\
                 SlurmctldHost={host}(127.0.0.1)\n\
                 SlurmUser=root\nSlurmdUser=root\n\
                 SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
                 StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
                 SlurmctldPidFile={ctld_pid}\nSlurmdPidFile={slurmd_pid}\n\
                 SlurmctldLogFile={ctld_log}\nSlurmdLogFile={slurmd_log}\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n\
                 SchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
                 PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                socket = socket.display(),
                state = p("state"),
                spool = p("spool"),
                ctld_pid = p("slurmctld.pid"),
                slurmd_pid = p("slurmd.pid"),
                ctld_log = p("log/slurmctld.log"),
                slurmd_log = p("log/slurmd.log"),
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut cluster = Cluster {
            conf: conf.clone(),
            children: Vec::new(),
            _turn: turn,
            dir,
        };
        let d = cluster.dir.path().to_path_buf();
        let arg = |flag: &str, name: &str| format!("--{flag}={}", munge.join(name).display());
        cluster.spawn(
            "munged",
            &[
                "--foreground".into(),
                "--force".into(),
                format!("--key-file={}", key.display()),
                format!("--socket={}", socket.display()),
                arg("pid-file", "munged.pid"),
                arg("log-file", "munged.log"),
                arg("seed-file", "munged.seed"),
            ],
            &d.join("log/munged.out"),
        )?;
        wait_for(Duration::from_secs(10), || socket.exists())
            .ok_or_else(|| format!("munged made no socket: {}", tail(&d.join("log/munged.out"))))?;
        cluster.spawn(
            "slurmctld",
            &["-D".into(), "-c".into()],
            &d.join("log/slurmctld.out"),
        )?;
        cluster.spawn(
            "slurmd",
            &["-D".into(), "-N".into(), host.clone()],
            &d.join("log/slurmd.out"),
        )?;
        let idle = wait_for(START_TIMEOUT, || {
            let out = cluster.command("sinfo").args(["-h", "-o", "%T"]).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        if idle.is_none() {
            return Err(format!(
                "the node was not idle after {}s; slurmctld: {}; slurmd: {}",
                START_TIMEOUT.as_secs(),
                tail(&d.join("log/slurmctld.log")),
                tail(&d.join("log/slurmd.log"))
            ));
        }
        Ok(cluster)
    }

    fn spawn(&mut self, program: &str, args: &[String], log: &Path) -> Result<(), String> {
        let exe = find(program).ok_or_else(|| format!("{program} not found"))?;
        let out = fs::File::create(log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; it asks the kernel to kill the daemon when the
        // thread that started it (this test's) ends, so no daemon outlives a crashed test.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    /// A Slurm client command (`squeue`, `scontrol`...) aimed at this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(find(program).unwrap_or_else(|| program.into()));
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Every job the cluster knows (ended ones included), as `ID STATE`, one a line.
    pub fn jobs(&self) -> String {
        self.command("squeue")
            .args(["-h", "--array", "--states=all", "-o", "%i %T"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first (their processes belong to slurmstepd, not to us), then the daemons.
        let _ = self
            .command("scancel")
            .arg("--user=root")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = wait_for(Duration::from_secs(5), || {
            !self
                .jobs()
                .lines()
                .any(|l| l.contains("RUNNING") || l.contains("COMPLETING"))
        });
        for child in self.children.iter_mut().rev() {
            // SAFETY: kill on a child we started and have not yet reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for child in self.children.iter_mut().rev() {
            let waited = wait_for(Duration::from_secs(5), || {
                child.try_wait().map(|s| s.is_some()).unwrap_or(true)
            });
            if waited.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
