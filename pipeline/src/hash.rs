//! Canonical hashing: turns parameters, keys and files into blake3 digests.
//!
//! Parameters are hashed through a canonical byte encoding (type-tagged, tables in sorted key
//! order, floats by their bits), so the way a TOML file is formatted never changes a digest,
//! while any change of value or type does.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

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

/// One file of a stage's external data, named relative to the data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub name: String,
    pub digest: blake3::Hash,
    pub size: u64,
}

/// Hashes many files in parallel. `names` are what the digest records (paths relative to the
/// data root), `paths` where to read them. The result is in the order given.
pub fn hash_files(files: &[(String, PathBuf)]) -> Result<Vec<FileDigest>, (PathBuf, io::Error)> {
    files
        .par_iter()
        .map(|(name, path)| {
            let size = std::fs::metadata(path)
                .map_err(|e| (path.clone(), e))?
                .len();
            let digest = hash_file(path).map_err(|e| (path.clone(), e))?;
            Ok(FileDigest {
                name: name.clone(),
                digest,
                size,
            })
        })
        .collect()
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
    fn file_set_digest_covers_names_and_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            (name.to_string(), p)
        };
        let files = vec![write("a.txt", b"one"), write("b.txt", b"two")];
        let d1 = digest_of_files(&hash_files(&files).expect("hash"));
        let reversed: Vec<_> = files.iter().rev().cloned().collect();
        assert_eq!(d1, digest_of_files(&hash_files(&reversed).expect("hash")));

        let renamed = vec![files[0].clone(), ("c.txt".to_string(), files[1].1.clone())];
        assert_ne!(d1, digest_of_files(&hash_files(&renamed).expect("hash")));

        std::fs::write(&files[1].1, b"twO").expect("write");
        assert_ne!(d1, digest_of_files(&hash_files(&files).expect("hash")));
        assert_eq!(
            hash_file(&files[0].1).expect("hash"),
            blake3::hash(b"one"),
            "a file's digest is the plain blake3 of its bytes"
        );
    }
}
