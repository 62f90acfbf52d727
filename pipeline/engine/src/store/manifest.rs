//! The manifest of a cache entry: what it holds (each output's name, size and digest, or the
//! parts of blobs it is stored as) and how it came to be, and its text. The first line is the
//! blake3 digest of the rest (`# blake3 <hex>`), so a manifest checks itself; what it names
//! is checked too, since run directories take their file names from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cas::{self, Part};

/// Version of the entry layout and manifest; entries of another version are not read.
/// 2: the manifest carries its own digest on its first line and is read-only.
/// 3: files are links to content-addressed blobs, or parts of blobs (`parts`).
pub const STORE_FORMAT: u32 = 3;

/// The manifest's file name inside an entry.
pub const MANIFEST: &str = "manifest.toml";

/// How the manifest's first line starts; the hex digest of the remaining bytes follows.
const SELF_DIGEST_PREFIX: &str = "# blake3 ";

/// One output file as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The output's name (`images`), as other stages refer to it.
    pub name: String,
    /// The file's name inside the entry (`images.npy`).
    pub file: String,
    pub size: u64,
    pub blake3: String,
    /// Where the bytes are when the file is stored as ranges of blobs rather than whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Bytes that differ between identical executions (timings): left out when two machines'
    /// results for one key are compared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
}

impl FileRecord {
    /// The blob ranges holding the file: its parts, or its whole blob.
    pub fn stored(&self) -> Vec<Part> {
        if self.parts.is_empty() {
            cas::whole(&self.blake3, self.size)
        } else {
            self.parts.clone()
        }
    }

    /// Whether the file is stored as parts, with no file of its own in the entry.
    pub fn is_assembled(&self) -> bool {
        !self.parts.is_empty()
    }
}

/// What an entry holds and how it came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub kind: String,
    pub kind_version: u32,
    /// Seconds since the Unix epoch at publication.
    pub created: u64,
    pub duration_s: f64,
    pub files: Vec<FileRecord>,
    /// The parameters and input digests the key was computed from, for explanations.
    pub params: toml::Table,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// External data files read: name relative to the data root, and digest.
    #[serde(default)]
    pub external: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: toml::Table,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The stage and experiment that computed it, and the run: for messages (gc names what
    /// it removes) and for reproducibility findings between machines.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Where it was computed: architecture and vector instruction set (`x86_64 AVX-512`),
    /// which may change floating-point results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// What reading an entry's manifest found.
pub(super) enum ManifestState {
    Absent,
    /// Written by another store format: not ours to read, not damage either.
    OtherFormat,
    Damaged(String),
    Intact(Box<Manifest>),
}

/// The manifest as written: the digest line, then the TOML it covers.
pub(super) fn render_manifest(manifest: &Manifest) -> Result<String, String> {
    let body = toml::to_string(manifest).map_err(|e| e.to_string())?;
    Ok(format!(
        "{SELF_DIGEST_PREFIX}{}\n{body}",
        blake3::hash(body.as_bytes()).to_hex()
    ))
}

/// A manifest's text checked as `Cache::lookup` checks a local one (its own digest, its
/// key, the names and digests it gives): the manifest, or why it cannot be used (`None`
/// inside for one of another store format).
pub fn parse_manifest_text(bytes: &[u8], key: &str) -> Result<Option<Manifest>, String> {
    match parse_manifest(bytes, key) {
        ManifestState::Intact(m) => Ok(Some(*m)),
        ManifestState::OtherFormat | ManifestState::Absent => Ok(None),
        ManifestState::Damaged(problem) => Err(problem),
    }
}

/// The manifest as `Cache::publish` writes it: the digest line, then the TOML.
pub fn manifest_text(manifest: &Manifest) -> Result<String, String> {
    render_manifest(manifest)
}

/// Checks a manifest's own digest, then its content against the key it was found under.
pub(super) fn parse_manifest(bytes: &[u8], key: &str) -> ManifestState {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ManifestState::Damaged(format!("{MANIFEST} is not UTF-8 text"));
    };
    let Some((recorded, body)) = text
        .strip_prefix(SELF_DIGEST_PREFIX)
        .and_then(|rest| rest.split_once('\n'))
    else {
        // Manifests of format 1 had no digest line; they are another format, not damage.
        let old_format = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("format").and_then(toml::Value::as_integer))
            .is_some_and(|f| f < i64::from(STORE_FORMAT));
        return if old_format {
            ManifestState::OtherFormat
        } else {
            ManifestState::Damaged(format!("{MANIFEST} has no digest line"))
        };
    };
    if recorded != blake3::hash(body.as_bytes()).to_hex().as_str() {
        return ManifestState::Damaged(format!("{MANIFEST} does not match its own digest"));
    }
    let table: toml::Table = match toml::from_str(body) {
        Ok(t) => t,
        Err(e) => {
            return ManifestState::Damaged(format!(
                "{MANIFEST} does not parse: {}",
                e.message().trim()
            ))
        }
    };
    if table.get("format").and_then(toml::Value::as_integer) != Some(i64::from(STORE_FORMAT)) {
        return ManifestState::OtherFormat;
    }
    let manifest: Manifest = match table.try_into() {
        Ok(m) => m,
        Err(e) => {
            return ManifestState::Damaged(format!(
                "{MANIFEST} does not parse: {}",
                e.message().trim()
            ))
        }
    };
    if manifest.key != key {
        return ManifestState::Damaged(format!(
            "{MANIFEST} belongs to another entry ({})",
            manifest.key.chars().take(12).collect::<String>()
        ));
    }
    // The digest is no signature (anyone can recompute it): what the manifest names must
    // still stay inside its entry, as the run directory takes its file names from it.
    if let Some(f) = manifest.files.iter().find(|f| !is_plain_file_name(&f.file)) {
        return ManifestState::Damaged(format!(
            "{MANIFEST} names a file outside its entry: {}",
            f.file
        ));
    }
    // Digests become paths under cas/: nothing but a digest may be one.
    let bad_digest = manifest.files.iter().find_map(|f| {
        std::iter::once(f.blake3.as_str())
            .chain(f.parts.iter().map(|p| p.blob.as_str()))
            .find(|d| !cas::is_digest(d))
            .map(|d| (f.file.clone(), d.to_string()))
    });
    if let Some((file, digest)) = bad_digest {
        return ManifestState::Damaged(format!(
            "{MANIFEST} gives {file} a digest that is none: {digest:?}"
        ));
    }
    if let Some(f) = manifest
        .files
        .iter()
        .find(|f| f.is_assembled() && f.parts.iter().map(|p| p.len).sum::<u64>() != f.size)
    {
        return ManifestState::Damaged(format!(
            "{MANIFEST} stores {} in parts that do not add up to its size",
            f.file
        ));
    }
    ManifestState::Intact(Box::new(manifest))
}

/// A name that stays in its directory: no separator, not `.` or `..`, not the manifest.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != MANIFEST
        && !name.contains(['/', '\\', '\0'])
}

/// Whether `name` can be a key: 64 lower-case hex digits.
pub fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An entry as a person knows it: the stage, experiment and run that computed it.
pub fn describe_entry(key: &str, manifest: Option<&Manifest>) -> String {
    let short = &key[..12.min(key.len())];
    match manifest {
        Some(m) if !m.stage.is_empty() => {
            let run = if m.run.is_empty() {
                String::new()
            } else {
                format!(", computed in run {}", m.run)
            };
            format!(
                "stage {} of {} (kind {}, key {short}{run})",
                m.stage,
                m.experiment,
                m.kind,
                short = short
            )
        }
        Some(m) => format!("a {} result (key {short})", m.kind),
        None => format!("entry {short} (its manifest is unreadable)"),
    }
}

/// A manifest for tests: `files` as (name, file) with no sizes or digests, kind `test`.
#[cfg(test)]
pub(crate) fn test_manifest(files: &[(&str, &str)]) -> Manifest {
    Manifest {
        format: STORE_FORMAT,
        key: String::new(),
        kind: "test".into(),
        kind_version: 1,
        created: 0,
        duration_s: 0.0,
        files: files
            .iter()
            .map(|(name, file)| FileRecord {
                name: name.to_string(),
                file: file.to_string(),
                size: 0,
                blake3: String::new(),
                parts: Vec::new(),
                volatile: false,
            })
            .collect(),
        params: toml::Table::new(),
        inputs: BTreeMap::new(),
        external: BTreeMap::new(),
        notes: toml::Table::new(),
        metrics: BTreeMap::new(),
        stage: "s".into(),
        experiment: "e".into(),
        run: String::new(),
        platform: String::new(),
    }
}
