//! Files already checked against their digest, remembered by their identity on disk, so that
//! a cache hit re-reads a file only when it may have changed since it was last read.
//!
//! A file's identity is its device, inode, size, and modification and change times. Any
//! write to a file, an edit in place through a published hard link included, sets its change
//! time, which no user tool can set back; replacing it gives another inode. So an unchanged
//! identity means unchanged bytes, and a file that hashed to its digest with that identity
//! still holds them. git's index and DVC's state database rest on the same rule.
//!
//! One hazard remains, git's "racy clean" case: a write in the same clock tick as the time
//! recorded leaves the times as they were. So a file is only remembered when its last change
//! is [`SETTLED`] older than the file system's present, read from a file written there (not
//! from this machine's clock, which a network file system need not share). A file changed
//! more recently is hashed every time until it has settled.
//!
//! Two questions are answered this way: whether a stored file still holds its digest (the
//! record is `<cache>/checked/<2 hex>/<digest>`), and what digest a data file outside the
//! store has (`<cache>/checked/paths/<2 hex>/<digest of its path>`, holding the identity and
//! the file's digest). Each record is one small text file, written atomically. Losing one
//! costs a re-read; a damaged one is ignored.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::hash::{hash_file, hash_regular_file, FileDigest, FileProblem};

/// How long a file must have gone unchanged before its identity is trusted: far above any
/// file system's timestamp granularity (a jiffy on Linux, 2 s on FAT).
pub const SETTLED: Duration = Duration::from_secs(3);

/// Why a file does not hold what it should.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error("{0}")]
    Problem(FileProblem),
    #[error("does not match its digest")]
    OtherBytes,
}

/// The identity of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Identity {
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(meta: &fs::Metadata) -> Identity {
        // No change time or inode to rely on: an identity that never matches a record, so
        // every check hashes.
        let _ = meta;
        Identity {
            device: u64::MAX,
            inode: u64::MAX,
            size: u64::MAX,
            modified: (i64::MAX, 0),
            changed: (i64::MAX, 0),
        }
    }

    fn render(&self) -> String {
        format!(
            "1 {} {} {} {} {} {} {}\n",
            self.device,
            self.inode,
            self.size,
            self.modified.0,
            self.modified.1,
            self.changed.0,
            self.changed.1
        )
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut fields = text.split_ascii_whitespace();
        if fields.next()? != "1" {
            return None;
        }
        let mut next = || fields.next()?.parse::<i128>().ok();
        let (device, inode, size) = (next()?, next()?, next()?);
        let modified = (next()?, next()?);
        let changed = (next()?, next()?);
        Some(Identity {
            device: u64::try_from(device).ok()?,
            inode: u64::try_from(inode).ok()?,
            size: u64::try_from(size).ok()?,
            modified: (
                i64::try_from(modified.0).ok()?,
                i64::try_from(modified.1).ok()?,
            ),
            changed: (
                i64::try_from(changed.0).ok()?,
                i64::try_from(changed.1).ok()?,
            ),
        })
    }

    /// The later of the two times, as nanoseconds since the epoch.
    fn last_touched_ns(&self) -> i128 {
        let ns = |(s, n): (i64, i64)| s as i128 * 1_000_000_000 + n as i128;
        ns(self.modified).max(ns(self.changed))
    }
}

/// The remembered identities under one directory.
#[derive(Debug, Clone)]
pub struct CheckedFiles {
    dir: PathBuf,
    settled: Duration,
}

impl CheckedFiles {
    pub fn open(dir: &Path) -> CheckedFiles {
        CheckedFiles::with_settling(dir, SETTLED)
    }

    /// With another settling time: for tests, which cannot wait seconds for files to settle.
    pub fn with_settling(dir: &Path, settled: Duration) -> CheckedFiles {
        CheckedFiles {
            dir: dir.to_path_buf(),
            settled,
        }
    }

    fn record_path(&self, digest: &str) -> PathBuf {
        self.dir.join(&digest[..2.min(digest.len())]).join(digest)
    }

    /// Checks that `path` is a regular file (of `expected_len` bytes, when given) whose bytes
    /// hash to `digest`, and returns its length. The bytes are read only when the file's
    /// identity is not the one recorded the last time they hashed to `digest`.
    pub fn check(
        &self,
        path: &Path,
        expected_len: Option<u64>,
        digest: &str,
    ) -> Result<u64, CheckFailure> {
        let before = fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.file_type().is_file())
            .map(|m| Identity::of(&m));
        if let Some(id) = before {
            if expected_len.is_none_or(|len| len == id.size) && self.knows(digest, &id) {
                return Ok(id.size);
            }
        }
        let hashed = hash_regular_file(path, expected_len).map_err(CheckFailure::Problem)?;
        if hashed.to_hex().as_str() != digest {
            return Err(CheckFailure::OtherBytes);
        }
        let after = fs::symlink_metadata(path).ok().map(|m| Identity::of(&m));
        let len = after.map_or(0, |a| a.size);
        if let (Some(before), Some(after)) = (before, after) {
            // Changed while being read: what was read proves nothing about the file now.
            if before == after {
                self.remember(digest, &before);
            }
        }
        Ok(len)
    }

    /// The digest of the data file at `path` (links followed, as the stage reading it
    /// follows them): the one recorded for it while its identity is unchanged, else its
    /// bytes hashed (and recorded).
    pub fn digest_of(&self, path: &Path) -> io::Result<blake3::Hash> {
        let record = self.path_record(path);
        let before = Identity::of(&fs::metadata(path)?);
        let known = fs::read_to_string(&record).ok().and_then(|text| {
            let (id, digest) = text.trim_end().rsplit_once(' ')?;
            let id = Identity::parse(id)?;
            (id == before).then(|| blake3::Hash::from_hex(digest).ok())?
        });
        if let Some(digest) = known {
            return Ok(digest);
        }
        let digest = hash_file(path)?;
        if fs::metadata(path).is_ok_and(|m| Identity::of(&m) == before) {
            let line = format!("{} {}\n", before.render().trim_end(), digest.to_hex());
            self.write_record(&record, &before, &line);
        }
        Ok(digest)
    }

    fn path_record(&self, path: &Path) -> PathBuf {
        let name = blake3::hash(path.as_os_str().as_encoded_bytes())
            .to_hex()
            .to_string();
        self.dir.join("paths").join(&name[..2]).join(name)
    }

    fn knows(&self, digest: &str, id: &Identity) -> bool {
        fs::read_to_string(self.record_path(digest))
            .ok()
            .and_then(|text| Identity::parse(&text))
            .is_some_and(|known| known == *id)
    }

    /// Best effort: a store that cannot be written still works, only hashing more.
    fn remember(&self, digest: &str, id: &Identity) {
        self.write_record(&self.record_path(digest), id, &id.render());
    }

    /// Writes `text` as the record at `record` when `id` has settled.
    fn write_record(&self, record: &Path, id: &Identity, text: &str) {
        let Some(shard) = record.parent() else {
            return;
        };
        if fs::create_dir_all(shard).is_err() {
            return;
        }
        let tmp = shard.join(format!(
            ".record.{}.{}",
            std::process::id(),
            crate::store::files::nanos()
        ));
        let written = fs::write(&tmp, text).and_then(|()| fs::metadata(&tmp));
        let settled = written
            .as_ref()
            .is_ok_and(|meta| self.has_settled(id, meta));
        if !(settled && fs::rename(&tmp, record).is_ok()) {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Whether `id`'s last change is at least the settling time older than `now`, a file
    /// just written on the same file system.
    fn has_settled(&self, id: &Identity, now: &fs::Metadata) -> bool {
        let Ok(now) = now.modified() else {
            return false;
        };
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        now.as_nanos() as i128 - id.last_touched_ns() >= self.settled.as_nanos() as i128
    }

    /// Forgets `digest` (its blob is being removed).
    pub fn forget(&self, digest: &str) {
        // Best effort, as remembering is: a record left behind names a blob that is gone, and
        // matches nothing.
        let _ = fs::remove_file(self.record_path(digest));
    }
}

/// Hashes many files in parallel. `names` are what the digest records (paths relative to the
/// data root), `paths` where to read them. The result is in the order given. With `checked`,
/// a file unchanged since it was last hashed is not read again.
pub fn hash_files(
    files: &[(String, PathBuf)],
    checked: Option<&CheckedFiles>,
) -> Result<Vec<FileDigest>, (PathBuf, io::Error)> {
    files
        .par_iter()
        .map(|(name, path)| {
            let size = std::fs::metadata(path)
                .map_err(|e| (path.clone(), e))?
                .len();
            let digest = match checked {
                Some(checked) => checked.digest_of(path),
                None => hash_file(path),
            }
            .map_err(|e| (path.clone(), e))?;
            Ok(FileDigest {
                name: name.clone(),
                digest,
                size,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn digest_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// A file written now: only a zero settling time lets it be remembered at once.
    fn file(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("data.bin");
        fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_remembered_file_is_not_read_again_and_any_write_makes_it_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let checked = CheckedFiles::with_settling(&dir.path().join("checked"), Duration::ZERO);
        let bytes = b"some weights".to_vec();
        let digest = digest_of(&bytes);
        let path = file(dir.path(), &bytes);
        assert_eq!(checked.check(&path, Some(12), &digest).expect("intact"), 12);
        assert!(checked.record_path(&digest).is_file(), "remembered");

        // The record is what makes a check cheap: pointing it at this file's identity makes
        // a check of other bytes pass (the file is not read), which proves the shortcut.
        let other = digest_of(b"other bytes!");
        fs::copy(checked.record_path(&digest), {
            let p = checked.record_path(&other);
            fs::create_dir_all(p.parent().expect("shard")).expect("shard");
            p
        })
        .expect("copy record");
        assert!(checked.check(&path, Some(12), &other).is_ok());

        // An edit in place of the same length changes the identity (its change time): read
        // again, and found out.
        // Past any timestamp granularity, as every real edit after a file settled is.
        std::thread::sleep(Duration::from_millis(50));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.write_all(b"S").expect("write");
        drop(f);
        assert!(matches!(
            checked.check(&path, Some(12), &digest),
            Err(CheckFailure::OtherBytes)
        ));
        assert!(matches!(
            checked.check(&path, Some(12), &other),
            Err(CheckFailure::OtherBytes)
        ));
    }

    #[test]
    fn a_recently_changed_file_is_not_remembered() {
        let dir = tempfile::tempdir().expect("tmp");
        let checked = CheckedFiles::open(&dir.path().join("checked"));
        let bytes = b"fresh".to_vec();
        let digest = digest_of(&bytes);
        let path = file(dir.path(), &bytes);
        assert!(checked.check(&path, None, &digest).is_ok());
        assert!(
            !checked.record_path(&digest).exists(),
            "changed less than {SETTLED:?} ago: hashed every time until it settles"
        );
    }

    #[test]
    fn problems_are_reported_and_damaged_records_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let checked = CheckedFiles::with_settling(&dir.path().join("checked"), Duration::ZERO);
        let bytes = b"abc".to_vec();
        let digest = digest_of(&bytes);
        let path = file(dir.path(), &bytes);
        assert!(matches!(
            checked.check(&dir.path().join("absent"), None, &digest),
            Err(CheckFailure::Problem(FileProblem::Missing))
        ));
        assert!(matches!(
            checked.check(&path, Some(4), &digest),
            Err(CheckFailure::Problem(FileProblem::WrongSize { .. }))
        ));
        let record = checked.record_path(&digest);
        fs::create_dir_all(record.parent().expect("shard")).expect("shard");
        fs::write(&record, "1 not numbers").expect("write");
        assert!(checked.check(&path, Some(3), &digest).is_ok());
        assert!(
            Identity::parse(&fs::read_to_string(&record).expect("read")).is_some(),
            "rewritten"
        );
        checked.forget(&digest);
        assert!(!record.exists());
    }

    #[test]
    fn a_data_files_digest_is_remembered_until_it_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let checked = CheckedFiles::with_settling(&dir.path().join("checked"), Duration::ZERO);
        let path = file(dir.path(), b"an x-ray");
        let first = checked.digest_of(&path).expect("digest");
        assert_eq!(first, blake3::hash(b"an x-ray"));
        let record = checked.path_record(&path);
        assert!(record.is_file(), "remembered");

        // A forged record for this identity is believed, which proves the file is not read.
        let text = fs::read_to_string(&record).expect("record");
        let forged = text.replace(&first.to_hex().to_string(), &blake3::hash(b"x").to_hex());
        fs::write(&record, forged).expect("forge");
        assert_eq!(
            checked.digest_of(&path).expect("digest"),
            blake3::hash(b"x")
        );

        // Any write changes the identity: hashed again.
        std::thread::sleep(Duration::from_millis(50));
        fs::write(&path, b"an X-ray").expect("edit");
        assert_eq!(
            checked.digest_of(&path).expect("digest"),
            blake3::hash(b"an X-ray")
        );
        assert!(checked.digest_of(&dir.path().join("absent")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_the_files_place_is_not_taken_for_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let checked = CheckedFiles::with_settling(&dir.path().join("checked"), Duration::ZERO);
        let bytes = b"abc".to_vec();
        let digest = digest_of(&bytes);
        let path = file(dir.path(), &bytes);
        assert!(checked.check(&path, Some(3), &digest).is_ok());
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(matches!(
            checked.check(&link, Some(3), &digest),
            Err(CheckFailure::Problem(FileProblem::NotRegular(_)))
        ));
    }
}
