//! Finding the GPU and opening it: the libraries ([`super::libs`]), the driver, the device's
//! facts, a context, the kernels compiled for it. Every check that can fail comes before the
//! first cudarc call that would panic instead (cudarc panics when a library is missing).

use std::sync::Arc;

use cudarc::driver::{result as drv, sys as drv_sys, CudaContext};

use super::kernels::{self, Target};
use super::libs::{self, DRIVER, IN_ORDER};
use super::network::features;
use super::ops::Gpu;
use super::trainer::whole_network_trainer;
use super::{CudaUnavailable, DeviceFacts, GpuMath};
use crate::model::backend::{Backend, DeviceClass, FeatureExtractor, Trainer};
use crate::model::geometry::with_geometry;
use crate::model::head::head_trainer;
use crate::model::spec::{AdamSettings, HeadSpec, NetworkSpec};
use crate::model::weights::{BaseWeights, HeadWeights, ModelWeights};
use crate::model::ModelError;

/// The model on an NVIDIA GPU (device 0): the base through cuDNN and the NVRTC kernels; the
/// small head is the shared one, in dfdx on the host, as every backend runs it.
pub struct CudaBackend {
    pub(super) ctx: Arc<CudaContext>,
    /// The kernels, compiled for this GPU.
    pub(super) image: Vec<u8>,
    pub(super) math: GpuMath,
    facts: DeviceFacts,
}

fn driver_error(what: &str, e: drv::DriverError) -> CudaUnavailable {
    CudaUnavailable::because(format!("{what}: {e:?}"))
}

/// Loads the libraries and asks the driver for device 0, without creating a context (what
/// `--device auto` needs to decide). With `report_all`, every missing library is named;
/// without it, a machine without the NVIDIA driver is answered at once, without looking
/// for the other libraries (which may start `python3`).
pub fn probe(report_all: bool) -> Result<DeviceFacts, CudaUnavailable> {
    let mut earlier = Vec::new();
    let specs: &[libs::LibSpec] = if report_all {
        &IN_ORDER
    } else {
        let driver = libs::load_all(&[DRIVER]);
        if !driver.missing.is_empty() {
            return Err(CudaUnavailable {
                missing: driver.missing.iter().map(|m| m.to_string()).collect(),
                searched: driver.where_searched(),
            });
        }
        earlier = driver.loaded;
        // IN_ORDER starts with the driver, loaded above.
        &IN_ORDER[1..]
    };
    let mut report = libs::load_all(specs);
    if !report.missing.is_empty() {
        return Err(CudaUnavailable {
            missing: report.missing.iter().map(|m| m.to_string()).collect(),
            searched: report.where_searched(),
        });
    }
    earlier.append(&mut report.loaded);
    report.loaded = earlier;
    drv::init().map_err(|e| driver_error("the NVIDIA driver did not start (cuInit)", e))?;
    let count = drv::device::get_count().map_err(|e| driver_error("cuDeviceGetCount", e))?;
    if count < 1 {
        return Err(CudaUnavailable::because(
            "no CUDA device (the driver is installed, but it sees no GPU)",
        ));
    }
    let dev = drv::device::get(0).map_err(|e| driver_error("cuDeviceGet", e))?;
    let name = drv::device::get_name(dev).map_err(|e| driver_error("cuDeviceGetName", e))?;
    // SAFETY: `dev` is a valid device handle from the driver.
    let attr = |a| unsafe { drv::device::get_attribute(dev, a) };
    let major = attr(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(|e| driver_error("compute capability", e))?;
    let minor = attr(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        .map_err(|e| driver_error("compute capability", e))?;
    // SAFETY: as above.
    let memory =
        unsafe { drv::device::total_mem(dev) }.map_err(|e| driver_error("cuDeviceTotalMem", e))?;
    let mut driver_version = 0;
    // SAFETY: the pointer is valid for writes; the driver library is loaded.
    unsafe { drv_sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| driver_error("cuDriverGetVersion", e))?;
    let cudnn = cudarc::cudnn::result::get_version();
    let cublas = {
        use cudarc::cublas::sys::{cublasGetProperty, libraryPropertyType_t as P};
        let get = |p| {
            let mut v = 0;
            // SAFETY: the pointer is valid for writes; cuBLAS is loaded.
            unsafe { cublasGetProperty(p, &mut v) };
            v
        };
        format!(
            "{}.{}.{}",
            get(P::MAJOR_VERSION),
            get(P::MINOR_VERSION),
            get(P::PATCH_LEVEL)
        )
    };
    let (nv_major, nv_minor) =
        kernels::nvrtc_version().map_err(|e| CudaUnavailable::because(format!("NVRTC: {e}")))?;
    Ok(DeviceFacts {
        name,
        arch: format!("sm_{major}{minor}"),
        memory_bytes: memory as u64,
        driver: format!("{}.{}", driver_version / 1000, (driver_version % 1000) / 10),
        cudnn: format!(
            "{}.{}.{}",
            cudnn / 10000,
            (cudnn % 10000) / 100,
            cudnn % 100
        ),
        cublas,
        nvrtc: format!("{nv_major}.{nv_minor}"),
        libraries: report
            .loaded
            .iter()
            .map(|(what, from)| (what.to_string(), from.to_string()))
            .collect(),
    })
}

/// The kernels for a GPU of compute capability `major.minor`: a CUBIN for its `sm_XY`, or,
/// if this NVRTC does not know that architecture, PTX for `compute_XY`.
fn compile_kernels(major: i32, minor: i32) -> Result<Vec<u8>, String> {
    kernels::compile(Target::Cubin { major, minor }).or_else(|cubin_error| {
        kernels::compile(Target::Ptx { major, minor })
            .map_err(|ptx_error| format!("{cubin_error}; as PTX: {ptx_error}"))
    })
}

impl CudaBackend {
    /// Opens device 0 with `math`, or says why it cannot (naming every missing library).
    pub fn new(math: GpuMath) -> Result<Self, CudaUnavailable> {
        Self::open(math, probe(true)?)
    }

    /// Opens device 0 with `math` once [`probe`] has found it usable.
    pub fn open(math: GpuMath, facts: DeviceFacts) -> Result<Self, CudaUnavailable> {
        let ctx = CudaContext::new(0).map_err(|e| driver_error("cannot open device 0", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_error("compute capability", e))?;
        let image = compile_kernels(major, minor).map_err(|e| {
            CudaUnavailable::because(format!("NVRTC cannot compile the kernels: {e}"))
        })?;
        Ok(Self {
            ctx,
            image,
            math,
            facts,
        })
    }

    /// What was found about the device and its libraries.
    pub fn facts(&self) -> &DeviceFacts {
        &self.facts
    }

    pub fn math(&self) -> GpuMath {
        self.math
    }

    /// Free and total device memory, in bytes.
    pub fn memory(&self) -> Result<(usize, usize), ModelError> {
        self.ctx
            .mem_get_info()
            .map_err(|e| ModelError::device_call("cuMemGetInfo", e))
    }

    /// A new user's view of the device: a stream, a cuDNN handle, the kernels, a workspace.
    fn gpu(&self) -> Result<Gpu, ModelError> {
        Gpu::new(&self.ctx, &self.image, self.math)
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_class(&self) -> DeviceClass {
        match self.math {
            GpuMath::Fp32 => DeviceClass::CudaFp32,
            GpuMath::Tf32 => DeviceClass::CudaTf32,
        }
    }

    fn feature_extractor(
        &self,
        spec: NetworkSpec,
        weights: &BaseWeights,
    ) -> Result<Box<dyn FeatureExtractor>, ModelError> {
        with_geometry!(spec, features(self.gpu()?, spec, weights))
    }

    fn head_trainer(
        &self,
        head: HeadSpec,
        weights: &HeadWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError> {
        // The head on features is a few thousand multiply-adds per row: the shared head, in
        // dfdx on the host, bit for bit as the CPU backend trains it.
        head_trainer(head, weights, adam, class_weights, seed)
    }

    fn network_trainer(
        &self,
        spec: NetworkSpec,
        head: HeadSpec,
        weights: &ModelWeights,
        adam: AdamSettings,
        class_weights: Option<&[f64]>,
        seed: u64,
    ) -> Result<Box<dyn Trainer>, ModelError> {
        with_geometry!(
            spec,
            whole_network_trainer(self.gpu()?, spec, &head, weights, adam, class_weights, seed)
        )
    }
}
