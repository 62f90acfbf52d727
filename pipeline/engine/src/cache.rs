//! The content-addressed store of stage results. It fetches, checks and publishes entries by
//! key; it never computes a key.
//!
//! Layout under the cache root (default `artifacts/cache/`):
//!
//! ```text
//! entries/<first two hex digits>/<key>/manifest.toml   what the entry holds, with digests
//! entries/<first two hex digits>/<key>/<output files>  read-only links to their blobs
//! cas/<first two hex digits>/<blake3>                  each distinct content once (cas.rs)
//! tmp/<key>.<pid>.<nanos>/                             a stage at work; never read
//! locks/<key>.lock                                     held while a key is computed
//! locks/store.lease                                    shared by runs, exclusive for gc
//! ```
//!
//! A stage writes into a directory under `tmp/`; only when it has succeeded and every output
//! is hashed is that directory renamed into `entries/`. A rename within one file system is
//! atomic, so an entry either exists whole, with its manifest, or not at all: a stage that
//! fails or is killed leaves at most a `tmp/` directory, which nothing reads and which the
//! next computation of the same key, or `pipeline gc`, removes.
//!
//! Nothing in an entry is trusted as it is found. The manifest's first line is the blake3
//! digest of the rest (`# blake3 <hex>`, so `tail -n +2 manifest.toml | b3sum` checks it by
//! hand), and every output file must be a regular file of the recorded size and digest. An
//! entry that fails any check is damaged: reported, removed and recomputed, never used.
//!
//! An output file is a hard link to its blob, so identical outputs of different stages are
//! stored once. An output that is mostly the bytes of one of the stage's inputs (a head
//! trained on a frozen base) is stored as parts of blobs instead ([`crate::cas`]): the entry
//! then has no file of that name, and [`Cache::assemble`] writes it whole, checked against
//! its digest, where a run needs it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cas::{self, Blobs, Part};
use crate::hash::{describe_type, hash_regular_file, FileProblem};

/// Version of the entry layout and manifest; entries of another version are not read.
/// 2: the manifest carries its own digest on its first line and is read-only.
/// 3: files are links to content-addressed blobs, or parts of blobs (`parts`).
pub const STORE_FORMAT: u32 = 3;

/// The manifest's file name inside an entry.
pub const MANIFEST: &str = "manifest.toml";

/// How the manifest's first line starts; the hex digest of the remaining bytes follows.
const SELF_DIGEST_PREFIX: &str = "# blake3 ";

/// A manifest is a few kilobytes; anything far larger is not one, and is not read whole.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The file every run holds shared and gc exclusive, under `locks/`.
const LEASE_FILE: &str = "store.lease";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cache entry {path}: unreadable manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: output {file} {problem}")]
    Output {
        path: PathBuf,
        file: String,
        problem: FileProblem,
    },
    #[error(transparent)]
    Blob(#[from] cas::BlobError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One output file as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The output's name (`images`), as other stages refer to it.
    pub name: String,
    /// The file's name inside the entry (`images.npy`).
    pub file: String,
    pub size: u64,
    pub blake3: String,
    /// Where the bytes are when the file is stored as ranges of blobs rather than whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Bytes that differ between identical executions (timings): left out when two machines'
    /// results for one key are compared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
}

impl FileRecord {
    /// The blob ranges holding the file: its parts, or its whole blob.
    pub fn stored(&self) -> Vec<Part> {
        if self.parts.is_empty() {
            cas::whole(&self.blake3, self.size)
        } else {
            self.parts.clone()
        }
    }

    /// Whether the file is stored as parts, with no file of its own in the entry.
    pub fn is_assembled(&self) -> bool {
        !self.parts.is_empty()
    }
}

/// What an entry holds and how it came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub kind: String,
    pub kind_version: u32,
    /// Seconds since the Unix epoch at publication.
    pub created: u64,
    pub duration_s: f64,
    pub files: Vec<FileRecord>,
    /// The parameters and input digests the key was computed from, for explanations.
    pub params: toml::Table,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// External data files read: name relative to the data root, and digest.
    #[serde(default)]
    pub external: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: toml::Table,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The stage and experiment that computed it, and the run: for messages (gc names what
    /// it removes) and for reproducibility findings between machines.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Where it was computed: architecture and vector instruction set (`x86_64 AVX-512`),
    /// which may change floating-point results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// A published entry whose manifest is intact (its files are checked by [`verify`]).
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub blobs: Blobs,
}

impl Entry {
    /// Where a whole file is in the entry. A file stored as parts has no path here: see
    /// [`Cache::assemble`].
    pub fn path_of(&self, record: &FileRecord) -> PathBuf {
        self.dir.join(&record.file)
    }
}

/// A file a new output may share most of its bytes with: one of the stage's inputs.
#[derive(Debug, Clone)]
pub struct Base {
    /// The file whole (an entry's link, or an assembled copy).
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
    /// How it is stored.
    pub parts: Vec<Part>,
}

/// The outcome of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Entry>),
    /// No entry, or one written by another store format.
    Miss,
    /// The entry exists but its manifest or files fail their checks; [`Cache::lookup`] has
    /// removed it. Each problem names the file at fault: `numbers.txt is a FIFO, not a
    /// regular file`.
    Damaged {
        problems: Vec<String>,
    },
}

/// What reading an entry's manifest found.
enum ManifestState {
    Absent,
    /// Written by another store format: not ours to read, not damage either.
    OtherFormat,
    Damaged(String),
    Intact(Box<Manifest>),
}

pub struct Cache {
    root: PathBuf,
    blobs: Blobs,
}

/// Holds the lock on one key until dropped.
pub struct KeyLock {
    _file: File,
}

/// A run's shared hold on the store, from its start to its end: while any run holds one,
/// `gc` removes nothing, so nothing a run has found or will read disappears under it. The OS
/// drops it when the process ends, however it ends.
pub struct Lease {
    _file: File,
}

/// gc's exclusive hold on the store: no run is in progress while it is held, so every
/// temporary directory is a leftover and every entry is free to remove.
pub struct ExclusiveLease {
    _file: File,
}

/// A stage's outputs being written; published by [`Cache::publish`], removed if dropped.
pub struct Staging {
    dir: PathBuf,
    key: String,
}

impl Staging {
    /// Where the stage writes its output files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Published directories have been renamed away; this only removes failed work.
        make_writable(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for sub in ["entries", "tmp", "locks", "cas"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let blobs = Blobs::open(&root.join("cas"), &root.join("tmp")).map_err(io_err(root))?;
        Ok(Cache {
            root: root.to_path_buf(),
            blobs,
        })
    }

    /// The store's content-addressed blobs.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Writes a file of `entry` whole to `dest` (read-only), checked against its digest:
    /// for files stored as parts, which have no file in the entry.
    pub fn assemble(&self, record: &FileRecord, dest: &Path) -> Result<(), CacheError> {
        self.blobs
            .assemble(&record.stored(), record.size, &record.blake3, dest)
            .map_err(|e| CacheError::Output {
                path: dest.to_path_buf(),
                file: record.file.clone(),
                problem: FileProblem::Io(io::Error::other(e.to_string())),
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(&key[..2]).join(key)
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// Looks a key up and checks the manifest and every file; a damaged entry is removed so
    /// that it is recomputed rather than used.
    pub fn lookup(&self, key: &str) -> Result<Lookup, CacheError> {
        let found = self.inspect(key)?;
        if let Lookup::Damaged { .. } = found {
            self.evict(key)?;
        }
        Ok(found)
    }

    /// [`Cache::lookup`] without removing a damaged entry: for questions that must not change
    /// the store.
    pub fn inspect(&self, key: &str) -> Result<Lookup, CacheError> {
        match self.read_manifest(key) {
            ManifestState::Absent | ManifestState::OtherFormat => Ok(Lookup::Miss),
            ManifestState::Damaged(problem) => Ok(Lookup::Damaged {
                problems: vec![problem],
            }),
            ManifestState::Intact(manifest) => {
                let entry = Entry {
                    dir: self.entry_dir(key),
                    manifest: *manifest,
                    blobs: self.blobs.clone(),
                };
                let problems = verify(&entry);
                if problems.is_empty() {
                    Ok(Lookup::Hit(Box::new(entry)))
                } else {
                    Ok(Lookup::Damaged { problems })
                }
            }
        }
    }

    /// Reads an entry's manifest without checking its files: `None` when there is no entry,
    /// or its manifest is damaged or of another format.
    pub fn read_entry(&self, key: &str) -> Result<Option<Entry>, CacheError> {
        Ok(match self.read_manifest(key) {
            ManifestState::Intact(manifest) => Some(Entry {
                dir: self.entry_dir(key),
                manifest: *manifest,
                blobs: self.blobs.clone(),
            }),
            _ => None,
        })
    }

    fn read_manifest(&self, key: &str) -> ManifestState {
        let dir = self.entry_dir(key);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            // A link would make the entry whatever it points to.
            Ok(meta) => {
                return ManifestState::Damaged(format!(
                    "the entry is {}, not a directory",
                    describe_type(&meta.file_type())
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ManifestState::Absent,
            Err(e) => return ManifestState::Damaged(format!("the entry cannot be read: {e}")),
        }
        let path = dir.join(MANIFEST);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ManifestState::Absent,
            Err(e) => return ManifestState::Damaged(format!("{MANIFEST} cannot be read: {e}")),
        };
        if !meta.file_type().is_file() {
            return ManifestState::Damaged(format!(
                "{MANIFEST} is {}, not a regular file",
                describe_type(&meta.file_type())
            ));
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return ManifestState::Damaged(format!(
                "{MANIFEST} has {} bytes, far more than a manifest",
                meta.len()
            ));
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => return ManifestState::Damaged(format!("{MANIFEST} cannot be read: {e}")),
        };
        parse_manifest(&bytes, key)
    }

    /// Blocks until this process holds the key's lock. Another process computing the same
    /// key holds it until it has published (or failed); the OS releases it if that process
    /// dies, so a killed run never blocks later ones.
    pub fn lock(&self, key: &str) -> Result<KeyLock, CacheError> {
        let path = self.lock_path(key);
        let file = open_lock_file(&path)?;
        file.lock().map_err(io_err(&path))?;
        Ok(KeyLock { _file: file })
    }

    /// Whether another process holds the key's lock right now.
    pub fn is_locked(&self, key: &str) -> bool {
        let Ok(file) = File::options().write(true).open(self.lock_path(key)) else {
            return false;
        };
        file.try_lock().is_err()
    }

    /// A run's shared lease, if gc does not hold the store right now.
    pub fn try_lease(&self) -> Result<Option<Lease>, CacheError> {
        let (path, file) = self.lease_file()?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Lease { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// A run's shared lease, waiting for gc to finish if it holds the store.
    pub fn lease(&self) -> Result<Lease, CacheError> {
        let (path, file) = self.lease_file()?;
        file.lock_shared().map_err(io_err(&path))?;
        Ok(Lease { _file: file })
    }

    /// gc's exclusive lease, if no run holds the store right now.
    pub fn try_lease_exclusive(&self) -> Result<Option<ExclusiveLease>, CacheError> {
        let (path, file) = self.lease_file()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ExclusiveLease { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// gc's exclusive lease, waiting for every run that holds the store to end.
    pub fn lease_exclusive(&self) -> Result<ExclusiveLease, CacheError> {
        let (path, file) = self.lease_file()?;
        file.lock().map_err(io_err(&path))?;
        Ok(ExclusiveLease { _file: file })
    }

    fn lease_file(&self) -> Result<(PathBuf, File), CacheError> {
        let path = self.root.join("locks").join(LEASE_FILE);
        let file = open_lock_file(&path)?;
        Ok((path, file))
    }

    /// A fresh directory for computing `key`. Call with the key's lock held: leftovers of
    /// earlier, interrupted computations of the same key are removed here.
    pub fn stage(&self, key: &str, _lock: &KeyLock) -> Result<Staging, CacheError> {
        let tmp = self.root.join("tmp");
        if let Ok(dir) = fs::read_dir(&tmp) {
            for leftover in dir.flatten() {
                if leftover.file_name().to_string_lossy().starts_with(key) {
                    make_writable(&leftover.path());
                    let _ = fs::remove_dir_all(leftover.path());
                }
            }
        }
        let dir = tmp.join(format!("{key}.{}.{}", std::process::id(), nanos()));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Staging {
            dir,
            key: key.to_string(),
        })
    }

    /// Temporary directories no computation is working in: those of killed runs, and entries
    /// an interrupted eviction left behind. Proof of the exclusive lease is required, since
    /// only then is no run in progress; a key whose lock is held is still skipped, so that a
    /// process of an older version, which takes no lease, keeps its work.
    pub fn stale_tmp(&self, _lease: &ExclusiveLease) -> Result<Vec<PathBuf>, CacheError> {
        let tmp = self.root.join("tmp");
        let mut stale = Vec::new();
        for item in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or_default();
            if is_key(key) && self.is_locked(key) {
                continue;
            }
            stale.push(item.path());
        }
        stale.sort();
        Ok(stale)
    }

    /// Removes the lock file of a key that no longer has an entry. Only under the exclusive
    /// lease: a run takes a key's lock only while it holds its own lease, so no one holds or
    /// waits for it then, and no one can be left locking a file that is gone.
    pub fn remove_lock_file(&self, key: &str, _lease: &ExclusiveLease) {
        let _ = fs::remove_file(self.lock_path(key));
    }

    /// Hashes the staged outputs, writes the manifest and moves the directory into place.
    /// `manifest.files` lists the outputs by name and file; sizes and digests are filled in.
    /// An output must be a regular file: a link would make the entry depend on what it points
    /// to, and a FIFO or device has no bytes to record.
    pub fn publish(
        &self,
        staging: Staging,
        manifest: Manifest,
        lock: &KeyLock,
    ) -> Result<Entry, CacheError> {
        self.publish_sharing(staging, manifest, lock, &[], None)
    }

    /// [`Cache::publish`], storing an output that shares most of its bytes with one of
    /// `bases` (the stage's inputs) as parts: the bytes it shares are referenced by digest,
    /// only the rest is new. Every other output becomes a link to its blob. The staged whole
    /// file of an output stored as parts is moved into `keep_whole` (created if needed), where
    /// a run reading it would otherwise assemble it again, or else removed.
    pub fn publish_sharing(
        &self,
        staging: Staging,
        mut manifest: Manifest,
        _lock: &KeyLock,
        bases: &[Base],
        keep_whole: Option<&Path>,
    ) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        let records: Result<Vec<FileRecord>, CacheError> = manifest
            .files
            .par_iter()
            .map(|f| {
                let path = dir.join(&f.file);
                let problem = |problem| CacheError::Output {
                    path: dir.clone(),
                    file: f.file.clone(),
                    problem,
                };
                let digest = hash_regular_file(&path, None).map_err(problem)?;
                let file = File::open(&path).map_err(io_err(&path))?;
                // Durable before the rename makes it visible.
                file.sync_all().map_err(io_err(&path))?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                set_read_only(&path)?;
                Ok(FileRecord {
                    size,
                    blake3: digest.to_hex().to_string(),
                    parts: Vec::new(),
                    ..f.clone()
                })
            })
            .collect();
        manifest.files = records?;
        // An earlier output of the same stage is a base too: the model stage's base is its
        // model without the head.
        let mut bases = bases.to_vec();
        for record in &mut manifest.files {
            if record.size >= cas::DELTA_MIN {
                if let Some(parts) = self.delta(&dir, record, &bases, keep_whole)? {
                    record.parts = parts;
                    continue;
                }
            }
            self.blobs.adopt(&dir.join(&record.file), &record.blake3)?;
            if record.size >= cas::DELTA_MIN {
                bases.push(Base {
                    path: dir.join(&record.file),
                    size: record.size,
                    digest: record.blake3.clone(),
                    parts: cas::whole(&record.blake3, record.size),
                });
            }
        }
        manifest.key = staging.key.clone();
        manifest.format = STORE_FORMAT;
        let manifest_path = dir.join(MANIFEST);
        let text = render_manifest(&manifest).map_err(|message| CacheError::Manifest {
            path: manifest_path.clone(),
            message,
        })?;
        self.place(staging, &text, manifest)
    }

    /// Writes the manifest into the staged directory and moves it into place.
    fn place(&self, staging: Staging, text: &str, manifest: Manifest) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        let manifest_path = dir.join(MANIFEST);
        write_durably(&manifest_path, text.as_bytes()).map_err(io_err(&manifest_path))?;
        set_read_only(&manifest_path)?;
        let target = self.entry_dir(&staging.key);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if fs::symlink_metadata(&target).is_ok() {
            // A damaged entry found by another run, an entry of another format, or
            // --no-cache: the fresh result replaces it.
            self.evict(&staging.key)?;
        }
        fs::rename(&dir, &target).map_err(io_err(&target))?;
        Ok(Entry {
            dir: target,
            manifest,
            blobs: self.blobs.clone(),
        })
    }

    /// Publishes an entry fetched from elsewhere (a remote cache) as it was written there:
    /// `text` is its manifest, already checked by [`parse_manifest_text`]. Whole files are in
    /// the staged directory; the blobs of files stored as parts must be in the store. Every
    /// byte is checked again here, so nothing unchecked becomes an entry.
    pub fn publish_fetched(
        &self,
        staging: Staging,
        text: &str,
        manifest: Manifest,
        _lock: &KeyLock,
    ) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        for record in &manifest.files {
            if record.is_assembled() {
                for part in &record.parts {
                    self.blobs
                        .check(&part.blob, part.offset + part.len)
                        .map_err(|problem| CacheError::Manifest {
                            path: dir.clone(),
                            message: format!(
                                "{}: blob {} {problem}",
                                record.file,
                                cas::short(&part.blob)
                            ),
                        })?;
                }
                continue;
            }
            let path = dir.join(&record.file);
            match hash_regular_file(&path, Some(record.size)) {
                Ok(d) if d.to_hex().as_str() == record.blake3 => {}
                Ok(_) => {
                    return Err(CacheError::Output {
                        path: dir.clone(),
                        file: record.file.clone(),
                        problem: FileProblem::Io(io::Error::other("does not match its digest")),
                    })
                }
                Err(problem) => {
                    return Err(CacheError::Output {
                        path: dir.clone(),
                        file: record.file.clone(),
                        problem,
                    })
                }
            }
            set_read_only(&path)?;
            self.blobs.adopt(&path, &record.blake3)?;
        }
        self.place(staging, text, manifest)
    }

    /// The parts of `record` (staged in `dir`) when it shares at least half its bytes with
    /// one of `bases`, its beginning and end, with the staged file then removed; `None` when
    /// it is better stored whole.
    fn delta(
        &self,
        dir: &Path,
        record: &FileRecord,
        bases: &[Base],
        keep_whole: Option<&Path>,
    ) -> Result<Option<Vec<Part>>, CacheError> {
        let path = dir.join(&record.file);
        let mut best: Option<(u64, u64, &Base)> = None;
        for base in bases {
            if base.size < record.size / 2 || base.size / 2 > record.size {
                continue;
            }
            if base.digest == record.blake3 {
                // The same bytes: a link to the same blob stores them once already.
                return Ok(None);
            }
            let Ok((prefix, suffix)) = cas::shared_ends(&path, &base.path) else {
                continue;
            };
            if best.is_none_or(|(p, s, _)| prefix + suffix > p + s) {
                best = Some((prefix, suffix, base));
            }
        }
        let Some((prefix, suffix, base)) = best else {
            return Ok(None);
        };
        if prefix + suffix < record.size / 2 {
            return Ok(None);
        }
        if base.parts == cas::whole(&base.digest, base.size) {
            self.blobs.ensure(&base.path, &base.digest)?;
        }
        let mut parts = cas::slice(&base.parts, 0, prefix);
        let middle_len = record.size - prefix - suffix;
        if middle_len > 0 {
            let middle = dir.join(format!(".{}.middle", record.file));
            let digest = copy_range(&path, prefix, middle_len, &middle).map_err(io_err(&middle))?;
            set_read_only(&middle)?;
            self.blobs.adopt(&middle, &digest)?;
            let _ = fs::remove_file(&middle);
            parts.push(Part {
                blob: digest,
                offset: 0,
                len: middle_len,
            });
        }
        parts.extend(cas::slice(&base.parts, base.size - suffix, suffix));
        // Checked before the whole file goes: the parts must give back exactly its bytes.
        self.blobs
            .check_parts(&parts, record.size, &record.blake3)
            .map_err(CacheError::Blob)?;
        // Hashed above and read-only: as good as an assembled copy.
        let kept = keep_whole.is_some_and(|keep| {
            fs::create_dir_all(keep).is_ok() && fs::rename(&path, keep.join(&record.file)).is_ok()
        });
        if !kept {
            make_writable_file(&path);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(Some(parts))
    }

    /// Removes an entry. The directory is first renamed out of `entries/`, so a reader sees
    /// the entry whole or not at all.
    pub fn evict(&self, key: &str) -> Result<(), CacheError> {
        let dir = self.entry_dir(key);
        let trash =
            self.root
                .join("tmp")
                .join(format!("{key}.evicted.{}.{}", std::process::id(), nanos()));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        }
        make_writable(&trash);
        fs::remove_dir_all(&trash).map_err(io_err(&trash))
    }

    /// Every published key. Anything else under `entries/` (a file manager's `.DS_Store`,
    /// a stray copy) is no entry and is left alone.
    pub fn keys(&self) -> Result<Vec<String>, CacheError> {
        let entries = self.root.join("entries");
        let mut keys = Vec::new();
        for shard in fs::read_dir(&entries).map_err(io_err(&entries))?.flatten() {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if shard_name.len() != 2 || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for entry in fs::read_dir(shard.path())
                .map_err(io_err(&shard.path()))?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_key(&name) && name.starts_with(&shard_name) {
                    keys.push(name);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Where a key's entry lives (whether or not it exists).
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.entry_dir(key)
    }
}

/// The manifest as written: the digest line, then the TOML it covers.
fn render_manifest(manifest: &Manifest) -> Result<String, String> {
    let body = toml::to_string(manifest).map_err(|e| e.to_string())?;
    Ok(format!(
        "{SELF_DIGEST_PREFIX}{}\n{body}",
        blake3::hash(body.as_bytes()).to_hex()
    ))
}

/// A manifest's text checked as [`Cache::lookup`] checks a local one (its own digest, its
/// key, the names and digests it gives): the manifest, or why it cannot be used (`None`
/// inside for one of another store format).
pub fn parse_manifest_text(bytes: &[u8], key: &str) -> Result<Option<Manifest>, String> {
    match parse_manifest(bytes, key) {
        ManifestState::Intact(m) => Ok(Some(*m)),
        ManifestState::OtherFormat | ManifestState::Absent => Ok(None),
        ManifestState::Damaged(problem) => Err(problem),
    }
}

/// The manifest as [`Cache::publish`] writes it: the digest line, then the TOML.
pub fn manifest_text(manifest: &Manifest) -> Result<String, String> {
    render_manifest(manifest)
}

/// Checks a manifest's own digest, then its content against the key it was found under.
fn parse_manifest(bytes: &[u8], key: &str) -> ManifestState {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ManifestState::Damaged(format!("{MANIFEST} is not UTF-8 text"));
    };
    let Some((recorded, body)) = text
        .strip_prefix(SELF_DIGEST_PREFIX)
        .and_then(|rest| rest.split_once('\n'))
    else {
        // Manifests of format 1 had no digest line; they are another format, not damage.
        let old_format = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("format").and_then(toml::Value::as_integer))
            .is_some_and(|f| f < i64::from(STORE_FORMAT));
        return if old_format {
            ManifestState::OtherFormat
        } else {
            ManifestState::Damaged(format!("{MANIFEST} has no digest line"))
        };
    };
    if recorded != blake3::hash(body.as_bytes()).to_hex().as_str() {
        return ManifestState::Damaged(format!("{MANIFEST} does not match its own digest"));
    }
    let table: toml::Table = match toml::from_str(body) {
        Ok(t) => t,
        Err(e) => {
            return ManifestState::Damaged(format!(
                "{MANIFEST} does not parse: {}",
                e.message().trim()
            ))
        }
    };
    if table.get("format").and_then(toml::Value::as_integer) != Some(i64::from(STORE_FORMAT)) {
        return ManifestState::OtherFormat;
    }
    let manifest: Manifest = match table.try_into() {
        Ok(m) => m,
        Err(e) => {
            return ManifestState::Damaged(format!(
                "{MANIFEST} does not parse: {}",
                e.message().trim()
            ))
        }
    };
    if manifest.key != key {
        return ManifestState::Damaged(format!(
            "{MANIFEST} belongs to another entry ({})",
            manifest.key.chars().take(12).collect::<String>()
        ));
    }
    // The digest is no signature (anyone can recompute it): what the manifest names must
    // still stay inside its entry, as the run directory takes its file names from it.
    if let Some(f) = manifest.files.iter().find(|f| !is_plain_file_name(&f.file)) {
        return ManifestState::Damaged(format!(
            "{MANIFEST} names a file outside its entry: {}",
            f.file
        ));
    }
    // Digests become paths under cas/: nothing but a digest may be one.
    let bad_digest = manifest.files.iter().find_map(|f| {
        std::iter::once(f.blake3.as_str())
            .chain(f.parts.iter().map(|p| p.blob.as_str()))
            .find(|d| !cas::is_digest(d))
            .map(|d| (f.file.clone(), d.to_string()))
    });
    if let Some((file, digest)) = bad_digest {
        return ManifestState::Damaged(format!(
            "{MANIFEST} gives {file} a digest that is none: {digest:?}"
        ));
    }
    if let Some(f) = manifest
        .files
        .iter()
        .find(|f| f.is_assembled() && f.parts.iter().map(|p| p.len).sum::<u64>() != f.size)
    {
        return ManifestState::Damaged(format!(
            "{MANIFEST} stores {} in parts that do not add up to its size",
            f.file
        ));
    }
    ManifestState::Intact(Box::new(manifest))
}

/// A name that stays in its directory: no separator, not `.` or `..`, not the manifest.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != MANIFEST
        && !name.contains(['/', '\\', '\0'])
}

/// Whether `name` can be a key: 64 lower-case hex digits.
pub fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Problems with an entry's files, each naming its file: missing, not a regular file, another
/// size, or other bytes than recorded. Type and size are checked before anything is read, and
/// a file is read only when it may have changed since it was last found intact (see
/// [`crate::checked`]). A file stored as parts is checked through its blobs, each against its
/// own name.
pub fn verify(entry: &Entry) -> Vec<String> {
    let mut bad: Vec<String> = entry
        .manifest
        .files
        .par_iter()
        .filter(|f| !f.is_assembled())
        .filter_map(|f| {
            let path = entry.path_of(f);
            match entry.blobs.check_file(&path, f.size, &f.blake3) {
                Ok(()) => None,
                Err(failure) => Some(format!("{} {failure}", f.file)),
            }
        })
        .collect();
    // Each blob once, however many parts use it, to the furthest byte any of them reads.
    let mut needed: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for f in entry.manifest.files.iter().filter(|f| f.is_assembled()) {
        for part in &f.parts {
            let end = part.offset + part.len;
            let slot = needed.entry(&part.blob).or_insert((0, &f.file));
            slot.0 = slot.0.max(end);
        }
    }
    let needed: Vec<(&str, (u64, &str))> = needed.into_iter().collect();
    let blob_problems: Vec<String> = needed
        .par_iter()
        .filter_map(|(blob, (end, file))| {
            entry
                .blobs
                .check(blob, *end)
                .err()
                .map(|problem| format!("{file}: its blob {} {problem}", cas::short(blob)))
        })
        .collect();
    bad.extend(blob_problems);
    bad.sort();
    bad
}

fn open_lock_file(path: &Path) -> Result<File, CacheError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// Copies `len` bytes of `src` from `offset` into a new file `dest`; returns their digest.
fn copy_range(src: &Path, offset: u64, len: u64, dest: &Path) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut from = File::open(src)?;
    from.seek(SeekFrom::Start(offset))?;
    let mut reader = from.take(len);
    let mut out = File::create(dest)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != len {
        return Err(io::Error::other("the file shrank while it was stored"));
    }
    out.sync_all()?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn make_writable_file(path: &Path) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_file() {
            let mut perms = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = fs::set_permissions(path, perms);
        }
    }
}

pub(crate) fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn set_read_only(path: &Path) -> Result<(), CacheError> {
    let mut perms = fs::metadata(path).map_err(io_err(path))?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(io_err(path))
}

/// Makes a removed entry's files, and the directory itself, writable again so that it can be
/// deleted everywhere (links are left alone: their target is not ours).
fn make_writable(dir: &Path) {
    let writable = |path: &Path| {
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.is_dir() || meta.is_file() {
                let mut perms = meta.permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                let _ = fs::set_permissions(path, perms);
            }
        }
    };
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        // Never through a link: its target's files are not ours to touch.
        return;
    }
    writable(dir);
    let Ok(read) = fs::read_dir(dir) else { return };
    for file in read.flatten() {
        writable(&file.path());
    }
}

/// A manifest for tests: `files` as (name, file) with no sizes or digests, kind `test`.
#[cfg(test)]
pub(crate) fn test_manifest(files: &[(&str, &str)]) -> Manifest {
    Manifest {
        format: STORE_FORMAT,
        key: String::new(),
        kind: "test".into(),
        kind_version: 1,
        created: 0,
        duration_s: 0.0,
        files: files
            .iter()
            .map(|(name, file)| FileRecord {
                name: name.to_string(),
                file: file.to_string(),
                size: 0,
                blake3: String::new(),
                parts: Vec::new(),
                volatile: false,
            })
            .collect(),
        params: toml::Table::new(),
        inputs: BTreeMap::new(),
        external: BTreeMap::new(),
        notes: toml::Table::new(),
        metrics: BTreeMap::new(),
        stage: "s".into(),
        experiment: "e".into(),
        run: String::new(),
        platform: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_manifest as manifest;

    const KEY: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

    #[test]
    fn a_file_stored_as_parts_leaves_its_whole_copy_where_asked() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        // A 2 MB "model" as an earlier entry, and a "trained model" differing in 1 kB.
        let model: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut trained = model.clone();
        for b in &mut trained[1_000_000..1_001_024] {
            *b ^= 0x33;
        }
        let lock = cache.lock(KEY).expect("lock");
        let staging = cache.stage(KEY, &lock).expect("stage");
        fs::write(staging.dir().join("model.bin"), &model).expect("write");
        let base = cache
            .publish(staging, manifest(&[("model", "model.bin")]), &lock)
            .expect("publish");
        drop(lock);
        let record = &base.manifest.files[0];
        let input = Base {
            path: base.path_of(record),
            size: record.size,
            digest: record.blake3.clone(),
            parts: record.stored(),
        };

        let other = "cd".repeat(32);
        let keep = root.path().join("kept");
        for keep_whole in [None, Some(keep.as_path())] {
            let lock = cache.lock(&other).expect("lock");
            let staging = cache.stage(&other, &lock).expect("stage");
            let staged = staging.dir().join("model.bin");
            fs::write(&staged, &trained).expect("write");
            let entry = cache
                .publish_sharing(
                    staging,
                    manifest(&[("model", "model.bin")]),
                    &lock,
                    std::slice::from_ref(&input),
                    keep_whole,
                )
                .expect("publish");
            let file = &entry.manifest.files[0];
            assert!(file.is_assembled(), "stored as parts");
            assert_eq!(file.blake3, blake3::hash(&trained).to_hex().as_str());
            assert!(!staged.exists());
            match keep_whole {
                None => assert!(!keep.exists()),
                Some(keep) => {
                    let kept = keep.join("model.bin");
                    assert_eq!(fs::read(&kept).expect("kept"), trained);
                    assert!(fs::metadata(&kept).expect("meta").permissions().readonly());
                }
            }
            drop(lock);
            cache.evict(&other).expect("evict");
        }
    }

    #[test]
    fn publish_then_hit_with_digests() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
        let lock = cache.lock(KEY).expect("lock");
        let staging = cache.stage(KEY, &lock).expect("stage");
        fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
        let entry = cache
            .publish(staging, manifest(&[("out", "out.txt")]), &lock)
            .expect("publish");
        assert_eq!(entry.manifest.files[0].size, 5);
        assert_eq!(
            entry.manifest.files[0].blake3,
            blake3::hash(b"hello").to_hex().as_str()
        );
        match cache.lookup(KEY).expect("lookup") {
            Lookup::Hit(e) => assert_eq!(e.manifest, entry.manifest),
            other => panic!("expected a hit, got {other:?}"),
        }
        assert_eq!(cache.keys().expect("keys"), vec![KEY.to_string()]);
        assert_eq!(
            fs::read_dir(root.path().join("tmp")).expect("tmp").count(),
            0,
            "nothing left in tmp"
        );
    }

    #[test]
    fn failed_work_leaves_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let lock = cache.lock(KEY).expect("lock");
        {
            let staging = cache.stage(KEY, &lock).expect("stage");
            fs::write(staging.dir().join("half.txt"), b"partial").expect("write");
            // Dropped without publishing, as when a stage returns an error.
        }
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
        assert_eq!(
            fs::read_dir(root.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn leftovers_of_a_killed_computation_are_never_read_and_get_cleaned() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let leftover = root.path().join("tmp").join(format!("{KEY}.999.1"));
        fs::create_dir_all(&leftover).expect("mkdir");
        fs::write(leftover.join("out.txt"), b"half").expect("write");
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
        let lock = cache.lock(KEY).expect("lock");
        let _staging = cache.stage(KEY, &lock).expect("stage");
        assert!(!leftover.exists());
    }

    #[test]
    fn a_flipped_byte_is_detected_and_the_entry_dropped() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let lock = cache.lock(KEY).expect("lock");
        let staging = cache.stage(KEY, &lock).expect("stage");
        fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
        let entry = cache
            .publish(staging, manifest(&[("out", "out.txt")]), &lock)
            .expect("publish");
        let path = entry.dir.join("out.txt");
        make_writable(&entry.dir);
        fs::write(&path, b"hellp").expect("corrupt");
        match cache.lookup(KEY).expect("lookup") {
            Lookup::Damaged { problems } => {
                assert_eq!(
                    problems,
                    vec!["out.txt does not match its digest".to_string()]
                )
            }
            other => panic!("expected damage, got {other:?}"),
        }
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    }

    fn published(cache: &Cache) -> Entry {
        let lock = cache.lock(KEY).expect("lock");
        let staging = cache.stage(KEY, &lock).expect("stage");
        fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
        let mut m = manifest(&[("out", "out.txt")]);
        m.metrics.insert("test_accuracy".into(), 0.75);
        cache.publish(staging, m, &lock).expect("publish")
    }

    fn rewrite_manifest(entry: &Entry, edit: impl FnOnce(String) -> String) {
        let path = entry.dir.join(MANIFEST);
        make_writable(&entry.dir);
        let text = fs::read_to_string(&path).expect("manifest");
        fs::write(&path, edit(text)).expect("write");
    }

    fn damage_of(cache: &Cache) -> Vec<String> {
        match cache.lookup(KEY).expect("lookup") {
            Lookup::Damaged { problems } => problems,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn the_manifest_is_read_only_and_carries_its_own_digest() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let entry = published(&cache);
        let path = entry.dir.join(MANIFEST);
        assert!(fs::metadata(&path)
            .expect("manifest")
            .permissions()
            .readonly());
        let text = fs::read_to_string(&path).expect("manifest");
        let (first, body) = text.split_once('\n').expect("two parts");
        assert_eq!(
            first,
            format!("# blake3 {}", blake3::hash(body.as_bytes()).to_hex())
        );
        let parsed: Manifest = toml::from_str(body).expect("the rest is the TOML manifest");
        assert_eq!(parsed, entry.manifest);
        assert_eq!(parsed.format, STORE_FORMAT);
    }

    #[test]
    fn an_edited_metric_is_damage() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let entry = published(&cache);
        rewrite_manifest(&entry, |t| {
            assert!(t.contains("test_accuracy = 0.75"), "{t}");
            t.replace("test_accuracy = 0.75", "test_accuracy = 0.99")
        });
        assert_eq!(
            damage_of(&cache),
            ["manifest.toml does not match its own digest"]
        );
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    }

    #[test]
    fn a_manifest_that_does_not_parse_or_belongs_elsewhere_is_damage() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");

        // A consistent digest over TOML that does not parse: a bug's output, not an edit.
        let entry = published(&cache);
        rewrite_manifest(&entry, |_| {
            let body = "format = 3\nkey = [\n";
            format!(
                "# blake3 {}\n{body}",
                blake3::hash(body.as_bytes()).to_hex()
            )
        });
        let problems = damage_of(&cache);
        assert!(
            problems[0].starts_with("manifest.toml does not parse: "),
            "{problems:?}"
        );

        // Intact, but another key's: moved or copied in by hand.
        let entry = published(&cache);
        rewrite_manifest(&entry, |t| {
            let (_, body) = t.split_once('\n').expect("two parts");
            let body = body.replace(KEY, &"0".repeat(64));
            format!(
                "# blake3 {}\n{body}",
                blake3::hash(body.as_bytes()).to_hex()
            )
        });
        assert_eq!(
            damage_of(&cache),
            ["manifest.toml belongs to another entry (000000000000)"]
        );

        let entry = published(&cache);
        rewrite_manifest(&entry, |t| t.split_once('\n').expect("lines").1.to_string());
        assert_eq!(damage_of(&cache), ["manifest.toml has no digest line"]);
    }

    #[test]
    fn entries_of_the_previous_format_are_misses_and_get_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let entry = published(&cache);
        // What format 1 wrote: the bare TOML, no digest line.
        rewrite_manifest(&entry, |t| {
            t.split_once('\n')
                .expect("lines")
                .1
                .replace("format = 3", "format = 1")
        });
        assert!(cache.read_entry(KEY).expect("read").is_none());
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
        let fresh = published(&cache);
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Hit(_)));
        assert_eq!(fresh.manifest.format, STORE_FORMAT);
    }

    #[test]
    fn gc_excludes_runs_and_runs_share() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let a = cache.try_lease().expect("lease").expect("free store");
        let b = cache
            .try_lease()
            .expect("lease")
            .expect("runs share the store");
        assert!(cache.try_lease_exclusive().expect("lease").is_none());
        drop(a);
        assert!(cache.try_lease_exclusive().expect("lease").is_none());
        drop(b);
        let gc = cache
            .try_lease_exclusive()
            .expect("lease")
            .expect("no run left");
        assert!(
            cache.try_lease().expect("lease").is_none(),
            "a run waits for gc"
        );
        drop(gc);
        assert!(cache.try_lease().expect("lease").is_some());
    }

    #[test]
    fn stale_tmp_spares_a_key_being_computed() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(root.path()).expect("open");
        let other = "cd".repeat(32);
        let dead = root.path().join("tmp").join(format!("{other}.999999.1"));
        let evicted = root
            .path()
            .join("tmp")
            .join(format!("{other}.evicted.999999.2"));
        fs::create_dir_all(&dead).expect("mkdir");
        fs::create_dir_all(&evicted).expect("mkdir");
        let lock = cache.lock(KEY).expect("lock");
        let staging = cache.stage(KEY, &lock).expect("stage");
        // Another process's view: the key's lock is held by this one, on another descriptor.
        let gc = cache.lease_exclusive().expect("lease");
        let stale = cache.stale_tmp(&gc).expect("stale");
        assert_eq!(stale, vec![dead, evicted]);
        assert!(!stale.iter().any(|p| p == staging.dir()));
    }
}
