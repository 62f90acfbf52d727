//! Keeping the load stage's reads inside the data root: every file and folder it opens must
//! resolve, symbolic links followed, to a path under the data root's own resolved path, unless
//! the experiment allows links out of it (`allow_outside_data_root = true`).
//!
//! Paths in experiment files and CSVs are already relative and free of `..`
//! (`sources::relative`); links are the remaining way out. The check runs before a
//! path is opened, so a link to `/etc/passwd` is refused without being read.

use std::path::{Path, PathBuf};

use super::LoadError;

/// The data root, and whether paths under it must resolve inside it.
pub(super) struct Confinement {
    /// The data root as given (messages name paths as the user wrote them).
    given: PathBuf,
    /// The data root resolved, when paths must stay inside it and it exists (when it does not,
    /// nothing under it does, and the existence checks report that).
    resolved: Option<PathBuf>,
}

impl Confinement {
    pub(super) fn new(data_root: &Path, allow_outside: bool) -> Confinement {
        Confinement {
            given: data_root.to_path_buf(),
            resolved: if allow_outside {
                None
            } else {
                data_root.canonicalize().ok()
            },
        }
    }

    /// Checks `path` (the data root joined with a relative path) before it is opened. A path
    /// that does not resolve (missing, or a dangling link) passes: the caller reports it as
    /// missing, and nothing is read from it.
    pub(super) fn check(&self, path: &Path) -> Result<(), LoadError> {
        let Some(root) = &self.resolved else {
            return Ok(());
        };
        let Ok(target) = path.canonicalize() else {
            return Ok(());
        };
        if target.starts_with(root) {
            return Ok(());
        }
        let link = self.escaping_link(path, root);
        let link_target = link.canonicalize().unwrap_or_else(|_| target.clone());
        Err(LoadError::OutsideDataRoot {
            path: path.to_path_buf(),
            link,
            target: link_target,
            root: self.given.clone(),
        })
    }

    /// The symbolic link at fault: the first ancestor of `path` below the data root (or
    /// `path` itself) that resolves outside it.
    fn escaping_link(&self, path: &Path, root: &Path) -> PathBuf {
        if let Ok(rel) = path.strip_prefix(&self.given) {
            let mut prefix = self.given.clone();
            for part in rel.components() {
                prefix.push(part);
                if prefix.canonicalize().is_ok_and(|r| !r.starts_with(root)) {
                    return prefix;
                }
            }
        }
        path.to_path_buf()
    }
}
