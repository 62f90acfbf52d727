//! A cache shared between machines on an object store, laid out like Bazel's remote cache:
//!
//! ```text
//! cas/<blake3>   every blob, whole, named by its digest (checked by whoever downloads it)
//! ac/<key>       a stage's manifest, exactly as the local store writes it (self-verifying)
//! ```
//!
//! A push uploads the blobs first, then creates the manifest only where none exists: the
//! manifest's existence is the commit, so a push killed half-way leaves blobs nobody refers
//! to and no entry, and the next push finishes the job. Two machines racing on one key: the
//! loser reads the winner's manifest and compares digests; different bytes for one key are
//! a reproducibility finding naming both platforms, never an overwrite.
//!
//! A fetch checks the manifest's own digest and every blob against its name before anything
//! is published locally; a damaged remote blob or manifest is reported, removed from the
//! remote (it can never be right under its name) and the stage is recomputed and pushed
//! again, which replaces it.

pub mod backend;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

pub use backend::{Backend, BackendError, Created, Listed, ObjectBackend};

use crate::store::cache::{Cache, CacheError, Entry, KeyLock};
use crate::store::cas;
use crate::store::manifest::{self, describe_entry, Manifest, MANIFEST};

/// A shared remote cache.
pub struct Remote {
    /// As the user wrote it, for messages.
    pub url: String,
    backend: Box<dyn Backend>,
}

/// Why a remote operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {url}: {source}")]
    Backend { url: String, source: BackendError },
    /// What the remote holds is not what its name says: never published locally.
    #[error("remote {url}: {message}")]
    Damaged { url: String, message: String },
    #[error(transparent)]
    Local(#[from] CacheError),
}

/// What fetching a key found.
#[derive(Debug)]
pub enum Fetched {
    /// Downloaded, checked and published locally.
    Entry(Box<Entry>),
    /// The remote has no usable entry for the key.
    Absent,
}

/// What pushing an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Its manifest is now on the remote; `blobs` of its blobs were uploaded.
    Committed { blobs: usize, bytes: u64 },
    /// The remote had the entry already, with the same bytes.
    Present { blobs: usize, bytes: u64 },
    /// The remote had the entry from another computation, with other bytes.
    Differs(Finding),
}

/// One key, two results: the stage is not reproducible between the two platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub stage: String,
    pub experiment: String,
    /// (file, this machine's digest, the remote's digest)
    pub files: Vec<(String, String, String)>,
    pub ours: String,
    pub theirs: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<&str> = self.files.iter().map(|(n, _, _)| n.as_str()).collect();
        write!(
            f,
            "reproducibility: stage `{}` of {} (key {}) gave other bytes in {} on {} than the remote's result from {}; the remote's is kept",
            self.stage,
            self.experiment,
            cas::short(&self.key),
            files.join(", "),
            or_unknown(&self.ours),
            or_unknown(&self.theirs),
        )
    }
}

fn or_unknown(platform: &str) -> &str {
    if platform.is_empty() {
        "an unrecorded platform"
    } else {
        platform
    }
}

fn blob_name(digest: &str) -> String {
    format!("cas/{digest}")
}

fn manifest_name(key: &str) -> String {
    format!("ac/{key}")
}

impl Remote {
    pub fn open(url: &str) -> Result<Remote, RemoteError> {
        let backend = ObjectBackend::from_url(url).map_err(|source| RemoteError::Backend {
            url: url.to_string(),
            source,
        })?;
        Ok(Remote::with_backend(url, Box::new(backend)))
    }

    pub fn with_backend(url: &str, backend: Box<dyn Backend>) -> Remote {
        Remote {
            url: url.to_string(),
            backend,
        }
    }

    fn backend_err(&self) -> impl FnOnce(BackendError) -> RemoteError + '_ {
        move |source| RemoteError::Backend {
            url: self.url.clone(),
            source,
        }
    }

    fn damaged(&self, message: String) -> RemoteError {
        RemoteError::Damaged {
            url: self.url.clone(),
            message,
        }
    }

    /// Whether the remote holds an entry for `key`.
    pub fn has(&self, key: &str) -> Result<bool, RemoteError> {
        Ok(self
            .backend
            .size(&manifest_name(key))
            .map_err(self.backend_err())?
            .is_some())
    }

    /// The remote's manifest of `key`, checked; `None` when it has none of this store format.
    /// A damaged one (cut short, garbled, not matching its own digest or its key) is removed
    /// from the remote and reported, as a damaged blob is: it can never become right, and
    /// left there it would refuse every later push of the key, so the stage would be
    /// recomputed on every run of every machine.
    pub fn manifest(&self, key: &str) -> Result<Option<(String, Manifest)>, RemoteError> {
        let Some(bytes) = self
            .backend
            .get(&manifest_name(key))
            .map_err(self.backend_err())?
        else {
            return Ok(None);
        };
        match manifest::parse_manifest_text(&bytes, key) {
            Ok(Some(manifest)) => {
                let text = String::from_utf8(bytes).unwrap_or_default();
                Ok(Some((text, manifest)))
            }
            Ok(None) => Ok(None),
            Err(problem) => {
                let _ = self.backend.delete(&manifest_name(key));
                Err(self.damaged(format!(
                    "the manifest of {} is damaged ({problem}); removed from the remote",
                    cas::short(key)
                )))
            }
        }
    }

    /// Downloads the blob `digest` and checks it against its name; a blob that fails the check
    /// is removed from the remote and reported.
    fn download(&self, digest: &str) -> Result<Vec<u8>, RemoteError> {
        let bytes = self
            .backend
            .get(&blob_name(digest))
            .map_err(self.backend_err())?
            .ok_or_else(|| self.damaged(format!("blob {} is missing", cas::short(digest))))?;
        if blake3::hash(&bytes).to_hex().as_str() != digest {
            // Under its name it can never be right: a later push uploads the true bytes.
            let _ = self.backend.delete(&blob_name(digest));
            return Err(self.damaged(format!(
                "blob {} is damaged ({} bytes that do not match its digest); removed from the remote",
                cas::short(digest),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Looks `key` up on the remote and, where found, downloads it, checks every byte and
    /// publishes it in `cache`. Call with the key's lock held.
    pub fn fetch(&self, cache: &Cache, key: &str, lock: &KeyLock) -> Result<Fetched, RemoteError> {
        let Some((text, manifest)) = self.manifest(key)? else {
            return Ok(Fetched::Absent);
        };
        let staging = cache.stage(key, lock)?;
        for record in &manifest.files {
            if record.is_assembled() {
                // Parts go into the local blobs: each is checked before it is adopted.
                let mut ends: BTreeMap<&str, u64> = BTreeMap::new();
                for part in &record.parts {
                    let end = ends.entry(&part.blob).or_default();
                    *end = (*end).max(part.offset + part.len);
                }
                for (blob, end) in ends {
                    if cache.blobs().check(blob, end).is_ok() {
                        continue;
                    }
                    let bytes = self.download(blob)?;
                    let tmp = staging.dir().join(format!(".blob.{blob}"));
                    write_read_only(&tmp, &bytes)?;
                    cache.blobs().adopt(&tmp, blob).map_err(CacheError::from)?;
                    let _ = fs::remove_file(&tmp);
                }
                continue;
            }
            let dest = staging.dir().join(&record.file);
            if cache.blobs().check(&record.blake3, record.size).is_ok() {
                // Already here (another entry with the same bytes): link, do not download.
                if fs::hard_link(cache.blobs().path(&record.blake3), &dest).is_ok() {
                    continue;
                }
            }
            let bytes = self.download(&record.blake3)?;
            write_read_only(&dest, &bytes)?;
        }
        let entry = cache.publish_fetched(staging, &text, manifest, lock)?;
        Ok(Fetched::Entry(Box::new(entry)))
    }

    /// Uploads `entry`: its blobs first (those the remote lacks), then its manifest, created
    /// only where the remote has none.
    pub fn push(&self, entry: &Entry) -> Result<Pushed, RemoteError> {
        let text = fs::read(entry.dir.join(MANIFEST)).map_err(|e| {
            RemoteError::Local(CacheError::Io {
                path: entry.dir.join(MANIFEST),
                source: e,
            })
        })?;
        let mut blobs = 0;
        let mut bytes = 0u64;
        let mut wanted: BTreeMap<String, (u64, Option<std::path::PathBuf>)> = BTreeMap::new();
        for record in &entry.manifest.files {
            if record.is_assembled() {
                for part in &record.parts {
                    wanted.entry(part.blob.clone()).or_insert((0, None));
                }
            } else {
                wanted.insert(
                    record.blake3.clone(),
                    (record.size, Some(entry.path_of(record))),
                );
            }
        }
        for (digest, (size, path)) in wanted {
            let present = self
                .backend
                .size(&blob_name(&digest))
                .map_err(self.backend_err())?;
            let path = path.unwrap_or_else(|| entry.blobs.path(&digest));
            let local = fs::read(&path).map_err(|e| {
                RemoteError::Local(CacheError::Io {
                    path: path.clone(),
                    source: e,
                })
            })?;
            if present == Some(local.len() as u64) {
                continue;
            }
            // Never upload what the local store no longer holds right.
            if blake3::hash(&local).to_hex().as_str() != digest
                || (size > 0 && local.len() as u64 != size)
            {
                return Err(RemoteError::Local(CacheError::Manifest {
                    path: path.clone(),
                    message: format!(
                        "blob {} does not match its digest: not pushed (run `pipeline verify`)",
                        cas::short(&digest)
                    ),
                }));
            }
            bytes += local.len() as u64;
            blobs += 1;
            self.backend
                .put(&blob_name(&digest), local)
                .map_err(self.backend_err())?;
        }
        let name = manifest_name(&entry.manifest.key);
        match self
            .backend
            .create(&name, text.clone())
            .map_err(self.backend_err())?
        {
            Created::Yes => Ok(Pushed::Committed { blobs, bytes }),
            Created::AlreadyExists => {
                let theirs = match self.manifest(&entry.manifest.key) {
                    Ok(Some((_, m))) => m,
                    Ok(None) => return Ok(Pushed::Present { blobs, bytes }),
                    // The damaged manifest was removed: this push replaces it.
                    Err(RemoteError::Damaged { .. }) => {
                        return match self
                            .backend
                            .create(&name, text)
                            .map_err(self.backend_err())?
                        {
                            Created::Yes => Ok(Pushed::Committed { blobs, bytes }),
                            Created::AlreadyExists => Ok(Pushed::Present { blobs, bytes }),
                        };
                    }
                    Err(other) => return Err(other),
                };
                let files = differing(&entry.manifest, &theirs);
                if files.is_empty() {
                    Ok(Pushed::Present { blobs, bytes })
                } else {
                    Ok(Pushed::Differs(Finding {
                        key: entry.manifest.key.clone(),
                        stage: entry.manifest.stage.clone(),
                        experiment: entry.manifest.experiment.clone(),
                        files,
                        ours: entry.manifest.platform.clone(),
                        theirs: theirs.platform,
                    }))
                }
            }
        }
    }

    /// Records that run `id` used `keys`: remote gc keeps what any recorded run used
    /// (`runs/<id>`, one key a line, the experiment's name first as a comment).
    pub fn record_run(
        &self,
        id: &str,
        experiment: &str,
        keys: &[String],
    ) -> Result<(), RemoteError> {
        let mut text = format!("# {experiment}\n");
        for key in keys {
            text.push_str(key);
            text.push('\n');
        }
        self.backend
            .put(&format!("runs/{id}"), text.into_bytes())
            .map_err(self.backend_err())
    }

    /// The keys recorded runs used, from every machine that pushed to the remote.
    pub fn recorded_keys(&self) -> Result<std::collections::BTreeSet<String>, RemoteError> {
        let mut keys = std::collections::BTreeSet::new();
        for item in self.backend.list("runs").map_err(self.backend_err())? {
            let Some(bytes) = self.backend.get(&item.name).map_err(self.backend_err())? else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| manifest::is_key(l))
                    .map(str::to_string),
            );
        }
        Ok(keys)
    }

    /// The keys of every entry on the remote.
    pub fn keys(&self) -> Result<Vec<String>, RemoteError> {
        let mut keys: Vec<String> = self
            .backend
            .list("ac")
            .map_err(self.backend_err())?
            .into_iter()
            .filter_map(|l| l.name.strip_prefix("ac/").map(str::to_string))
            .filter(|k| manifest::is_key(k))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes from the remote every entry whose key is not in `roots`, and every blob no kept
    /// entry uses, where older than `grace_s` seconds (a push in progress uploads blobs before
    /// its manifest: the grace period keeps them). Returns what was (or, with `dry_run`, would
    /// be) removed: entries described by their manifests, and the blob count and bytes.
    pub fn collect(
        &self,
        roots: &std::collections::BTreeSet<String>,
        grace_s: i64,
        dry_run: bool,
    ) -> Result<RemoteCollected, RemoteError> {
        let now = chrono::Utc::now().timestamp();
        let mut out = RemoteCollected::default();
        let mut live: std::collections::BTreeSet<String> = Default::default();
        let listed = self.backend.list("ac").map_err(self.backend_err())?;
        let mut doomed = Vec::new();
        for item in listed {
            let Some(key) = item.name.strip_prefix("ac/") else {
                continue;
            };
            let manifest = self.manifest(key).ok().flatten().map(|(_, m)| m);
            if roots.contains(key) || now - item.modified < grace_s {
                out.kept += 1;
                for f in manifest.iter().flat_map(|m| &m.files) {
                    live.extend(f.stored().into_iter().map(|p| p.blob));
                }
                continue;
            }
            out.entries.push(describe_entry(key, manifest.as_ref()));
            doomed.push(item.name.clone());
        }
        for item in self.backend.list("cas").map_err(self.backend_err())? {
            let Some(digest) = item.name.strip_prefix("cas/") else {
                continue;
            };
            if live.contains(digest) || now - item.modified < grace_s {
                continue;
            }
            out.blobs += 1;
            out.bytes += item.size;
            doomed.push(item.name.clone());
        }
        if !dry_run {
            // Manifests first: an entry disappears whole before any blob it used.
            for name in &doomed {
                self.backend.delete(name).map_err(self.backend_err())?;
            }
        }
        Ok(out)
    }
}

/// What remote gc removed.
#[derive(Debug, Default)]
pub struct RemoteCollected {
    pub entries: Vec<String>,
    pub kept: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// The files whose bytes differ between two results for one key, leaving out volatile ones.
fn differing(ours: &Manifest, theirs: &Manifest) -> Vec<(String, String, String)> {
    ours.files
        .iter()
        .filter(|f| !f.volatile)
        .filter_map(|f| {
            let other = theirs.files.iter().find(|t| t.name == f.name);
            match other {
                Some(t) if t.blake3 == f.blake3 => None,
                Some(t) => Some((f.file.clone(), f.blake3.clone(), t.blake3.clone())),
                None => Some((f.file.clone(), f.blake3.clone(), String::new())),
            }
        })
        .collect()
}

fn write_read_only(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    {
        use std::io::Write;
        let mut file = fs::File::create(path).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let mut perms = fs::metadata(path).map_err(io)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(io)
}

#[cfg(test)]
mod tests;
