//! The device a run computes on, as recorded: its class (`cpu`, `cuda-fp32`, `cuda-tf32`) and
//! how it was chosen. Kinds read it through the registry; run records store it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The device a run computed on (`--device`): its class joins the keys of the stages whose
/// bytes depend on it (those whose kind says `device_dependent`), and outputs are compared
/// bit for bit only within one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// `cpu`, `cuda-fp32` or `cuda-tf32`.
    pub class: String,
    /// What was asked for: `cpu`, `cuda` or `auto`.
    pub requested: String,
    /// Why this device was chosen (always said for `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The device and its libraries: name, architecture, memory, driver, cuDNN, cuBLAS and
    /// NVRTC versions, where each library was loaded from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

/// The class of the CPU backend, the default.
pub const CPU_CLASS: &str = "cpu";

impl Default for DeviceRecord {
    fn default() -> Self {
        DeviceRecord {
            class: CPU_CLASS.to_string(),
            requested: CPU_CLASS.to_string(),
            reason: None,
            facts: BTreeMap::new(),
        }
    }
}
