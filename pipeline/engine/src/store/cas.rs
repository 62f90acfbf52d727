//! Content-addressed blobs: every distinct file content the store holds, once, under its
//! blake3 digest (`cas/<first two hex digits>/<digest>`, read-only).
//!
//! Entries hold hard links to their blobs, so two stages that write the same bytes (the train
//! stage passing the features on) store them once. A file that is mostly the bytes of another
//! (a head trained on a frozen base: the checkpoint differs from its input in the head alone)
//! is stored as [`Part`]s: ranges of blobs, concatenated. A blob only ever appears whole under
//! its name: it is linked into place from a complete, hashed file, and a blob that exists is
//! checked against its name before anything is linked to it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::FileProblem;
use crate::store::checked::{CheckFailure, CheckedFiles};

/// A range of a blob; a stored file is its parts in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub blob: String,
    pub offset: u64,
    pub len: u64,
}

/// Files below this size are always stored whole: a delta would save too little to matter.
pub const DELTA_MIN: u64 = 1024 * 1024;

/// The blobs under one root.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    /// Same file system as `root`: where replacements are prepared.
    tmp: PathBuf,
    /// Blobs already read and found intact (beside `root`, in `checked/`).
    checked: CheckedFiles,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {digest} {problem}")]
    Damaged { digest: String, problem: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Blobs {
    pub fn open(root: &Path, tmp: &Path) -> io::Result<Blobs> {
        fs::create_dir_all(root)?;
        Ok(Blobs {
            root: root.to_path_buf(),
            tmp: tmp.to_path_buf(),
            checked: CheckedFiles::open(&root.with_file_name("checked")),
        })
    }

    /// Where the blob of `digest` lives (whether or not it exists). `digest` must be a
    /// digest ([`is_digest`]): names come from manifests, which are checked first.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root.join(&digest[..2.min(digest.len())]).join(digest)
    }

    /// Whether the blob exists as a regular file of at least `min_len` bytes whose bytes
    /// hash to its name.
    pub fn check(&self, digest: &str, min_len: u64) -> Result<u64, String> {
        match self.checked.check(&self.path(digest), None, digest) {
            Ok(len) if len < min_len => {
                Err(format!("has {len} bytes, fewer than the {min_len} used"))
            }
            Ok(len) => Ok(len),
            Err(CheckFailure::Problem(FileProblem::Missing)) => Err("is missing".into()),
            Err(failure) => Err(failure.to_string()),
        }
    }

    /// The stored file whose bytes hash to `digest`, `size` bytes long, checked before it is
    /// handed out (read again only if it may have changed since last found intact): for a
    /// caller that recorded a digest and wants those bytes back. `Err` says why not, as a
    /// phrase ("is not in the store", "has 3 bytes, not 5", ...).
    pub fn stored(&self, digest: &str, size: u64) -> Result<PathBuf, String> {
        if !is_digest(digest) {
            return Err(format!("`{digest}` is not a blake3 digest"));
        }
        match self.checked.check(&self.path(digest), Some(size), digest) {
            Ok(_) => Ok(self.path(digest)),
            Err(CheckFailure::Problem(FileProblem::Missing)) => Err("is not in the store".into()),
            Err(failure) => Err(failure.to_string()),
        }
    }

    /// What is known about files already read: also used for data files outside the store.
    pub fn checked(&self) -> &CheckedFiles {
        &self.checked
    }

    /// Checks a file of an entry (one inode with its blob) against its size and digest,
    /// reading it only when it may have changed since it was last found intact.
    pub fn check_file(&self, path: &Path, size: u64, digest: &str) -> Result<(), CheckFailure> {
        self.checked.check(path, Some(size), digest).map(|_| ())
    }

    /// Stores `file` (complete, read-only, hashed to `digest`) as the blob of its digest, or
    /// where an intact blob exists already, makes `file` a link to it. A blob found damaged is
    /// replaced. Either way `file` and the blob are one inode afterwards.
    pub fn adopt(&self, file: &Path, digest: &str) -> Result<(), BlobError> {
        let blob = self.path(digest);
        if let Some(shard) = blob.parent() {
            fs::create_dir_all(shard).map_err(io_err(shard))?;
        }
        for _ in 0..3 {
            match fs::hard_link(file, &blob) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&blob)(e)),
            }
            if same_file(file, &blob) {
                return Ok(());
            }
            if self.check(digest, 0).is_ok() {
                // Identical bytes already stored: keep those, drop this copy.
                let link = sibling(file, "link");
                let _ = fs::remove_file(&link);
                match fs::hard_link(&blob, &link) {
                    Ok(()) => return fs::rename(&link, file).map_err(io_err(file)),
                    // Removed by a concurrent replacement: try again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&link)(e)),
                }
            }
            // Damaged (an edit in place through a published link): replace it atomically.
            let fresh = self.tmp.join(format!(
                "blob.{}.{}",
                std::process::id(),
                crate::store::files::nanos()
            ));
            fs::hard_link(file, &fresh).map_err(io_err(&fresh))?;
            fs::rename(&fresh, &blob).map_err(io_err(&blob))?;
            return Ok(());
        }
        Err(io_err(&blob)(io::Error::other("the blob keeps changing")))
    }

    /// Makes the verified file `path` the blob of `digest` where there is no intact one.
    pub fn ensure(&self, path: &Path, digest: &str) -> Result<(), BlobError> {
        if self.check(digest, 0).is_ok() {
            return Ok(());
        }
        self.adopt_copy(path, digest)
    }

    /// Like [`Blobs::adopt`], for a file that must stay as it is (an entry's link): the blob
    /// becomes another link to it.
    fn adopt_copy(&self, path: &Path, digest: &str) -> Result<(), BlobError> {
        let blob = self.path(digest);
        if let Some(shard) = blob.parent() {
            fs::create_dir_all(shard).map_err(io_err(shard))?;
        }
        let fresh = self.tmp.join(format!(
            "blob.{}.{}",
            std::process::id(),
            crate::store::files::nanos()
        ));
        fs::hard_link(path, &fresh).map_err(io_err(&fresh))?;
        fs::rename(&fresh, &blob).map_err(io_err(&blob))
    }

    /// Every blob's digest. Anything else under the root is no blob and is left alone.
    pub fn digests(&self) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.root)
            .map_err(io_err(&self.root))?
            .flatten()
        {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if shard_name.len() != 2 || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for item in fs::read_dir(shard.path())
                .map_err(io_err(&shard.path()))?
                .flatten()
            {
                let name = item.file_name().to_string_lossy().into_owned();
                if is_digest(&name)
                    && name.starts_with(&shard_name)
                    && item.file_type().is_ok_and(|t| t.is_file())
                {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn remove(&self, digest: &str) -> Result<(), BlobError> {
        self.checked.forget(digest);
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes the file made of `parts` to `dest` (created, read-only), checking that it has
    /// `size` bytes hashing to `digest`: a part that does not hold what the manifest says is
    /// caught here, not by whoever reads the file.
    pub fn assemble(
        &self,
        parts: &[Part],
        size: u64,
        digest: &str,
        dest: &Path,
    ) -> Result<(), BlobError> {
        let mut out = File::create(dest).map_err(io_err(dest))?;
        let read = self.read_parts(parts, size, digest, |bytes| {
            out.write_all(bytes).map_err(io_err(dest))
        });
        if let Err(e) = read {
            drop(out);
            let _ = fs::remove_file(dest);
            return Err(e);
        }
        out.sync_all().map_err(io_err(dest))?;
        drop(out);
        let mut perms = fs::metadata(dest).map_err(io_err(dest))?.permissions();
        perms.set_readonly(true);
        fs::set_permissions(dest, perms).map_err(io_err(dest))
    }

    /// Checks that `parts` give `size` bytes hashing to `digest`, writing nothing.
    pub fn check_parts(&self, parts: &[Part], size: u64, digest: &str) -> Result<(), BlobError> {
        self.read_parts(parts, size, digest, |_| Ok(()))
    }

    /// Reads the bytes of `parts` in order into `sink`, and checks that they are `size` bytes
    /// hashing to `digest`.
    fn read_parts(
        &self,
        parts: &[Part],
        size: u64,
        digest: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        let damaged = |problem: String| BlobError::Damaged {
            digest: digest.to_string(),
            problem,
        };
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        for part in parts {
            if !is_digest(&part.blob) {
                return Err(damaged(format!("names a part `{}`", part.blob)));
            }
            let path = self.path(&part.blob);
            let mut file = open_regular(&path)
                .map_err(|e| damaged(format!("needs blob {} which {e}", short(&part.blob))))?;
            file.seek(SeekFrom::Start(part.offset))
                .map_err(io_err(&path))?;
            let mut reader = file.take(part.len);
            let mut copied = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(&path)(e)),
                };
                hasher.update(&buf[..n]);
                sink(&buf[..n])?;
                copied += n as u64;
            }
            if copied != part.len {
                return Err(damaged(format!(
                    "needs {} bytes of blob {} at {}, which has fewer",
                    part.len,
                    short(&part.blob),
                    part.offset
                )));
            }
            total += copied;
        }
        if total != size || hasher.finalize().to_hex().as_str() != digest {
            return Err(damaged(
                "assembled from its parts does not match its digest".into(),
            ));
        }
        Ok(())
    }
}

/// Opens a regular file without following a link or blocking on a FIFO.
fn open_regular(path: &Path) -> Result<File, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "is missing".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!(
            "is {}, not a regular file",
            crate::hash::describe_type(&meta.file_type())
        ));
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn sibling(file: &Path, what: &str) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.{what}"))
}

/// The first 12 digits, for messages.
pub fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

/// Whether `name` can be a digest: 64 lower-case hex digits.
pub fn is_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parts of a whole blob.
pub fn whole(digest: &str, size: u64) -> Vec<Part> {
    vec![Part {
        blob: digest.to_string(),
        offset: 0,
        len: size,
    }]
}

/// The parts covering bytes `start..start + len` of the file made of `parts`.
pub fn slice(parts: &[Part], start: u64, len: u64) -> Vec<Part> {
    let end = start + len;
    let mut out = Vec::new();
    let mut at = 0u64;
    for p in parts {
        let (from, to) = (at.max(start), (at + p.len).min(end));
        if from < to {
            out.push(Part {
                blob: p.blob.clone(),
                offset: p.offset + (from - at),
                len: to - from,
            });
        }
        at += p.len;
    }
    out
}

/// How many leading and trailing bytes `a` and `b` share (never overlapping in either).
pub fn shared_ends(a: &Path, b: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let (fa, fb) = (File::open(a)?, File::open(b)?);
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    let limit = la.min(lb);
    const PIECE: u64 = 1 << 20;
    let mut ba = vec![0u8; PIECE as usize];
    let mut bb = vec![0u8; PIECE as usize];
    let mut prefix = 0u64;
    'prefix: while prefix < limit {
        let n = PIECE.min(limit - prefix) as usize;
        fa.read_exact_at(&mut ba[..n], prefix)?;
        fb.read_exact_at(&mut bb[..n], prefix)?;
        for i in 0..n {
            if ba[i] != bb[i] {
                prefix += i as u64;
                break 'prefix;
            }
        }
        prefix += n as u64;
    }
    let mut suffix = 0u64;
    let room = limit - prefix;
    'suffix: while suffix < room {
        let n = PIECE.min(room - suffix) as usize;
        fa.read_exact_at(&mut ba[..n], la - suffix - n as u64)?;
        fb.read_exact_at(&mut bb[..n], lb - suffix - n as u64)?;
        for i in (0..n).rev() {
            if ba[i] != bb[i] {
                suffix += (n - 1 - i) as u64;
                break 'suffix;
            }
        }
        suffix += n as u64;
    }
    Ok((prefix, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_is_found_by_its_digest_only_while_intact() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(&dir.path().join("cas"), dir.path()).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"hello").unwrap();
        let digest = blake3::hash(b"hello").to_hex().to_string();
        assert_eq!(
            blobs.stored(&digest, 5),
            Err("is not in the store".to_string())
        );
        blobs.adopt(&file, &digest).unwrap();
        let found = blobs.stored(&digest, 5).unwrap();
        assert_eq!(fs::read(&found).unwrap(), b"hello");
        assert!(blobs.stored(&digest, 4).is_err(), "another size");
        assert!(blobs.stored("../../etc/passwd", 5).is_err(), "not a digest");
        // Changed in place (same length): refused, not handed out.
        fs::remove_file(&file).unwrap();
        let mut perms = fs::metadata(&found).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&found, perms).unwrap();
        fs::write(&found, b"jello").unwrap();
        assert!(blobs.stored(&digest, 5).is_err());
    }

    #[test]
    fn slices_cover_exactly_the_range_across_parts() {
        let parts = vec![
            Part {
                blob: "a".into(),
                offset: 10,
                len: 5,
            },
            Part {
                blob: "b".into(),
                offset: 0,
                len: 3,
            },
        ];
        assert_eq!(
            slice(&parts, 3, 4),
            vec![
                Part {
                    blob: "a".into(),
                    offset: 13,
                    len: 2
                },
                Part {
                    blob: "b".into(),
                    offset: 0,
                    len: 2
                }
            ]
        );
        assert_eq!(slice(&parts, 0, 8), parts);
        assert!(slice(&parts, 8, 0).is_empty());
    }

    #[test]
    fn shared_ends_find_the_changed_middle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut changed = base.clone();
        changed[2_000_000] ^= 1;
        changed[2_000_100] ^= 1;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, &base).expect("write");
        fs::write(&b, &changed).expect("write");
        assert_eq!(
            shared_ends(&a, &b).expect("compare"),
            (2_000_000, 3_000_000 - 2_000_101)
        );
        fs::write(&b, &base).expect("write");
        let (p, s) = shared_ends(&a, &b).expect("compare");
        assert_eq!((p, s), (3_000_000, 0), "identical: all prefix, no overlap");
        // A longer file that only appends.
        let mut longer = base.clone();
        longer.extend_from_slice(b"tail");
        fs::write(&b, &longer).expect("write");
        assert_eq!(shared_ends(&a, &b).expect("compare"), (3_000_000, 0));
    }

    #[test]
    fn adopt_stores_once_and_replaces_a_damaged_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(&dir.path().join("cas"), dir.path()).expect("open");
        let digest = blake3::hash(b"hello").to_hex().to_string();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"hello").expect("write");
        fs::write(&b, b"hello").expect("write");
        blobs.adopt(&a, &digest).expect("adopt a");
        blobs.adopt(&b, &digest).expect("adopt b");
        assert!(
            same_file(&a, &b),
            "the second copy became a link to the first"
        );
        assert_eq!(blobs.digests().expect("list"), vec![digest.clone()]);

        // Damaged through a link: the next adoption replaces the blob, not links to it.
        fs::write(&a, b"jello").expect("damage");
        assert_eq!(
            blobs.check(&digest, 0).expect_err("damaged"),
            "does not match its digest"
        );
        let c = dir.path().join("c");
        fs::write(&c, b"hello").expect("write");
        blobs.adopt(&c, &digest).expect("adopt c");
        assert_eq!(blobs.check(&digest, 0), Ok(5));
        assert!(same_file(&c, &blobs.path(&digest)));
    }

    #[test]
    fn assembly_checks_the_whole_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(&dir.path().join("cas"), dir.path()).expect("open");
        let put = |bytes: &[u8]| {
            let digest = blake3::hash(bytes).to_hex().to_string();
            let f = dir.path().join(&digest);
            fs::write(&f, bytes).expect("write");
            blobs.adopt(&f, &digest).expect("adopt");
            digest
        };
        let base = put(b"0123456789");
        let head = put(b"XY");
        let parts = vec![
            Part {
                blob: base.clone(),
                offset: 0,
                len: 8,
            },
            Part {
                blob: head,
                offset: 0,
                len: 2,
            },
        ];
        let want = blake3::hash(b"01234567XY").to_hex().to_string();
        let out = dir.path().join("out");
        blobs.assemble(&parts, 10, &want, &out).expect("assemble");
        assert_eq!(fs::read(&out).expect("read"), b"01234567XY");
        let other = dir.path().join("other");
        let err = blobs
            .assemble(&parts, 10, &base, &other)
            .expect_err("wrong digest");
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
        assert!(!other.exists(), "nothing half-checked is left");
    }
}
