//! Errors of the model stage, each naming the file, tensor or size at fault.

use std::path::PathBuf;

use super::cuda::plan::human_bytes;

/// Everything that can go wrong building, loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("image size {size} is not supported; supported sizes: {supported}")]
    UnsupportedImageSize { size: u32, supported: String },
    #[error("head units {units} not supported; supported: {supported}")]
    UnsupportedUnits { units: usize, supported: String },
    #[error("head dropout {0} is outside [0, 1)")]
    InvalidDropout(f32),
    #[error("pooling \"avg4\" needs a base output of at least 4x4, but {size}x{size} images give {base_out}x{base_out}; use pooling = \"global\"")]
    PoolingTooLarge { size: usize, base_out: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {detail}")]
    Safetensors { path: PathBuf, detail: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` has dtype {found}, expected F32")]
    DtypeMismatch {
        path: PathBuf,
        name: String,
        found: String,
    },
    #[error("{path}: checkpoint metadata `{key}`: {detail}")]
    Metadata {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("{what}: got {got} values, expected {expected} ({detail})")]
    InputLength {
        what: &'static str,
        got: usize,
        expected: usize,
        detail: String,
    },
    #[error("device error: {0}")]
    Device(String),
    #[error("{batch} images of {side}x{side} need about {} of GPU memory for {}, but only {} of {} is free: lower the batch size, or free the GPU", human_bytes(*need), if *training { "training" } else { "inference" }, human_bytes(*free), human_bytes(*total))]
    DeviceMemory {
        batch: usize,
        side: usize,
        training: bool,
        /// Bytes (numbers, not text, to keep the error small).
        need: u64,
        free: u64,
        total: u64,
    },
}
