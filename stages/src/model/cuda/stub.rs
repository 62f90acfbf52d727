//! The CUDA backend when the crate is built without its `cuda` feature: the same API, and
//! every constructor says that CUDA was not compiled in.

use super::{CudaUnavailable, DeviceFacts, GpuMath};

/// Stands in for the CUDA backend; it cannot be built.
pub enum CudaBackend {}

impl CudaBackend {
    pub fn new(_math: GpuMath) -> Result<Self, CudaUnavailable> {
        Err(not_compiled())
    }

    pub fn open(_math: GpuMath, _facts: DeviceFacts) -> Result<Self, CudaUnavailable> {
        Err(not_compiled())
    }

    pub fn facts(&self) -> &DeviceFacts {
        match *self {}
    }
}

fn not_compiled() -> CudaUnavailable {
    CudaUnavailable::because(
        "this build of pipeline has no CUDA support (built without the `cuda` feature of `stages`)",
    )
}

/// Always unavailable.
pub fn probe(_report_all: bool) -> Result<DeviceFacts, CudaUnavailable> {
    Err(not_compiled())
}
