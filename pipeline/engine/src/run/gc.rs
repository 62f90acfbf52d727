//! `pipeline gc`: removes cache entries that no kept run refers to, the leftovers of killed
//! computations and verifications, and (when asked) the directories of old runs, and says how
//! much disk space that really frees.
//!
//! It runs under the store's exclusive lease ([`ExclusiveLease`]), which no run can hold at
//! the same time: nothing a run in progress has found or will read is removed, and every
//! temporary directory is known to be a leftover.
//!
//! Space: run directories hold hard links to their large outputs, so removing an entry frees
//! a file's bytes only if no run directory still links to it. The figures count a file when
//! its last link is among those removed (`st_nlink`), and say how much stays linked from
//! older run directories.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::RunError;
use super::store::Store;
use crate::store::cache::{CacheError, ExclusiveLease};
use crate::store::manifest::describe_entry;

/// What to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Keep only what the newest N runs refer to (all runs when `None`).
    pub keep_last: Option<usize>,
    /// Also remove the directories of runs beyond the newest `keep_last`.
    pub prune_runs: bool,
    /// Say what would be removed; remove nothing.
    pub dry_run: bool,
}

/// What a collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Collected {
    /// Keys of removed cache entries.
    pub entries: Vec<String>,
    /// What each removed entry was, in the order of `entries`: `stage train of model1 (key
    /// 3f2a9c1b4e5d, computed in run 20261127-101500.123)`.
    pub described: Vec<String>,
    /// Blobs no kept entry uses any more.
    pub blobs: usize,
    /// Ids of removed run directories.
    pub runs: Vec<String>,
    /// Stale temporary directories, relative to the store root (`cache/tmp/...`, `tmp/...`).
    pub tmp: Vec<String>,
    /// Bytes of the files whose last link is removed: the space really freed.
    pub freed: u64,
    /// Bytes of removed entries' files that stay on disk, linked from elsewhere.
    pub still_linked: u64,
    /// Run directories (kept ones) that hold those links.
    pub linking_runs: usize,
    /// Cache entries kept.
    pub kept: usize,
}

/// Removes what no kept run needs. The lease proves that no run is in progress.
pub fn collect(
    store: &Store,
    opts: &GcOptions,
    lease: &ExclusiveLease,
) -> Result<Collected, RunError> {
    let runs = store.runs.list()?;
    let kept_runs = opts.keep_last.unwrap_or(runs.len()).min(runs.len());
    let referenced: BTreeSet<String> = runs
        .iter()
        .take(kept_runs)
        .flat_map(|r| r.stages.iter().map(|s| s.key.clone()))
        .collect();
    let mut out = Collected::default();

    let mut doomed: Vec<PathBuf> = Vec::new();
    let mut live_blobs: BTreeSet<String> = BTreeSet::new();
    for key in store.cache.keys()? {
        let entry = store.cache.read_entry(&key)?;
        if referenced.contains(&key) {
            out.kept += 1;
            for file in entry.iter().flat_map(|e| &e.manifest.files) {
                live_blobs.extend(file.stored().into_iter().map(|p| p.blob));
            }
            continue;
        }
        doomed.push(store.cache.entry_path(&key));
        out.described
            .push(describe_entry(&key, entry.as_ref().map(|e| &e.manifest)));
        out.entries.push(key);
    }
    let blobs = store.cache.blobs();
    for digest in blobs.digests().map_err(CacheError::from)? {
        if !live_blobs.contains(&digest) {
            doomed.push(blobs.path(&digest));
            out.blobs += 1;
        }
    }
    let entry_paths = doomed.clone();
    if opts.prune_runs {
        for run in runs.iter().skip(kept_runs) {
            doomed.push(store.runs.dir_of(&run.id));
            out.runs.push(run.id.clone());
        }
    }
    for dir in store.cache.stale_tmp(lease)? {
        out.tmp.push(relative(&store.root, &dir));
        doomed.push(dir);
    }
    // `pipeline verify` scratch stores and pruned runs being deleted: every `verify` holds
    // the lease while its scratch exists, so under the exclusive lease all are leftovers.
    let scratch = store.root.join("tmp");
    if let Ok(read) = fs::read_dir(&scratch) {
        let mut leftovers: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
        leftovers.sort();
        for dir in leftovers {
            out.tmp.push(relative(&store.root, &dir));
            doomed.push(dir);
        }
    }

    // A removed entry's file that is a link to a blob a kept entry uses is not "held from
    // elsewhere": the store needs it. Only links outside the store are worth a word.
    let kept_inodes: BTreeSet<Inode> = live_blobs
        .iter()
        .filter_map(|digest| fs::symlink_metadata(blobs.path(digest)).ok())
        .map(|meta| (meta.dev(), meta.ino()))
        .collect();
    let space = space(&doomed, &entry_paths, &kept_inodes);
    out.freed = space.freed;
    out.still_linked = space.still_linked.values().sum();
    if !space.still_linked.is_empty() {
        out.linking_runs = runs
            .iter()
            .filter(|r| !out.runs.contains(&r.id))
            .filter(|r| links_any(&store.runs.dir_of(&r.id), &space.still_linked))
            .count();
    }
    if opts.dry_run {
        return Ok(out);
    }

    for key in &out.entries {
        store.cache.evict(key)?;
        store.cache.remove_lock_file(key, lease);
    }
    for digest in blobs.digests().map_err(CacheError::from)? {
        if !live_blobs.contains(&digest) {
            blobs.remove(&digest).map_err(CacheError::from)?;
        }
    }
    for id in &out.runs {
        // Out of `runs/` in one rename, so that a gc killed while deleting leaves no half
        // run that `pipeline runs` would list; the next gc deletes what is left.
        let dir = store.runs.dir_of(id);
        fs::create_dir_all(&scratch).map_err(|e| io_error(&scratch, e))?;
        let trash = scratch.join(format!("pruned-{id}"));
        fs::rename(&dir, &trash).map_err(|e| io_error(&dir, e))?;
        remove_tree(&trash)?;
    }
    for dir in &out.tmp {
        let path = store.root.join(dir);
        if fs::symlink_metadata(&path).is_ok() {
            remove_tree(&path)?;
        }
    }
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn io_error(path: &Path, source: std::io::Error) -> RunError {
    RunError::Remove {
        path: path.to_path_buf(),
        source,
    }
}

/// Deletes a directory tree that may hold read-only files and directories.
fn remove_tree(path: &Path) -> Result<(), RunError> {
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    // A read-only directory (a user's chmod) keeps its files: make the tree writable, retry.
    make_tree_writable(path);
    fs::remove_dir_all(path).map_err(|e| io_error(path, e))
}

fn make_tree_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(read) = fs::read_dir(path) {
            for item in read.flatten() {
                make_tree_writable(&item.path());
            }
        }
    }
}

/// A file by device and inode: the thing whose last link frees space.
type Inode = (u64, u64);

struct Space {
    freed: u64,
    /// Files of removed entries that other links keep alive, with their sizes.
    still_linked: BTreeMap<Inode, u64>,
}

/// What removing every path in `doomed` frees: a file counts once all its links are among
/// them. `entries` (a subset) are the cache entries, whose surviving links are reported,
/// except those to `kept` files (the blobs of kept entries, which the store still needs).
fn space(doomed: &[PathBuf], entries: &[PathBuf], kept: &BTreeSet<Inode>) -> Space {
    struct Seen {
        links: u64,
        size: u64,
        removed: u64,
        in_entry: bool,
    }
    let mut files: BTreeMap<Inode, Seen> = BTreeMap::new();
    let entry_set: BTreeSet<&PathBuf> = entries.iter().collect();
    for root in doomed {
        let in_entry = entry_set.contains(root);
        walk(root, &mut |meta| {
            let seen = files.entry((meta.dev(), meta.ino())).or_insert(Seen {
                links: meta.nlink(),
                size: meta.len(),
                removed: 0,
                in_entry: false,
            });
            seen.removed += 1;
            seen.in_entry |= in_entry;
        });
    }
    let mut freed = 0;
    let mut still_linked = BTreeMap::new();
    for (inode, seen) in files {
        if seen.removed >= seen.links {
            freed += seen.size;
        } else if seen.in_entry && !kept.contains(&inode) {
            still_linked.insert(inode, seen.size);
        }
    }
    Space {
        freed,
        still_linked,
    }
}

/// Calls `visit` on every non-directory under `path` (or on `path` itself), links not
/// followed.
fn walk(path: &Path, visit: &mut dyn FnMut(&fs::Metadata)) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        visit(&meta);
        return;
    }
    if let Ok(read) = fs::read_dir(path) {
        for item in read.flatten() {
            walk(&item.path(), visit);
        }
    }
}

fn links_any(dir: &Path, inodes: &BTreeMap<Inode, u64>) -> bool {
    let mut found = false;
    walk(dir, &mut |meta| {
        found |= inodes.contains_key(&(meta.dev(), meta.ino()));
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_counts_a_file_once_its_last_link_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = dir.path().join("entry");
        let run = dir.path().join("run");
        fs::create_dir_all(&entry).expect("mkdir");
        fs::create_dir_all(&run).expect("mkdir");
        fs::write(entry.join("big.bin"), vec![7u8; 5000]).expect("write");
        fs::write(entry.join("manifest.toml"), vec![b'#'; 300]).expect("write");
        fs::hard_link(entry.join("big.bin"), run.join("big.bin")).expect("link");
        fs::write(run.join("run.toml"), vec![b'x'; 40]).expect("write");

        let none = BTreeSet::new();
        let only_entry = space(
            std::slice::from_ref(&entry),
            std::slice::from_ref(&entry),
            &none,
        );
        assert_eq!(only_entry.freed, 300, "the linked file stays");
        assert_eq!(
            only_entry
                .still_linked
                .values()
                .copied()
                .collect::<Vec<_>>(),
            [5000]
        );
        let meta = fs::metadata(run.join("big.bin")).expect("meta");
        assert!(links_any(&run, &only_entry.still_linked));
        assert_eq!(meta.nlink(), 2);

        let both = space(
            &[entry.clone(), run.clone()],
            std::slice::from_ref(&entry),
            &none,
        );
        assert_eq!(both.freed, 5000 + 300 + 40);
        assert!(both.still_linked.is_empty());

        // The same file also the blob of a kept entry: not freed, and not reported as held
        // from outside the store either (every run-directory file is such a link now).
        let blob = dir.path().join("blob");
        fs::hard_link(entry.join("big.bin"), &blob).expect("link");
        let meta = fs::metadata(&blob).expect("meta");
        let kept = BTreeSet::from([(meta.dev(), meta.ino())]);
        let shared = space(
            std::slice::from_ref(&entry),
            std::slice::from_ref(&entry),
            &kept,
        );
        assert_eq!(shared.freed, 300);
        assert!(shared.still_linked.is_empty(), "{:?}", shared.still_linked);
    }
}
