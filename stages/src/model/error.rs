//! Errors of the model stage, each naming the file, tensor or size at fault.

use std::path::PathBuf;

/// A library's error kept as the cause of a [`ModelError`].
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong building, loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("image size {size} is not supported; supported sizes: {supported}")]
    UnsupportedImageSize { size: u32, supported: String },
    #[error("head units {units} not supported; supported: {supported}")]
    UnsupportedUnits { units: usize, supported: String },
    #[error("a head needs at least 2 classes, not {0}")]
    TooFewClasses(usize),
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
    /// A device failure with no library error behind it (a reserved workspace too small, a
    /// gradient that was not computed).
    #[error("device error: {0}")]
    Device(String),
    /// A call into a device library (the CUDA driver, cuBLAS, NVRTC) failed: `what` names the
    /// call, `source` is the library's own error.
    #[error("device error: {what}: {source}")]
    DeviceCall {
        what: String,
        #[source]
        source: SourceError,
    },
    /// The training loss could not be computed (a label that names no class).
    #[error("loss: {0}")]
    Loss(String),
    /// A device cannot do this yet (named in the message).
    #[error("{0}")]
    Unsupported(String),
    /// dfdx on the host failed (allocating or shaping a tensor).
    #[error("device error: {0}")]
    Host(#[from] dfdx::tensor::CpuError),
    /// dfdx's Adam could not update the parameters.
    #[error("device error: {0:?}")]
    AdamUpdate(#[source] dfdx::optim::OptimizerUpdateError<dfdx::tensor::CpuError>),
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

impl ModelError {
    /// A failed device call `what`, keeping the library's error `source`.
    pub fn device_call(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ModelError::DeviceCall {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// Bytes as `1.2 GiB` / `340 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_in_mib_or_gib_and_device_calls_keep_their_source() {
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(340 << 20), "340 MiB");
        let cause = std::io::Error::other("out of memory");
        let e = ModelError::device_call("cuMemAlloc", cause);
        assert_eq!(e.to_string(), "device error: cuMemAlloc: out of memory");
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(source.to_string(), "out of memory");
        let host = ModelError::from(dfdx::tensor::CpuError::OutOfMemory);
        assert_eq!(host.to_string(), "device error: CpuError::OutOfMemory");
        assert!(std::error::Error::source(&host).is_some());
    }
}
