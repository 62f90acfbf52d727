//! The artifacts directory a run works in: the cache and the runs, opened together, and the
//! remote cache behind them when there is one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::RunError;
use crate::runs::record::RunStore;
use crate::store::cache::Cache;
use crate::store::remote::Remote;

/// An artifacts directory: the cache and the runs.
pub struct Store {
    pub root: PathBuf,
    pub cache: Cache,
    pub runs: RunStore,
    /// A shared cache on an object store: read on a local miss, written after a computation.
    pub remote: Option<Arc<Remote>>,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, RunError> {
        Ok(Store {
            root: root.to_path_buf(),
            cache: Cache::open(&root.join("cache"))?,
            runs: RunStore::open(&root.join("runs"))?,
            remote: None,
        })
    }

    /// The store, with a shared remote cache behind it.
    pub fn with_remote(mut self, remote: Option<Remote>) -> Store {
        self.remote = remote.map(Arc::new);
        self
    }
}
