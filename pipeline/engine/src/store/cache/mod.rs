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
//! trained on a frozen base) is stored as parts of blobs instead ([`super::cas`]): the entry
//! then has no file of that name, and [`Cache::assemble`] writes it whole, checked against
//! its digest, where a run needs it.
//!
//! This module finds, checks and removes entries; `publish.rs` makes them (staging, blobs,
//! parts, the rename into place) and `lease.rs` holds the locks and leases, each an `impl`
//! block of [`Cache`] beside the types it hands out.

mod lease;
mod publish;
#[cfg(test)]
mod tests;

pub use lease::{ExclusiveLease, KeyLock, Lease};
pub use publish::{Base, Staging};

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cas::{self, Blobs};
use super::files::{make_writable, nanos};
use super::manifest::{is_key, parse_manifest, FileRecord, Manifest, ManifestState, MANIFEST};
use crate::hash::{describe_type, FileProblem};

/// A manifest is a few kilobytes; anything far larger is not one, and is not read whole.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

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

pub struct Cache {
    root: PathBuf,
    blobs: Blobs,
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

/// Problems with an entry's files, each naming its file: missing, not a regular file, another
/// size, or other bytes than recorded. Type and size are checked before anything is read, and
/// a file is read only when it may have changed since it was last found intact (see
/// [`crate::store::checked`]). A file stored as parts is checked through its blobs, each
/// against its own name.
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

fn set_read_only(path: &Path) -> Result<(), CacheError> {
    let mut perms = fs::metadata(path).map_err(io_err(path))?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(io_err(path))
}
