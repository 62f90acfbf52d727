//! Raw cuDNN: a handle and descriptors owned by this backend. cudarc's safe wrappers keep
//! their handles crate-private, and pooling backward exists only as a raw call, so the
//! backend owns its handle and descriptors and calls cuDNN through `cudarc::cudnn::sys`.

use std::ffi::c_int;

use cudarc::cudnn::sys;
use cudarc::driver::CudaStream;

use super::{libs, GpuMath};
use crate::model::ModelError;

/// A cuDNN status as a result. A failure names the libraries that did not load, if any:
/// cuDNN opens its engine libraries itself, and one that cannot load shows only as a status
/// (`CUDNN_STATUS_NOT_INITIALIZED`, `..._SUBLIBRARY_LOADING_FAILED`), not as its `dlerror`.
pub(crate) fn status(what: &str, status: sys::cudnnStatus_t) -> Result<(), ModelError> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(ModelError::Device(format!(
            "cuDNN {what}: {status:?}{}",
            libs::failure_note(&libs::load_failures())
        )))
    }
}

/// A cuDNN handle bound to one stream. Not `Send`: cuDNN handles are per thread.
pub(crate) struct Handle(pub(crate) sys::cudnnHandle_t);

impl Handle {
    pub(crate) fn new(stream: &CudaStream) -> Result<Self, ModelError> {
        let mut h = std::ptr::null_mut();
        // SAFETY: `h` is valid for writes; the context is bound by the caller.
        status("create", unsafe { sys::cudnnCreate(&mut h) })?;
        let handle = Handle(h);
        // SAFETY: the handle is valid and the stream outlives it (both held by the caller).
        status("set stream", unsafe {
            sys::cudnnSetStream(handle.0, stream.cu_stream() as sys::cudaStream_t)
        })?;
        Ok(handle)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate, destroyed once.
        unsafe { sys::cudnnDestroy(self.0) };
    }
}

/// An NCHW fp32 tensor descriptor.
pub(crate) struct Tensor4d(pub(crate) sys::cudnnTensorDescriptor_t);

impl Tensor4d {
    pub(crate) fn nchw(n: usize, c: usize, h: usize, w: usize) -> Result<Self, ModelError> {
        let mut d = std::ptr::null_mut();
        // SAFETY: `d` is valid for writes.
        status("tensor descriptor", unsafe {
            sys::cudnnCreateTensorDescriptor(&mut d)
        })?;
        let desc = Tensor4d(d);
        // SAFETY: a fresh descriptor, set once.
        status("tensor descriptor", unsafe {
            sys::cudnnSetTensor4dDescriptor(
                desc.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                n as c_int,
                c as c_int,
                h as c_int,
                w as c_int,
            )
        })?;
        Ok(desc)
    }
}

impl Drop for Tensor4d {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// A KCRS (torchvision OIHW) 3x3 fp32 filter descriptor.
pub(crate) struct Filter(pub(crate) sys::cudnnFilterDescriptor_t);

impl Filter {
    pub(crate) fn kcrs3x3(c_out: usize, c_in: usize) -> Result<Self, ModelError> {
        let mut d = std::ptr::null_mut();
        // SAFETY: `d` is valid for writes.
        status("filter descriptor", unsafe {
            sys::cudnnCreateFilterDescriptor(&mut d)
        })?;
        let desc = Filter(d);
        // SAFETY: a fresh descriptor, set once.
        status("filter descriptor", unsafe {
            sys::cudnnSetFilter4dDescriptor(
                desc.0,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                c_out as c_int,
                c_in as c_int,
                3,
                3,
            )
        })?;
        Ok(desc)
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe { sys::cudnnDestroyFilterDescriptor(self.0) };
    }
}

/// A 3x3 cross-correlation, padding 1, stride 1, fp32 accumulation, with the math mode:
/// `CUDNN_FMA_MATH` (strict fp32) or `CUDNN_DEFAULT_MATH` (TF32 allowed).
pub(crate) struct Conv(pub(crate) sys::cudnnConvolutionDescriptor_t);

impl Conv {
    pub(crate) fn same3x3(math: GpuMath) -> Result<Self, ModelError> {
        let mut d = std::ptr::null_mut();
        // SAFETY: `d` is valid for writes.
        status("convolution descriptor", unsafe {
            sys::cudnnCreateConvolutionDescriptor(&mut d)
        })?;
        let desc = Conv(d);
        // SAFETY: a fresh descriptor, set once.
        status("convolution descriptor", unsafe {
            sys::cudnnSetConvolution2dDescriptor(
                desc.0,
                1,
                1,
                1,
                1,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
        })?;
        // For fp32 data, TF32 is what `CUDNN_DEFAULT_MATH` allows, not `CUDNN_TENSOR_OP_MATH`.
        // cuDNN's `cudnnMathType_t` reference (cuDNN 8's wording; the enum is the same in the
        // cuDNN 9 headers cudarc 0.19 binds): on A100 and newer, DEFAULT permits TF32 tensor
        // cores and FMA forbids them; TENSOR_OP permits tensor cores without converting data
        // types to reach them, and fp32 -> TF32 is such a conversion. (The legacy-API guide's
        // "set TENSOR_OP to get tensor cores" is about fp16 data.) PyTorch does the same in
        // `aten/src/ATen/cudnn/Descriptors.h`: an fp32 convolution gets DEFAULT when
        // `allow_tf32`, FMA when not. `NVIDIA_TF32_OVERRIDE=0` turns DEFAULT's TF32 off;
        // `gpu_check` prints it when set. The named algorithms below are among those the legacy
        // API runs on tensor cores (implicit precomputed gemm; backward data and filter
        // algorithm 1), and `gpu_check` prints the tf32/fp32 throughput ratio that shows
        // whether they did.
        let math_type = match math {
            GpuMath::Fp32 => sys::cudnnMathType_t::CUDNN_FMA_MATH,
            GpuMath::Tf32 => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        };
        // SAFETY: as above.
        status("math type", unsafe {
            sys::cudnnSetConvolutionMathType(desc.0, math_type)
        })?;
        Ok(desc)
    }
}

impl Drop for Conv {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe { sys::cudnnDestroyConvolutionDescriptor(self.0) };
    }
}

/// Max-pool 2x2, stride 2, no padding (floor), deterministic backward.
pub(crate) struct Pool(pub(crate) sys::cudnnPoolingDescriptor_t);

impl Pool {
    pub(crate) fn max2x2() -> Result<Self, ModelError> {
        let mut d = std::ptr::null_mut();
        // SAFETY: `d` is valid for writes.
        status("pooling descriptor", unsafe {
            sys::cudnnCreatePoolingDescriptor(&mut d)
        })?;
        let desc = Pool(d);
        // SAFETY: a fresh descriptor, set once.
        status("pooling descriptor", unsafe {
            sys::cudnnSetPooling2dDescriptor(
                desc.0,
                sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
                sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                2,
                2,
                0,
                0,
                2,
                2,
            )
        })?;
        Ok(desc)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe { sys::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

/// The algorithms, named: cudarc's `pick_algorithm` ignores determinism. All three are
/// deterministic; implicit precomputed gemm is cuDNN's usual fp32 NCHW choice, and
/// algorithm 1 is the deterministic one of each backward pass (algorithm 0 uses atomics).
pub(crate) const FWD_ALGO: sys::cudnnConvolutionFwdAlgo_t =
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
pub(crate) const BWD_DATA_ALGO: sys::cudnnConvolutionBwdDataAlgo_t =
    sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
pub(crate) const BWD_FILTER_ALGO: sys::cudnnConvolutionBwdFilterAlgo_t =
    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
