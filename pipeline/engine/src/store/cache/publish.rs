//! Publishing a stage's result: the staging directory it writes into, hashing its outputs
//! into blobs (or parts of blobs, for an output mostly made of an input), writing the
//! manifest, and the one rename that makes the entry exist.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{io_err, set_read_only, Cache, CacheError, Entry, KeyLock};
use crate::hash::{hash_regular_file, FileProblem};
use crate::store::cas::{self, Part};
use crate::store::files::{make_writable, make_writable_file, nanos, write_durably};
use crate::store::manifest::{render_manifest, FileRecord, Manifest, MANIFEST, STORE_FORMAT};

/// A file a new output may share most of its bytes with: one of the stage's inputs.
#[derive(Debug, Clone)]
pub struct Base {
    /// The file whole (an entry's link, or an assembled copy).
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
    /// How it is stored.
    pub parts: Vec<Part>,
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
        make_writable(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Cache {
    /// A fresh directory for computing `key`. Call with the key's lock held: leftovers of
    /// earlier, interrupted computations of the same key are removed here.
    pub fn stage(&self, key: &str, _lock: &KeyLock) -> Result<Staging, CacheError> {
        let tmp = self.root.join("tmp");
        if let Ok(dir) = fs::read_dir(&tmp) {
            for leftover in dir.flatten() {
                if leftover.file_name().to_string_lossy().starts_with(key) {
                    make_writable(&leftover.path());
                    let _ = fs::remove_dir_all(leftover.path());
                }
            }
        }
        let dir = tmp.join(format!("{key}.{}.{}", std::process::id(), nanos()));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Staging {
            dir,
            key: key.to_string(),
        })
    }

    /// Hashes the staged outputs, writes the manifest and moves the directory into place.
    /// `manifest.files` lists the outputs by name and file; sizes and digests are filled in.
    /// An output must be a regular file: a link would make the entry depend on what it points
    /// to, and a FIFO or device has no bytes to record.
    pub fn publish(
        &self,
        staging: Staging,
        manifest: Manifest,
        lock: &KeyLock,
    ) -> Result<Entry, CacheError> {
        self.publish_sharing(staging, manifest, lock, &[], None)
    }

    /// [`Cache::publish`], storing an output that shares most of its bytes with one of
    /// `bases` (the stage's inputs) as parts: the bytes it shares are referenced by digest,
    /// only the rest is new. Every other output becomes a link to its blob. The staged whole
    /// file of an output stored as parts is moved into `keep_whole` (created if needed), where
    /// a run reading it would otherwise assemble it again, or else removed.
    pub fn publish_sharing(
        &self,
        staging: Staging,
        mut manifest: Manifest,
        _lock: &KeyLock,
        bases: &[Base],
        keep_whole: Option<&Path>,
    ) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        let records: Result<Vec<FileRecord>, CacheError> = manifest
            .files
            .par_iter()
            .map(|f| {
                let path = dir.join(&f.file);
                let problem = |problem| CacheError::Output {
                    path: dir.clone(),
                    file: f.file.clone(),
                    problem,
                };
                let digest = hash_regular_file(&path, None).map_err(problem)?;
                let file = File::open(&path).map_err(io_err(&path))?;
                // Durable before the rename makes it visible.
                file.sync_all().map_err(io_err(&path))?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                set_read_only(&path)?;
                Ok(FileRecord {
                    size,
                    blake3: digest.to_hex().to_string(),
                    parts: Vec::new(),
                    ..f.clone()
                })
            })
            .collect();
        manifest.files = records?;
        // An earlier output of the same stage is a base too: the model stage's base is its
        // model without the head.
        let mut bases = bases.to_vec();
        for record in &mut manifest.files {
            if record.size >= cas::DELTA_MIN {
                if let Some(parts) = self.delta(&dir, record, &bases, keep_whole)? {
                    record.parts = parts;
                    continue;
                }
            }
            self.blobs.adopt(&dir.join(&record.file), &record.blake3)?;
            if record.size >= cas::DELTA_MIN {
                bases.push(Base {
                    path: dir.join(&record.file),
                    size: record.size,
                    digest: record.blake3.clone(),
                    parts: cas::whole(&record.blake3, record.size),
                });
            }
        }
        manifest.key = staging.key.clone();
        manifest.format = STORE_FORMAT;
        let manifest_path = dir.join(MANIFEST);
        let text = render_manifest(&manifest).map_err(|message| CacheError::Manifest {
            path: manifest_path.clone(),
            message,
        })?;
        self.place(staging, &text, manifest)
    }

    /// Writes the manifest into the staged directory and moves it into place.
    fn place(&self, staging: Staging, text: &str, manifest: Manifest) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        let manifest_path = dir.join(MANIFEST);
        write_durably(&manifest_path, text.as_bytes()).map_err(io_err(&manifest_path))?;
        set_read_only(&manifest_path)?;
        let target = self.entry_dir(&staging.key);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if fs::symlink_metadata(&target).is_ok() {
            // A damaged entry found by another run, an entry of another format, or
            // --no-cache: the fresh result replaces it.
            self.evict(&staging.key)?;
        }
        fs::rename(&dir, &target).map_err(io_err(&target))?;
        Ok(Entry {
            dir: target,
            manifest,
            blobs: self.blobs.clone(),
        })
    }

    /// Publishes an entry fetched from elsewhere (a remote cache) as it was written there:
    /// `text` is its manifest, already checked by `manifest::parse_manifest_text`. Whole files
    /// are in the staged directory; the blobs of files stored as parts must be in the store.
    /// Every byte is checked again here, so nothing unchecked becomes an entry.
    pub fn publish_fetched(
        &self,
        staging: Staging,
        text: &str,
        manifest: Manifest,
        _lock: &KeyLock,
    ) -> Result<Entry, CacheError> {
        let dir = staging.dir.clone();
        for record in &manifest.files {
            if record.is_assembled() {
                for part in &record.parts {
                    self.blobs
                        .check(&part.blob, part.offset + part.len)
                        .map_err(|problem| CacheError::Manifest {
                            path: dir.clone(),
                            message: format!(
                                "{}: blob {} {problem}",
                                record.file,
                                cas::short(&part.blob)
                            ),
                        })?;
                }
                continue;
            }
            let path = dir.join(&record.file);
            match hash_regular_file(&path, Some(record.size)) {
                Ok(d) if d.to_hex().as_str() == record.blake3 => {}
                Ok(_) => {
                    return Err(CacheError::Output {
                        path: dir.clone(),
                        file: record.file.clone(),
                        problem: FileProblem::Io(io::Error::other("does not match its digest")),
                    })
                }
                Err(problem) => {
                    return Err(CacheError::Output {
                        path: dir.clone(),
                        file: record.file.clone(),
                        problem,
                    })
                }
            }
            set_read_only(&path)?;
            self.blobs.adopt(&path, &record.blake3)?;
        }
        self.place(staging, text, manifest)
    }

    /// The parts of `record` (staged in `dir`) when it shares at least half its bytes with
    /// one of `bases`, its beginning and end, with the staged file then removed; `None` when
    /// it is better stored whole.
    fn delta(
        &self,
        dir: &Path,
        record: &FileRecord,
        bases: &[Base],
        keep_whole: Option<&Path>,
    ) -> Result<Option<Vec<Part>>, CacheError> {
        let path = dir.join(&record.file);
        let mut best: Option<(u64, u64, &Base)> = None;
        for base in bases {
            if base.size < record.size / 2 || base.size / 2 > record.size {
                continue;
            }
            if base.digest == record.blake3 {
                // The same bytes: a link to the same blob stores them once already.
                return Ok(None);
            }
            let Ok((prefix, suffix)) = cas::shared_ends(&path, &base.path) else {
                continue;
            };
            if best.is_none_or(|(p, s, _)| prefix + suffix > p + s) {
                best = Some((prefix, suffix, base));
            }
        }
        let Some((prefix, suffix, base)) = best else {
            return Ok(None);
        };
        if prefix + suffix < record.size / 2 {
            return Ok(None);
        }
        if base.parts == cas::whole(&base.digest, base.size) {
            self.blobs.ensure(&base.path, &base.digest)?;
        }
        let mut parts = cas::slice(&base.parts, 0, prefix);
        let middle_len = record.size - prefix - suffix;
        if middle_len > 0 {
            let middle = dir.join(format!(".{}.middle", record.file));
            let digest = copy_range(&path, prefix, middle_len, &middle).map_err(io_err(&middle))?;
            set_read_only(&middle)?;
            self.blobs.adopt(&middle, &digest)?;
            let _ = fs::remove_file(&middle);
            parts.push(Part {
                blob: digest,
                offset: 0,
                len: middle_len,
            });
        }
        parts.extend(cas::slice(&base.parts, base.size - suffix, suffix));
        // Checked before the whole file goes: the parts must give back exactly its bytes.
        self.blobs
            .check_parts(&parts, record.size, &record.blake3)
            .map_err(CacheError::Blob)?;
        // Hashed above and read-only: as good as an assembled copy.
        let kept = keep_whole.is_some_and(|keep| {
            fs::create_dir_all(keep).is_ok() && fs::rename(&path, keep.join(&record.file)).is_ok()
        });
        if !kept {
            make_writable_file(&path);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(Some(parts))
    }
}

/// Copies `len` bytes of `src` from `offset` into a new file `dest`; returns their digest.
fn copy_range(src: &Path, offset: u64, len: u64, dest: &Path) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut from = File::open(src)?;
    from.seek(SeekFrom::Start(offset))?;
    let mut reader = from.take(len);
    let mut out = File::create(dest)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != len {
        return Err(io::Error::other("the file shrank while it was stored"));
    }
    out.sync_all()?;
    Ok(hasher.finalize().to_hex().to_string())
}
