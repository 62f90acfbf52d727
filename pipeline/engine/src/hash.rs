//! Canonical hashing: turns parameters, keys and files into blake3 digests.
//!
//! Parameters are hashed through a canonical byte encoding (type-tagged, tables in sorted key
//! order, floats by their bits), so the way a TOML file is formatted never changes a digest,
//! while any change of value or type does.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Version of the canonical encoding, mixed into every stage key: bump it when the encoding
/// below changes, so old cache entries are never mistaken for new ones.
pub const ENCODING_VERSION: u32 = 1;

/// Files at or above this size are hashed with blake3's multi-threaded memory-mapped path.
const LARGE_FILE: u64 = 16 * 1024 * 1024;

/// A blake3 hasher that accepts typed, length-prefixed fields, so that no two different
/// sequences of fields can produce the same byte stream.
pub struct FieldHasher {
    inner: blake3::Hasher,
}

impl FieldHasher {
    /// Starts a hasher for one purpose; `domain` separates e.g. stage keys from manifests.
    pub fn new(domain: &str) -> Self {
        let mut inner = blake3::Hasher::new();
        inner.update(&ENCODING_VERSION.to_le_bytes());
        let mut hasher = FieldHasher { inner };
        hasher.str(domain);
        hasher
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(b's', s.as_bytes())
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.bytes(b'u', &n.to_le_bytes())
    }

    pub fn digest(&mut self, d: &blake3::Hash) -> &mut Self {
        self.bytes(b'h', d.as_bytes())
    }

    pub fn value(&mut self, v: &toml::Value) -> &mut Self {
        encode_value(v, &mut self.inner);
        self
    }

    pub fn finish(&self) -> blake3::Hash {
        self.inner.finalize()
    }

    fn bytes(&mut self, tag: u8, b: &[u8]) -> &mut Self {
        self.inner.update(&[tag]);
        self.inner.update(&(b.len() as u64).to_le_bytes());
        self.inner.update(b);
        self
    }
}

fn encode_value(v: &toml::Value, h: &mut blake3::Hasher) {
    fn tagged(h: &mut blake3::Hasher, tag: u8, b: &[u8]) {
        h.update(&[tag]);
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    }
    match v {
        toml::Value::String(s) => tagged(h, b's', s.as_bytes()),
        toml::Value::Integer(i) => tagged(h, b'i', &i.to_le_bytes()),
        toml::Value::Float(f) => tagged(h, b'f', &canonical_float(*f).to_le_bytes()),
        toml::Value::Boolean(b) => tagged(h, b'b', &[*b as u8]),
        toml::Value::Datetime(d) => tagged(h, b'd', d.to_string().as_bytes()),
        toml::Value::Array(items) => {
            tagged(h, b'a', &(items.len() as u64).to_le_bytes());
            for item in items {
                encode_value(item, h);
            }
        }
        toml::Value::Table(table) => {
            tagged(h, b't', &(table.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            for key in keys {
                tagged(h, b'k', key.as_bytes());
                encode_value(&table[key], h);
            }
        }
    }
}

/// The bits of a float with -0.0 folded into 0.0 and every NaN into one NaN, since those
/// distinctions never reflect a user's intent in a parameter.
fn canonical_float(f: f64) -> u64 {
    if f == 0.0 {
        0.0f64.to_bits()
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

/// The blake3 digest of one file's bytes.
pub fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let len = std::fs::metadata(path)?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= LARGE_FILE {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut file = File::open(path)?;
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize())
}

/// Why a file that should hold recorded bytes cannot be hashed as it is.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("is missing")]
    Missing,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("has {found} bytes, not the {expected} recorded")]
    WrongSize { expected: u64, found: u64 },
    #[error("cannot be read: {0}")]
    Io(io::Error),
}

/// What a file system object is, for messages: `a symbolic link`, `a FIFO`, ...
pub fn describe_type(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// The blake3 digest of a file that must be a regular file (not a link to one) of
/// `expected_len` bytes when given. Type and size are checked before a byte is read, so a
/// file swapped for a link to `/dev/zero`, a FIFO or a device is reported, not read or waited
/// on; the file is then read through the one descriptor that was checked, and never past its
/// size.
pub fn hash_regular_file(
    path: &Path,
    expected_len: Option<u64>,
) -> Result<blake3::Hash, FileProblem> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FileProblem::Missing,
        _ => FileProblem::Io(e),
    })?;
    check_type_and_size(&meta, expected_len)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Should the path have been swapped since the check: no following a link, and no
        // blocking on a FIFO's open.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| match e.raw_os_error() {
        #[cfg(unix)]
        Some(libc::ELOOP) => FileProblem::NotRegular("a symbolic link"),
        _ if e.kind() == io::ErrorKind::NotFound => FileProblem::Missing,
        _ => FileProblem::Io(e),
    })?;
    let opened = file.metadata().map_err(FileProblem::Io)?;
    check_type_and_size(&opened, Some(meta.len()))?;
    hash_open_file(file, opened.len())
}

fn check_type_and_size(
    meta: &std::fs::Metadata,
    expected_len: Option<u64>,
) -> Result<(), FileProblem> {
    if !meta.file_type().is_file() {
        return Err(FileProblem::NotRegular(describe_type(&meta.file_type())));
    }
    match expected_len {
        Some(expected) if meta.len() != expected => Err(FileProblem::WrongSize {
            expected,
            found: meta.len(),
        }),
        _ => Ok(()),
    }
}

/// Hashes exactly `len` bytes of an open regular file, in pieces (large ones on all threads),
/// so that memory stays bounded and a file that grows while read is caught.
fn hash_open_file(file: File, len: u64) -> Result<blake3::Hash, FileProblem> {
    const PIECE: usize = 8 * 1024 * 1024;
    let mut hasher = blake3::Hasher::new();
    let mut reader = file.take(len.saturating_add(1));
    let mut buf = vec![0u8; len.saturating_add(1).min(PIECE as u64) as usize];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileProblem::Io(e)),
        };
        total += n as u64;
        if n >= LARGE_PIECE {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
    }
    if total != len {
        return Err(FileProblem::WrongSize {
            expected: len,
            found: total,
        });
    }
    Ok(hasher.finalize())
}

/// Pieces at least this long are hashed on all threads; below it, threads cost more than they
/// save.
const LARGE_PIECE: usize = 128 * 1024;

/// One file of a stage's external data, named relative to the data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub name: String,
    pub digest: blake3::Hash,
    pub size: u64,
}

/// The digest of a set of files: covers each file's name and bytes, independent of the order
/// the files were listed in.
pub fn digest_of_files(files: &[FileDigest]) -> blake3::Hash {
    let mut sorted: Vec<&FileDigest> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = FieldHasher::new("pipeline.files");
    h.u64(sorted.len() as u64);
    for f in sorted {
        h.str(&f.name).digest(&f.digest);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::checked::hash_files;

    fn digest_of(text: &str) -> blake3::Hash {
        let value: toml::Table = toml::from_str(text).expect("test TOML parses");
        FieldHasher::new("t")
            .value(&toml::Value::Table(value))
            .finish()
    }

    #[test]
    fn key_order_and_formatting_do_not_matter() {
        let a = digest_of("x = 1\ny = \"a\"\n[t]\nz = [1, 2]\n");
        let b = digest_of("[t]\nz = [ 1,2 ]   # comment\n\n");
        let c = digest_of("y = 'a'\nx = 0x1\nt = { z = [1, 2] }\n");
        assert_ne!(a, b, "a missing key must change the digest");
        assert_eq!(a, c);
    }

    #[test]
    fn values_and_types_matter() {
        assert_ne!(digest_of("x = 1"), digest_of("x = 2"));
        assert_ne!(digest_of("x = 1"), digest_of("x = 1.0"));
        assert_ne!(digest_of("x = \"1\""), digest_of("x = 1"));
        assert_ne!(digest_of("x = [1, 2]"), digest_of("x = [2, 1]"));
        assert_eq!(digest_of("x = 0.0"), digest_of("x = -0.0"));
        assert_eq!(digest_of("x = 1e-3"), digest_of("x = 0.001"));
    }

    #[test]
    fn fields_cannot_run_together() {
        let ab_c = FieldHasher::new("t").str("ab").str("c").finish();
        let a_bc = FieldHasher::new("t").str("a").str("bc").finish();
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn regular_files_hash_as_plain_blake3_and_anything_else_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.bin");
        // Over one piece, so the multi-piece, multi-threaded path is taken too.
        let bytes: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).expect("write");
        assert_eq!(
            hash_regular_file(&file, Some(bytes.len() as u64)).expect("hash"),
            blake3::hash(&bytes)
        );
        assert_eq!(
            hash_regular_file(&file, None).expect("hash"),
            blake3::hash(&bytes)
        );
        assert!(matches!(
            hash_regular_file(&file, Some(5)),
            Err(FileProblem::WrongSize {
                expected: 5,
                found: 9_000_000
            })
        ));
        assert!(matches!(
            hash_regular_file(&dir.path().join("none"), None),
            Err(FileProblem::Missing)
        ));
        assert!(matches!(
            hash_regular_file(dir.path(), None),
            Err(FileProblem::NotRegular("a directory"))
        ));
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        assert_eq!(
            hash_regular_file(&link, Some(0))
                .expect_err("a link")
                .to_string(),
            "is a symbolic link, not a regular file"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // Returns at once: a FIFO is never opened, so nothing blocks waiting for a writer.
        assert!(matches!(
            hash_regular_file(&fifo, None),
            Err(FileProblem::NotRegular("a FIFO"))
        ));
    }

    #[test]
    fn file_set_digest_covers_names_and_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            (name.to_string(), p)
        };
        let files = vec![write("a.txt", b"one"), write("b.txt", b"two")];
        let d1 = digest_of_files(&hash_files(&files, None).expect("hash"));
        let reversed: Vec<_> = files.iter().rev().cloned().collect();
        assert_eq!(
            d1,
            digest_of_files(&hash_files(&reversed, None).expect("hash"))
        );

        let renamed = vec![files[0].clone(), ("c.txt".to_string(), files[1].1.clone())];
        assert_ne!(
            d1,
            digest_of_files(&hash_files(&renamed, None).expect("hash"))
        );

        std::fs::write(&files[1].1, b"twO").expect("write");
        assert_ne!(
            d1,
            digest_of_files(&hash_files(&files, None).expect("hash"))
        );
        assert_eq!(
            hash_file(&files[0].1).expect("hash"),
            blake3::hash(b"one"),
            "a file's digest is the plain blake3 of its bytes"
        );
    }
}
