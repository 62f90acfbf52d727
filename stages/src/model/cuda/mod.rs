//! The CUDA backend: the same VGG16 (layer table, compile-time shape chain, checkpoints) on an
//! NVIDIA GPU through cudarc 0.19, with cuDNN for convolutions and pooling and small NVRTC
//! kernels for the rest. dfdx stays the CPU engine and the numerical reference; its own
//! `cuda` feature is not used (it needs nvcc at build time and keeps tensor memory private).
//!
//! # Pieces
//! - [`libs`]: finding cuDNN, cuBLAS, NVRTC and the driver, and preloading them, before
//!   cudarc (which opens them by bare name, and panics when it cannot) is asked for them.
//! - [`plan`]: the layer plan and memory needs; [`shape`]: the compile-time checks of the
//!   chain; [`layout`]: host <-> GPU layouts (NHWC <-> NCHW, the packed parameter buffer).
//! - [`kernels`]: the NVRTC kernels' source (bias + ReLU, ReLU backward, bias gradient,
//!   the head's average pool, Adam), compiled at start-up for the GPU at hand.
//! - With the `cuda` feature: `device` (probe, context, handles), `cudnn` (raw cuDNN
//!   descriptors), `tensor` (GPU buffers typed with dfdx's shapes), `ops`, `network`
//!   (the layer loops over the plan, and the feature extractor) and `trainer` (fine-tuning:
//!   base on the GPU, the shared head on the host). Without it, [`CudaBackend::new`] says
//!   CUDA was not compiled in.
//!
//! # Numerics
//! - `fp32` (the default): cuDNN with `CUDNN_FMA_MATH` (no TF32 tensor cores), kernels
//!   compiled without contraction; `tf32` is opt-in (`--gpu-math tf32`) and recorded.
//! - Deterministic: named cuDNN algorithms (implicit precomputed gemm forward, algorithm 1
//!   for both backward passes, deterministic max-pool backward), no atomics in our kernels,
//!   one stream. A rerun on the same GPU is bit-identical; against the CPU, results agree
//!   within the tolerances `tools/gpu-check.sh` checks.

pub mod kernels;
pub mod layout;
pub mod libs;
pub mod plan;
pub mod shape;

#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
mod cudnn;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod network;
#[cfg(feature = "cuda")]
pub mod ops;
#[cfg(feature = "cuda")]
pub mod tensor;
#[cfg(feature = "cuda")]
mod trainer;

#[cfg(feature = "cuda")]
pub use device::{probe, CudaBackend};
#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub use stub::{probe, CudaBackend};

use std::fmt;

/// How the GPU computes fp32 convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GpuMath {
    /// IEEE fp32 with FMAs, no TF32 tensor cores: the default.
    #[default]
    Fp32,
    /// TF32 tensor cores (10-bit mantissa products): faster, about 1e-3 relative error.
    Tf32,
}

impl GpuMath {
    pub const NAMES: [&'static str; 2] = ["fp32", "tf32"];

    pub fn name(self) -> &'static str {
        match self {
            GpuMath::Fp32 => "fp32",
            GpuMath::Tf32 => "tf32",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fp32" => Some(GpuMath::Fp32),
            "tf32" => Some(GpuMath::Tf32),
            _ => None,
        }
    }
}

/// What was found about the GPU and its libraries: recorded in `run.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `sm_90`.
    pub arch: String,
    pub memory_bytes: u64,
    /// The CUDA version the driver supports, `13.0`.
    pub driver: String,
    /// `9.13.0`.
    pub cudnn: String,
    pub cublas: String,
    pub nvrtc: String,
    /// Where each library was loaded from.
    pub libraries: Vec<(String, String)>,
}

/// Why the GPU cannot be used: what is missing and where it was looked for. One line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CudaUnavailable {
    /// `the NVIDIA driver (libcuda.so.1 or libcuda.so)`, `cuDNN 9 (libcudnn.so.9)`, or a
    /// failed step (`no CUDA device`).
    pub missing: Vec<String>,
    /// Where the libraries were looked for; empty when not a library problem.
    pub searched: String,
}

impl fmt::Display for CudaUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CUDA is not usable: {}", self.missing.join("; "))?;
        if !self.searched.is_empty() {
            write!(
                f,
                " (looked in {}; set PIPELINE_CUDA_LIB_DIRS to the folders holding them)",
                self.searched
            )?;
        }
        Ok(())
    }
}

impl CudaUnavailable {
    /// A failure that is not about a library (no device, a driver error).
    pub fn because(what: impl Into<String>) -> Self {
        Self {
            missing: vec![what.into()],
            searched: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unavailable_message_is_one_line_naming_what_and_where() {
        let e = CudaUnavailable {
            missing: vec![
                "cuDNN 9 (libcudnn.so.9)".into(),
                "NVRTC 13 (libnvrtc.so.13)".into(),
            ],
            searched: "PIPELINE_CUDA_LIB_DIRS (unset), the system search path".into(),
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "CUDA is not usable: cuDNN 9 (libcudnn.so.9); NVRTC 13 (libnvrtc.so.13) (looked in PIPELINE_CUDA_LIB_DIRS (unset), the system search path; set PIPELINE_CUDA_LIB_DIRS to the folders holding them)"
        );
        assert!(!text.contains('\n'));
        assert_eq!(
            CudaUnavailable::because("no CUDA device").to_string(),
            "CUDA is not usable: no CUDA device"
        );
        for name in GpuMath::NAMES {
            assert_eq!(GpuMath::from_name(name).unwrap().name(), name);
        }
        assert_eq!(GpuMath::default(), GpuMath::Fp32);
    }
}
