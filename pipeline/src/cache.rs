//! The content-addressed store of stage results. It fetches, checks and publishes entries by
//! key; it never computes a key.
//!
//! Layout under the cache root (default `artifacts/cache/`):
//!
//! ```text
//! entries/<first two hex digits>/<key>/manifest.toml   what the entry holds, with digests
//! entries/<first two hex digits>/<key>/<output files>  read-only
//! tmp/<key>.<pid>.<nanos>/                             a stage at work; never read
//! locks/<key>.lock                                     held while a key is computed
//! ```
//!
//! A stage writes into a directory under `tmp/`; only when it has succeeded and every output
//! is hashed is that directory renamed into `entries/`. A rename within one file system is
//! atomic, so an entry either exists whole, with its manifest, or not at all: a stage that
//! fails or is killed leaves at most a `tmp/` directory, which nothing reads and which the
//! next computation of the same key removes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hash::hash_file;

/// Version of the entry layout and manifest; entries of another version are not read.
pub const STORE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cache entry {path}: unreadable manifest: {message}")]
    Manifest { path: PathBuf, message: String },
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
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// A published, verified entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Entry {
    pub fn path_of(&self, record: &FileRecord) -> PathBuf {
        self.dir.join(&record.file)
    }
}

/// The outcome of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Entry>),
    Miss,
    /// The entry exists but its files no longer match the manifest; it has been removed.
    Damaged {
        files: Vec<String>,
    },
}

pub struct Cache {
    root: PathBuf,
}

/// Holds the lock on one key until dropped.
pub struct KeyLock {
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
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for sub in ["entries", "tmp", "locks"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(&key[..2]).join(key)
    }

    /// Looks a key up and checks every file against its digest; a damaged entry is removed
    /// so that it is recomputed rather than used.
    pub fn lookup(&self, key: &str) -> Result<Lookup, CacheError> {
        let Some(entry) = self.read_entry(key)? else {
            return Ok(Lookup::Miss);
        };
        let bad = verify(&entry);
        if bad.is_empty() {
            Ok(Lookup::Hit(Box::new(entry)))
        } else {
            self.evict(key)?;
            Ok(Lookup::Damaged { files: bad })
        }
    }

    /// Reads an entry's manifest without checking its files.
    pub fn read_entry(&self, key: &str) -> Result<Option<Entry>, CacheError> {
        let dir = self.entry_dir(key);
        let manifest_path = dir.join("manifest.toml");
        let text = match fs::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let manifest: Manifest = toml::from_str(&text).map_err(|e| CacheError::Manifest {
            path: manifest_path.clone(),
            message: e.message().to_string(),
        })?;
        if manifest.format != STORE_FORMAT || manifest.key != key {
            return Ok(None);
        }
        Ok(Some(Entry { dir, manifest }))
    }

    /// Blocks until this process holds the key's lock. Another process computing the same
    /// key holds it until it has published (or failed); the OS releases it if that process
    /// dies, so a killed run never blocks later ones.
    pub fn lock(&self, key: &str) -> Result<KeyLock, CacheError> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(KeyLock { _file: file })
    }

    /// Whether another process holds the key's lock right now.
    pub fn is_locked(&self, key: &str) -> bool {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let Ok(file) = File::options().write(true).open(path) else {
            return false;
        };
        file.try_lock().is_err()
    }

    /// A fresh directory for computing `key`. Call with the key's lock held: leftovers of
    /// earlier, interrupted computations of the same key are removed here.
    pub fn stage(&self, key: &str, _lock: &KeyLock) -> Result<Staging, CacheError> {
        let tmp = self.root.join("tmp");
        if let Ok(dir) = fs::read_dir(&tmp) {
            for leftover in dir.flatten() {
                if leftover.file_name().to_string_lossy().starts_with(key) {
                    let _ = fs::remove_dir_all(leftover.path());
                }
            }
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = tmp.join(format!("{key}.{}.{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Staging {
            dir,
            key: key.to_string(),
        })
    }

    /// Hashes the staged outputs, writes the manifest and moves the directory into place.
    /// `manifest.files` lists the outputs by name and file; sizes and digests are filled in.
    pub fn publish(
        &self,
        staging: Staging,
        mut manifest: Manifest,
        _lock: &KeyLock,
    ) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        let records: Result<Vec<FileRecord>, CacheError> = manifest
            .files
            .par_iter()
            .map(|f| {
                let path = dir.join(&f.file);
                let file = File::open(&path).map_err(io_err(&path))?;
                // Durable before the rename makes it visible.
                file.sync_all().map_err(io_err(&path))?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                let digest = hash_file(&path).map_err(io_err(&path))?;
                set_read_only(&path)?;
                Ok(FileRecord {
                    size,
                    blake3: digest.to_hex().to_string(),
                    ..f.clone()
                })
            })
            .collect();
        manifest.files = records?;
        manifest.key = staging.key.clone();
        manifest.format = STORE_FORMAT;
        let text = toml::to_string(&manifest).map_err(|e| CacheError::Manifest {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let manifest_path = dir.join("manifest.toml");
        fs::write(&manifest_path, text).map_err(io_err(&manifest_path))?;

        let target = self.entry_dir(&staging.key);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if target.exists() {
            // Only with --no-cache: the fresh result replaces the old one.
            self.evict(&staging.key)?;
        }
        fs::rename(&dir, &target).map_err(io_err(&target))?;
        Ok(Entry {
            dir: target,
            manifest,
        })
    }

    /// Removes an entry. The directory is first renamed out of `entries/`, so a reader sees
    /// the entry whole or not at all.
    pub fn evict(&self, key: &str) -> Result<(), CacheError> {
        let dir = self.entry_dir(key);
        let trash = self
            .root
            .join("tmp")
            .join(format!("{key}.evicted.{}", std::process::id()));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        }
        make_writable(&trash);
        fs::remove_dir_all(&trash).map_err(io_err(&trash))
    }

    /// Every published key.
    pub fn keys(&self) -> Result<Vec<String>, CacheError> {
        let entries = self.root.join("entries");
        let mut keys = Vec::new();
        for shard in fs::read_dir(&entries).map_err(io_err(&entries))?.flatten() {
            for entry in fs::read_dir(shard.path())
                .map_err(io_err(&shard.path()))?
                .flatten()
            {
                keys.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Names of the entry's files that are missing or differ from their recorded digest.
pub fn verify(entry: &Entry) -> Vec<String> {
    let mut bad: Vec<String> = entry
        .manifest
        .files
        .par_iter()
        .filter(|f| {
            let path = entry.path_of(f);
            match hash_file(&path) {
                Ok(d) => d.to_hex().as_str() != f.blake3,
                Err(_) => true,
            }
        })
        .map(|f| f.file.clone())
        .collect();
    bad.sort();
    bad
}

fn set_read_only(path: &Path) -> Result<(), CacheError> {
    let mut perms = fs::metadata(path).map_err(io_err(path))?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(io_err(path))
}

/// Makes a removed entry's files writable again so the directory can be deleted everywhere.
fn make_writable(dir: &Path) {
    let Ok(read) = fs::read_dir(dir) else { return };
    for file in read.flatten() {
        if let Ok(meta) = file.metadata() {
            let mut perms = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = fs::set_permissions(file.path(), perms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[(&str, &str)]) -> Manifest {
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
                })
                .collect(),
            params: toml::Table::new(),
            inputs: BTreeMap::new(),
            external: BTreeMap::new(),
            notes: toml::Table::new(),
            metrics: BTreeMap::new(),
        }
    }

    const KEY: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

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
            Lookup::Damaged { files } => assert_eq!(files, vec!["out.txt".to_string()]),
            other => panic!("expected damage, got {other:?}"),
        }
        assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    }
}
