//! A stage's cache key: the blake3 hash of everything its result depends on.

use std::collections::BTreeMap;

use crate::experiment::kind::Params;
use crate::hash::FieldHasher;

/// Everything that determines a stage's result. The stage's own name is not part of it:
/// two stages doing the same work on the same data share one result.
pub struct KeyParts<'a> {
    pub kind: &'a str,
    pub kind_version: u32,
    pub params: &'a Params,
    /// Input slot to the digest of the file connected to it.
    pub inputs: &'a BTreeMap<String, blake3::Hash>,
    /// Digest of the external data files read (names and bytes), if any.
    pub external: Option<blake3::Hash>,
    /// The outputs the stage promises, as (name, file): an entry made under another set of
    /// outputs cannot serve this one.
    pub outputs: &'a [(String, String)],
    /// The device class (`cpu`, `cuda-fp32`, ...) for a stage whose bytes depend on the
    /// device; `None` for the others. `None` and `cpu` give the keys from before devices
    /// existed.
    pub device: Option<&'a str>,
}

pub fn stage_key(parts: &KeyParts) -> blake3::Hash {
    let mut h = FieldHasher::new("pipeline.stage-key");
    h.str(parts.kind).u64(u64::from(parts.kind_version));
    let params = toml::Value::Table(parts.params.to_table());
    h.value(&params);
    h.u64(parts.inputs.len() as u64);
    for (slot, digest) in parts.inputs {
        h.str(slot).digest(digest);
    }
    h.u64(parts.outputs.len() as u64);
    for (name, file) in parts.outputs {
        h.str(name).str(file);
    }
    match &parts.external {
        Some(d) => h.str("external").digest(d),
        None => h.str("no-external"),
    };
    // The CPU is the class every key had before devices existed: its keys stay as they
    // were, so caches and locks made before keep serving.
    if let Some(class) = parts.device.filter(|c| *c != crate::device::CPU_CLASS) {
        h.str("device").str(class);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, toml::Value)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn key_changes_exactly_with_its_dependencies() {
        let p = params(&[("epochs", toml::Value::Integer(5))]);
        let inputs: BTreeMap<String, blake3::Hash> =
            [("x".to_string(), blake3::hash(b"data"))].into();
        let base = KeyParts {
            kind: "train",
            kind_version: 1,
            params: &p,
            inputs: &inputs,
            external: None,
            outputs: &[],
            device: None,
        };
        let k = stage_key(&base);
        assert_eq!(k, stage_key(&base), "same parts, same key");

        let v2 = KeyParts {
            kind_version: 2,
            ..base
        };
        assert_ne!(k, stage_key(&v2));

        let p2 = params(&[("epochs", toml::Value::Integer(6))]);
        assert_ne!(
            k,
            stage_key(&KeyParts {
                params: &p2,
                ..base
            })
        );

        let other_input: BTreeMap<String, blake3::Hash> =
            [("x".to_string(), blake3::hash(b"datb"))].into();
        assert_ne!(
            k,
            stage_key(&KeyParts {
                inputs: &other_input,
                ..base
            })
        );
        let renamed_slot: BTreeMap<String, blake3::Hash> =
            [("y".to_string(), blake3::hash(b"data"))].into();
        assert_ne!(
            k,
            stage_key(&KeyParts {
                inputs: &renamed_slot,
                ..base
            })
        );
        assert_ne!(
            k,
            stage_key(&KeyParts {
                external: Some(blake3::hash(b"files")),
                ..base
            })
        );
        assert_ne!(
            k,
            stage_key(&KeyParts {
                kind: "other",
                ..base
            })
        );
        // A device-dependent stage's key names its device class, and each class its own;
        // the CPU's is the key from before devices existed.
        let cpu = stage_key(&KeyParts {
            device: Some("cpu"),
            ..base
        });
        let gpu = stage_key(&KeyParts {
            device: Some("cuda-fp32"),
            ..base
        });
        let tf32 = stage_key(&KeyParts {
            device: Some("cuda-tf32"),
            ..base
        });
        assert_eq!(k, cpu);
        assert!(cpu != gpu && gpu != tf32 && tf32 != cpu);
    }
}
