//! File-system helpers the store's modules share: unique names for temporary files, durable
//! writes, and making read-only entries writable again so that they can be removed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub(crate) fn make_writable_file(path: &Path) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_file() {
            let mut perms = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = fs::set_permissions(path, perms);
        }
    }
}

/// Makes a removed entry's files, and the directory itself, writable again so that it can be
/// deleted everywhere (links are left alone: their target is not ours).
pub(crate) fn make_writable(dir: &Path) {
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
