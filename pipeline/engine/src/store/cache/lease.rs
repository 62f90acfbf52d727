//! Locks and leases on the cache, each an OS file lock the system releases when its process
//! ends, however it ends: a key's lock, held while the key is computed, and the store's lease,
//! held shared by every run and exclusively by gc.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{io_err, Cache, CacheError};
use crate::store::manifest::is_key;

/// The file every run holds shared and gc exclusive, under `locks/`.
const LEASE_FILE: &str = "store.lease";

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

impl Cache {
    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
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
}

fn open_lock_file(path: &Path) -> Result<File, CacheError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}
