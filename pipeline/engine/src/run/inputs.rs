//! What a stage's key is computed from during a run: the outputs of earlier stages connected
//! to its input slots, and the external data files it reads, hashed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::RunError;
use super::fingerprint::{stage_key, KeyParts};
use crate::experiment::kind::StageKind;
use crate::experiment::Stage;
use crate::hash::{digest_of_files, FileDigest};
use crate::store::cas::Part;
use crate::store::checked::{hash_files, CheckedFiles};

/// An output of an earlier stage, ready to be read by later ones.
#[derive(Debug, Clone)]
pub(crate) struct Available {
    pub path: PathBuf,
    pub digest: blake3::Hash,
    pub size: u64,
    /// How the store holds it (its whole blob, or parts of blobs).
    pub stored: Vec<Part>,
}

/// The external data a stage reads, hashed.
pub(crate) struct External {
    pub files: Vec<FileDigest>,
    pub digest: blake3::Hash,
}

/// Lists and hashes the data files a stage reads; `None` when it reads none.
pub(crate) fn external_data(
    stage: &Stage,
    kind: &dyn StageKind,
    data_root: &Path,
    checked: &CheckedFiles,
) -> Result<Option<External>, RunError> {
    let paths = kind
        .external_files(&stage.params, data_root)
        .map_err(|source| RunError::Stage {
            stage: stage.name.clone(),
            source,
        })?;
    if paths.is_empty() {
        return Ok(None);
    }
    let named: Vec<(String, PathBuf)> = paths
        .into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(data_root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            (name, p)
        })
        .collect();
    let files = hash_files(&named, Some(checked)).map_err(|(path, source)| RunError::External {
        stage: stage.name.clone(),
        path,
        source,
    })?;
    let digest = digest_of_files(&files);
    Ok(Some(External { files, digest }))
}

/// Input slot to the digest and path of what is connected to it, if every input is known.
pub(crate) fn connect_inputs(
    stage: &Stage,
    available: &BTreeMap<String, Available>,
) -> Result<BTreeMap<String, Available>, RunError> {
    stage
        .inputs
        .iter()
        .map(|(slot, from)| {
            available
                .get(&from.to_string())
                .map(|a| (slot.clone(), a.clone()))
                .ok_or_else(|| RunError::MissingInput {
                    stage: stage.name.clone(),
                    slot: slot.clone(),
                    from: from.to_string(),
                })
        })
        .collect()
}

pub(crate) fn key_of(
    stage: &Stage,
    kind: &dyn StageKind,
    inputs: &BTreeMap<String, Available>,
    external: Option<&External>,
    device: Option<&str>,
) -> blake3::Hash {
    let digests: BTreeMap<String, blake3::Hash> = inputs
        .iter()
        .map(|(slot, a)| (slot.clone(), a.digest))
        .collect();
    let outputs: Vec<(String, String)> = stage
        .outputs
        .iter()
        .map(|o| (o.name.clone(), o.file.clone()))
        .collect();
    stage_key(&KeyParts {
        kind: kind.name(),
        kind_version: kind.version(),
        params: &stage.params,
        inputs: &digests,
        external: external.map(|e| e.digest),
        outputs: &outputs,
        device,
    })
}
