//! Runs an experiment: for each stage in order, compute its key, reuse the cached result or
//! run the stage and publish its result, and record the run as it goes.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::RunError;
use super::inputs::{connect_inputs, external_data, key_of, Available, External};
use super::pushes::Pushes;
use super::reporter::Reporter;
use super::store::Store;
use crate::experiment::kind::{Registry, StageContext, StageError, StageKind};
use crate::experiment::{Experiment, Stage};
use crate::hash::{describe_type, hash_regular_file};
use crate::runs::record::{
    git_state, CacheUse, ExperimentRecord, ExternalRecord, Host, InputRecord, OutputRecord,
    RunRecord, RunStatus, StageRecord, RECORD_FORMAT,
};
use crate::store::cache::{Base, CacheError, Entry, KeyLock, Lookup};
use crate::store::cas::DELTA_MIN;
use crate::store::files::nanos;
use crate::store::manifest::{FileRecord, Manifest, STORE_FORMAT};
use crate::store::remote::Fetched;

pub struct RunOptions {
    pub data_root: PathBuf,
    pub project_root: PathBuf,
    pub name: Option<String>,
    /// Recompute every stage instead of reusing cached results.
    pub no_cache: bool,
}

/// Runs an experiment and records it. The record is saved as the run goes, so a run that is
/// killed still shows which stages finished; a failed run is recorded with its error. The run
/// holds the store's shared lease from start to end, so `gc` waits for it.
pub fn run(
    exp: &Experiment,
    registry: &Registry,
    store: &Store,
    opts: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<RunRecord, RunError> {
    // Held to the end, before the run directory exists: gc waits for every run that holds
    // it, so nothing this run finds in the store, or will read later, is removed under it.
    let _lease = match store.cache.try_lease()? {
        Some(lease) => lease,
        None => {
            reporter.store_busy();
            store.cache.lease()?
        }
    };
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let id = store.runs.create(&started)?;
    let run_dir = store.runs.dir_of(&id);
    let (git_commit, git_dirty) = git_state(&opts.project_root);
    let mut record = RunRecord {
        format: RECORD_FORMAT,
        id: id.clone(),
        name: opts.name.clone(),
        status: RunStatus::Running,
        error: None,
        failed_stage: None,
        pid: std::process::id(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished: None,
        duration_s: None,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit,
        git_dirty,
        host: Host::current(),
        data_root: opts.data_root.display().to_string(),
        no_cache: opts.no_cache,
        experiment: ExperimentRecord {
            path: exp.path.display().to_string(),
            name: exp.name.clone(),
            description: exp.description.clone(),
            digest: exp.digest.to_hex().to_string(),
            seed: exp.seed,
            overrides: exp.overrides.clone(),
            caveats: exp.caveats.clone(),
            headline: exp.headline.clone(),
        },
        params: exp.effective_params(),
        device: Some(registry.device().clone()),
        stages: Vec::new(),
    };
    let experiment_copy = run_dir.join("experiment.toml");
    fs::write(&experiment_copy, &exp.text).map_err(|source| RunError::Publish {
        path: experiment_copy.clone(),
        source,
    })?;
    store.runs.save(&record)?;

    let mut runner = Runner {
        registry,
        store,
        opts,
        reporter,
        run_dir: &run_dir,
        available: BTreeMap::new(),
        published_names: Vec::new(),
        experiment: &exp.name,
        run_id: &id,
        assembled: Assembled(store.cache.root().join("tmp").join(format!(
            "assembled.{}.{}",
            std::process::id(),
            nanos()
        ))),
        pushes: Pushes::default(),
    };
    let mut outcome = Ok(());
    for (index, stage) in exp.stages.iter().enumerate() {
        reporter.stage_started(stage, index, exp.stages.len());
        match runner.stage(stage) {
            Ok(stage_record) => {
                reporter.stage_finished(stage, stage_record.cache, stage_record.duration_s);
                record.stages.push(stage_record);
                store.runs.save(&record)?;
            }
            Err(e) => {
                reporter.stage_failed(stage, &e.to_string());
                record.failed_stage = Some(stage.name.clone());
                outcome = Err(e);
                break;
            }
        }
    }
    record.finished = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    record.duration_s = Some(clock.elapsed().as_secs_f64());
    if outcome.is_ok() {
        // A failed run does not wait for its uploads: they commit (or not) on their own.
        for warning in runner.pushes.finish() {
            reporter.remote_warning(&warning);
        }
        // The run's keys become roots that remote gc keeps, whichever machine collects.
        if let (Some(remote), false) = (&store.remote, runner.pushes.is_down()) {
            let keys: Vec<String> = record.stages.iter().map(|s| s.key.clone()).collect();
            if let Err(e) = remote.record_run(&id, &exp.name, &keys) {
                reporter.remote_warning(&format!("{e}; the run is not recorded on the remote"));
            }
        }
    }
    match outcome {
        Ok(()) => {
            record.status = RunStatus::Succeeded;
            store.runs.save(&record)?;
            reporter
                .run_finished(&record, &run_dir)
                .map_err(RunError::Finish)?;
            Ok(record)
        }
        Err(e) => {
            record.status = RunStatus::Failed;
            record.error = Some(e.to_string());
            store.runs.save(&record)?;
            // The stage's error is the one to act on: a report failing too (a full disk) must
            // not replace it, and `pipeline show` writes a missing report later.
            let _ = reporter.run_finished(&record, &run_dir);
            Err(e)
        }
    }
}

struct Runner<'a> {
    registry: &'a Registry,
    store: &'a Store,
    opts: &'a RunOptions,
    reporter: &'a dyn Reporter,
    run_dir: &'a Path,
    /// Outputs of finished stages, by `stage.output`.
    available: BTreeMap<String, Available>,
    published_names: Vec<String>,
    experiment: &'a str,
    run_id: &'a str,
    /// Where files stored as parts are written whole for this run.
    assembled: Assembled,
    /// Uploads to the remote cache, going on while the next stages run.
    pushes: Pushes,
}

/// The run's directory of files assembled from their parts (under the cache's `tmp/`, so a
/// killed run's is a leftover gc removes), created when first needed and removed when the
/// run ends.
struct Assembled(PathBuf);

impl Drop for Assembled {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The architecture and vector instruction set this process computes with, which may change
/// floating-point results: `x86_64 AVX-512`, `x86_64 AVX2`, `aarch64 NEON`.
pub fn platform() -> String {
    let arch = std::env::consts::ARCH;
    #[cfg(target_arch = "x86_64")]
    let isa = if std::arch::is_x86_feature_detected!("avx512f") {
        "AVX-512"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        "AVX2"
    } else {
        "SSE2"
    };
    #[cfg(target_arch = "aarch64")]
    let isa = "NEON";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let isa = "scalar";
    format!("{arch} {isa}")
}

impl Runner<'_> {
    fn stage(&mut self, stage: &Stage) -> Result<StageRecord, RunError> {
        let clock = Instant::now();
        let kind = self
            .registry
            .get(&stage.kind)
            .ok_or_else(|| RunError::Stage {
                stage: stage.name.clone(),
                source: StageError::msg(format!("unknown kind `{}`", stage.kind)),
            })?;
        let external = external_data(
            stage,
            kind,
            &self.opts.data_root,
            self.store.cache.blobs().checked(),
        )?;
        let inputs = connect_inputs(stage, &self.available)?;
        let device = self.registry.device_class_for(kind, &stage.params);
        let key = key_of(stage, kind, &inputs, external.as_ref(), device)
            .to_hex()
            .to_string();

        let cache = &self.store.cache;
        let mut cache_use = if self.opts.no_cache {
            CacheUse::Forced
        } else {
            CacheUse::Miss
        };
        let mut found = None;
        if !self.opts.no_cache {
            match cache.lookup(&key)? {
                Lookup::Hit(entry) => found = Some(*entry),
                Lookup::Damaged { problems } => {
                    self.reporter.damaged(stage, &problems);
                    cache_use = CacheUse::Damaged;
                }
                Lookup::Miss => {}
            }
        }
        let entry = match found {
            Some(entry) => {
                cache_use = CacheUse::Hit;
                entry
            }
            None => {
                if cache.is_locked(&key) {
                    self.reporter.waiting(stage);
                }
                let lock = cache.lock(&key)?;
                // Another run may have published it while this one waited for the lock.
                let published = if self.opts.no_cache {
                    None
                } else {
                    match cache.lookup(&key)? {
                        Lookup::Hit(entry) => Some(*entry),
                        Lookup::Damaged { problems } => {
                            self.reporter.damaged(stage, &problems);
                            cache_use = CacheUse::Damaged;
                            None
                        }
                        Lookup::Miss => None,
                    }
                };
                let fetched = match (&published, &self.store.remote) {
                    (None, Some(remote)) if !self.opts.no_cache && !self.pushes.is_down() => {
                        match remote.fetch(cache, &key, &lock) {
                            Ok(Fetched::Entry(entry)) => Some(*entry),
                            Ok(Fetched::Absent) => None,
                            Err(e) => {
                                let warning = self.pushes.failed(&e);
                                self.reporter.remote_warning(&warning);
                                None
                            }
                        }
                    }
                    _ => None,
                };
                match (published, fetched) {
                    (Some(entry), _) => {
                        cache_use = CacheUse::Hit;
                        entry
                    }
                    (None, Some(entry)) => {
                        cache_use = CacheUse::Remote;
                        entry
                    }
                    (None, None) => {
                        let entry =
                            self.compute(stage, kind, &key, &inputs, external.as_ref(), &lock)?;
                        if let Some(remote) = &self.store.remote {
                            self.pushes.start(remote, entry.clone());
                        }
                        entry
                    }
                }
            }
        };

        let duration_s = if matches!(cache_use, CacheUse::Hit | CacheUse::Remote) {
            clock.elapsed().as_secs_f64()
        } else {
            entry.manifest.duration_s
        };
        let mut outputs = BTreeMap::new();
        for output in &stage.outputs {
            let file =
                entry
                    .manifest
                    .file(&output.name)
                    .ok_or_else(|| RunError::MissingOutput {
                        stage: stage.name.clone(),
                        output: output.name.clone(),
                        file: output.file.clone(),
                    })?;
            let path = if file.is_assembled() {
                self.assemble(&key, file)?
            } else {
                entry.path_of(file)
            };
            let digest = blake3::Hash::from_hex(&file.blake3).map_err(|_| {
                RunError::Cache(CacheError::Manifest {
                    path: entry.dir.clone(),
                    message: format!("bad digest for {}", file.file),
                })
            })?;
            self.available.insert(
                format!("{}.{}", stage.name, output.name),
                Available {
                    path: path.clone(),
                    digest,
                    size: file.size,
                    stored: file.stored(),
                },
            );
            let published = if output.publish {
                Some(self.publish(stage, &path, file)?)
            } else {
                None
            };
            outputs.insert(
                output.name.clone(),
                OutputRecord {
                    file: file.file.clone(),
                    size: file.size,
                    blake3: file.blake3.clone(),
                    published,
                    volatile: output.volatile,
                    floats: output.floats,
                },
            );
        }
        Ok(StageRecord {
            name: stage.name.clone(),
            kind: kind.name().to_string(),
            kind_version: kind.version(),
            key,
            cache: cache_use,
            duration_s,
            params: stage.params.to_table(),
            inputs: inputs
                .iter()
                .map(|(slot, a)| {
                    let from = stage
                        .inputs
                        .get(slot)
                        .map(|r| r.to_string())
                        .unwrap_or_default();
                    (
                        slot.clone(),
                        InputRecord {
                            from,
                            digest: a.digest.to_hex().to_string(),
                        },
                    )
                })
                .collect(),
            external: external.as_ref().map(|e| ExternalRecord {
                files: e.files.len(),
                bytes: e.files.iter().map(|f| f.size).sum(),
                digest: e.digest.to_hex().to_string(),
            }),
            outputs,
            notes: entry.manifest.notes.clone(),
            metrics: entry.manifest.metrics.clone(),
            device_class: device.map(str::to_string),
        })
    }

    /// Where this run keeps the whole files of `key`'s outputs stored as parts.
    fn assembled_dir(&self, key: &str) -> PathBuf {
        self.assembled.0.join(key)
    }

    /// Writes a file the store holds as parts whole, for the stages that read it and the run
    /// directory; one this run has just computed is there already.
    fn assemble(&self, key: &str, file: &FileRecord) -> Result<PathBuf, RunError> {
        let dir = self.assembled_dir(key);
        let cache = &self.store.cache;
        fs::create_dir_all(&dir).map_err(|source| RunError::Publish {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(&file.file);
        if fs::symlink_metadata(&path).is_err() {
            cache.assemble(file, &path)?;
        }
        Ok(path)
    }

    fn compute(
        &self,
        stage: &Stage,
        kind: &dyn StageKind,
        key: &str,
        inputs: &BTreeMap<String, Available>,
        external: Option<&External>,
        lock: &KeyLock,
    ) -> Result<Entry, RunError> {
        let clock = Instant::now();
        let cache = &self.store.cache;
        let staging = cache.stage(key, lock)?;
        let input_paths: BTreeMap<String, PathBuf> = inputs
            .iter()
            .map(|(slot, a)| (slot.clone(), a.path.clone()))
            .collect();
        let ctx = StageContext {
            stage: &stage.name,
            params: &stage.params,
            inputs: &input_paths,
            out_dir: staging.dir(),
            data_root: &self.opts.data_root,
            progress: self.reporter.progress(),
        };
        let report = match catch_unwind(AssertUnwindSafe(|| kind.run(&ctx))) {
            Ok(result) => result,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StageError::msg(format!("internal error (panic): {text}")))
            }
        }
        .map_err(|source| RunError::Stage {
            stage: stage.name.clone(),
            source,
        })?;
        for output in &stage.outputs {
            // Not followed: a link would make the result depend on what it points to.
            match fs::symlink_metadata(staging.dir().join(&output.file)) {
                Ok(meta) if meta.is_file() => {}
                Ok(meta) => {
                    return Err(RunError::NotRegularOutput {
                        stage: stage.name.clone(),
                        file: output.file.clone(),
                        what: describe_type(&meta.file_type()),
                    })
                }
                Err(_) => {
                    return Err(RunError::MissingOutput {
                        stage: stage.name.clone(),
                        output: output.name.clone(),
                        file: output.file.clone(),
                    })
                }
            }
        }
        let manifest = Manifest {
            format: STORE_FORMAT,
            key: key.to_string(),
            kind: kind.name().to_string(),
            kind_version: kind.version(),
            created: chrono::Utc::now().timestamp().max(0) as u64,
            duration_s: clock.elapsed().as_secs_f64(),
            files: stage
                .outputs
                .iter()
                .map(|o| FileRecord {
                    name: o.name.clone(),
                    file: o.file.clone(),
                    size: 0,
                    blake3: String::new(),
                    parts: Vec::new(),
                    volatile: o.volatile,
                })
                .collect(),
            params: stage.params.to_table(),
            inputs: inputs
                .iter()
                .map(|(slot, a)| (slot.clone(), a.digest.to_hex().to_string()))
                .collect(),
            external: external
                .map(|e| {
                    e.files
                        .iter()
                        .map(|f| (f.name.clone(), f.digest.to_hex().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            notes: report.notes.into_iter().collect(),
            metrics: report.metrics,
            stage: stage.name.clone(),
            experiment: self.experiment.to_string(),
            run: self.run_id.to_string(),
            platform: platform(),
        };
        // An output that is mostly one of the inputs (a head trained on a frozen base) is
        // stored as what it shares with it plus what is new.
        let bases: Vec<Base> = inputs
            .values()
            .filter(|a| a.size >= DELTA_MIN)
            .map(|a| Base {
                path: a.path.clone(),
                size: a.size,
                digest: a.digest.to_hex().to_string(),
                parts: a.stored.clone(),
            })
            .collect();
        let keep = self.assembled_dir(key);
        Ok(cache.publish_sharing(staging, manifest, lock, &bases, Some(&keep))?)
    }

    /// Places a result file in the run directory, read-only: a hard link to the cache's
    /// stored file, so that each distinct file is stored once however many runs publish it,
    /// or a checked copy where linking fails (another file system). An edit in place through
    /// the link does reach the cache's blob, and is caught there: the blob's identity record
    /// (`store::checked`) no longer matches (its ctime moved), so the next lookup reads it
    /// again, finds it damaged and recomputes the stage. Either way `run.toml` records the
    /// digest, which `pipeline verify` and `predict` check before using a file.
    fn publish(
        &mut self,
        stage: &Stage,
        path: &Path,
        record: &FileRecord,
    ) -> Result<String, RunError> {
        let file = &record.file;
        let name = if self.published_names.iter().any(|n| n == file) {
            format!("{}-{file}", stage.name)
        } else {
            file.to_string()
        };
        let target = self.run_dir.join(&name);
        let publish_err = |source| RunError::Publish {
            path: target.clone(),
            source,
        };
        // Written under another name, then renamed: a run killed here leaves no half file
        // under a name the record could list.
        let partial = self.run_dir.join(format!(".{name}.partial"));
        let _ = fs::remove_file(&partial);
        let linked = fs::hard_link(path, &partial).is_ok();
        if !linked {
            fs::copy(path, &partial).map_err(publish_err)?;
            let mut perms = fs::metadata(&partial).map_err(publish_err)?.permissions();
            perms.set_readonly(true);
            fs::set_permissions(&partial, perms).map_err(publish_err)?;
            // The entry was checked when found; the copy is checked too, as it is what the
            // run directory will hold.
            let copied = hash_regular_file(&partial, Some(record.size));
            if !copied.is_ok_and(|d| d.to_hex().as_str() == record.blake3) {
                let _ = fs::remove_file(&partial);
                return Err(publish_err(std::io::Error::other(format!(
                    "the copy of {} does not match its digest (was the cache entry changed?)",
                    path.display()
                ))));
            }
        }
        fs::rename(&partial, &target).map_err(publish_err)?;
        self.published_names.push(name.clone());
        Ok(name)
    }
}
