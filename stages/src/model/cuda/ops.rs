//! The GPU operations of the base, each on typed buffers ([`super::tensor`]) so that a
//! wrong size does not compile: convolution forward (+ bias + ReLU), its input, weight and
//! bias gradients, max-pool 2x2 forward and backward (cuDNN), the head's average pool forward
//! and backward, and Adam (NVRTC kernels).
//!
//! [`Gpu`] is one user's view of the device: a stream, a cuDNN handle on it, the kernels and a
//! workspace. Everything runs on its one stream, in order.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cudnn::sys as dnn;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use dfdx::shapes::Const;

use super::cudnn::{self, Conv, Filter, Handle, Pool, Tensor4d};
use super::layout::ParamArena;
use super::plan::WORKSPACE_BYTES;
use super::shape::{AvgPoolToOne, MaxPool2x2};
use super::tensor::{Activation, GpuTensor, Map, Rows};
use super::GpuMath;
use crate::model::ModelError;

fn dev_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> ModelError {
    ModelError::device_call(what, e)
}

/// The NVRTC kernels, loaded.
struct Kernels {
    bias_relu: CudaFunction,
    relu_backward: CudaFunction,
    bias_grad: CudaFunction,
    avg_pool_forward: CudaFunction,
    avg_pool_backward: CudaFunction,
    adam: CudaFunction,
}

/// The device as one extractor or trainer uses it.
pub struct Gpu {
    pub(crate) stream: Arc<CudaStream>,
    dnn: Handle,
    kernels: Kernels,
    math: GpuMath,
    workspace: CudaSlice<u8>,
}

/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;

fn grid_for(len: usize) -> LaunchConfig {
    // Grid-stride loops: enough blocks to fill any current GPU, capped.
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches kernel `$f` of `$gpu` with `$cfg` and the arguments in order.
macro_rules! launch {
    ($gpu:expr, $f:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $gpu.stream.launch_builder($f);
        $(b.arg($arg);)+
        // SAFETY: each call site passes the arguments its kernel declares, with buffers of
        // the lengths it reads and writes.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(|e| dev_err("kernel launch", e))
    }};
}

impl Gpu {
    /// A stream, cuDNN handle, the kernels from `image` (CUBIN or PTX) and the workspace.
    pub fn new(ctx: &Arc<CudaContext>, image: &[u8], math: GpuMath) -> Result<Self, ModelError> {
        let stream = ctx.new_stream().map_err(|e| dev_err("new stream", e))?;
        let dnn = Handle::new(&stream)?;
        let ptx = if image.starts_with(b"\x7fELF") {
            cudarc::nvrtc::Ptx::from_binary(image.to_vec())
        } else {
            cudarc::nvrtc::Ptx::from_src(String::from_utf8_lossy(image).trim_end_matches('\0'))
        };
        let module = ctx
            .load_module(ptx)
            .map_err(|e| dev_err("load kernels", e))?;
        let f = |name| module.load_function(name).map_err(|e| dev_err(name, e));
        let kernels = Kernels {
            bias_relu: f("bias_relu_nchw")?,
            relu_backward: f("relu_backward")?,
            bias_grad: f("bias_grad_nchw")?,
            avg_pool_forward: f("avg_pool_forward")?,
            avg_pool_backward: f("avg_pool_backward")?,
            adam: f("adam_step")?,
        };
        // SAFETY: u8 workspace, written by cuDNN before it is read.
        let workspace = unsafe { stream.alloc::<u8>(WORKSPACE_BYTES as usize) }
            .map_err(|e| dev_err("workspace", e))?;
        Ok(Self {
            stream,
            dnn,
            kernels,
            math,
            workspace,
        })
    }

    /// Uninitialised device memory for `len` values.
    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>, ModelError> {
        // SAFETY: every buffer allocated here is fully written by the op that asked for it
        // before anything reads it.
        unsafe { self.stream.alloc::<f32>(len) }.map_err(|e| dev_err("cuMemAlloc", e))
    }

    /// A buffer of zeros.
    pub fn zeros(&self, len: usize) -> Result<CudaSlice<f32>, ModelError> {
        self.stream
            .alloc_zeros::<f32>(len)
            .map_err(|e| dev_err("cuMemAlloc", e))
    }

    /// Host values to a new device buffer.
    pub fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>, ModelError> {
        self.stream
            .clone_htod(host)
            .map_err(|e| dev_err("copy to the GPU", e))
    }

    /// A device buffer back to the host (waits for the stream).
    pub fn download(&self, dev: &CudaSlice<f32>) -> Result<Vec<f32>, ModelError> {
        self.stream
            .clone_dtoh(dev)
            .map_err(|e| dev_err("copy from the GPU", e))
    }

    /// NCHW images (already transposed on the host) as a typed map.
    pub fn images<const H: usize>(&self, nchw: &[f32], n: usize) -> Result<Map<3, H>, ModelError> {
        assert_eq!(nchw.len(), n * 3 * H * H, "image buffer length");
        Ok(GpuTensor {
            data: self.upload(nchw)?,
            shape: (n, Const, Const, Const),
        })
    }

    /// A typed map from a device buffer of the right length.
    pub fn map<const C: usize, const H: usize>(
        data: CudaSlice<f32>,
        n: usize,
    ) -> Result<Map<C, H>, ModelError> {
        if data.len() != n * C * H * H {
            return Err(ModelError::InputLength {
                what: "GPU map",
                got: data.len(),
                expected: n * C * H * H,
                detail: format!("{n} x {C} x {H} x {H}"),
            });
        }
        Ok(GpuTensor {
            data,
            shape: (n, Const, Const, Const),
        })
    }

    /// 3x3 convolution (padding 1) of `x` with the `layer`-th weights of the arena `params`,
    /// then bias and ReLU: `[n, CI, H, H] -> [n, CO, H, H]`.
    pub fn conv_relu<const CI: usize, const CO: usize, const H: usize>(
        &self,
        x: &Map<CI, H>,
        params: &CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
    ) -> Result<Map<CO, H>, ModelError> {
        let n = x.batch();
        Gpu::map(
            self.conv_relu_sized(&x.data, n, CI, CO, H, params, arena, layer)?,
            n,
        )
    }

    /// [`Gpu::conv_relu`] on a map whose sizes are known at run time (from the layer table).
    pub fn conv_relu_dyn(
        &self,
        x: &Activation,
        c_out: usize,
        params: &CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
    ) -> Result<Activation, ModelError> {
        let (n, c_in, side) = (x.batch(), x.channels(), x.side());
        let y = self.conv_relu_sized(&x.data, n, c_in, c_out, side, params, arena, layer)?;
        Activation::new(y, n, c_out, side)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_relu_sized(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        ci: usize,
        co: usize,
        h: usize,
        params: &CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
    ) -> Result<CudaSlice<f32>, ModelError> {
        let (w_at, w_len, b_at, b_len) = arena.convs[layer];
        assert_eq!((w_len, b_len), (co * ci * 9, co), "layer {layer} shapes");
        assert_eq!(x.len(), n * ci * h * h, "layer {layer} input length");
        let xd = Tensor4d::nchw(n, ci, h, h)?;
        let yd = Tensor4d::nchw(n, co, h, h)?;
        let wd = Filter::kcrs3x3(co, ci)?;
        let cd = Conv::same3x3(self.math)?;
        let mut y = self.alloc(n * co * h * h)?;
        {
            let w = params.slice(w_at..w_at + w_len);
            let (xp, _rx) = x.device_ptr(&self.stream);
            let (wp, _rw) = w.device_ptr(&self.stream);
            let (yp, _ry) = y.device_ptr_mut(&self.stream);
            let (ws, _rws) = self.workspace_ptr();
            let (alpha, beta) = (1.0f32, 0.0f32);
            // SAFETY: descriptors match the buffers' shapes; the workspace is
            // WORKSPACE_BYTES long, which `check_workspace` has compared with cuDNN's need.
            cudnn::status("convolution forward", unsafe {
                dnn::cudnnConvolutionForward(
                    self.dnn.0,
                    &alpha as *const f32 as *const c_void,
                    xd.0,
                    xp as *const c_void,
                    wd.0,
                    wp as *const c_void,
                    cd.0,
                    cudnn::FWD_ALGO,
                    ws as *mut c_void,
                    WORKSPACE_BYTES as usize,
                    &beta as *const f32 as *const c_void,
                    yd.0,
                    yp as *mut c_void,
                )
            })?;
        }
        let bias = params.slice(b_at..b_at + b_len);
        let (n_i, c_i, hw) = (n as i32, co as i32, (h * h) as i32);
        launch!(
            self,
            &self.kernels.bias_relu,
            grid_for(n * co * h * h),
            &mut y,
            &bias,
            &n_i,
            &c_i,
            &hw
        )?;
        Ok(y)
    }

    fn workspace_ptr(&self) -> (u64, cudarc::driver::SyncOnDrop<'_>) {
        self.workspace.device_ptr(&self.stream)
    }

    /// The workspace each named algorithm needs for this layer and batch, checked against
    /// what was reserved (an error naming the layer, never a silent fallback).
    pub fn check_workspace(
        &self,
        n: usize,
        c_in: usize,
        c_out: usize,
        side: usize,
        training: bool,
    ) -> Result<(), ModelError> {
        let xd = Tensor4d::nchw(n, c_in, side, side)?;
        let yd = Tensor4d::nchw(n, c_out, side, side)?;
        let wd = Filter::kcrs3x3(c_out, c_in)?;
        let cd = Conv::same3x3(self.math)?;
        let mut need = 0usize;
        let mut size = 0usize;
        // SAFETY: valid descriptors; `size` is valid for writes.
        cudnn::status("forward workspace", unsafe {
            dnn::cudnnGetConvolutionForwardWorkspaceSize(
                self.dnn.0,
                xd.0,
                wd.0,
                cd.0,
                yd.0,
                cudnn::FWD_ALGO,
                &mut size,
            )
        })?;
        need = need.max(size);
        if training {
            // SAFETY: as above.
            cudnn::status("backward data workspace", unsafe {
                dnn::cudnnGetConvolutionBackwardDataWorkspaceSize(
                    self.dnn.0,
                    wd.0,
                    yd.0,
                    cd.0,
                    xd.0,
                    cudnn::BWD_DATA_ALGO,
                    &mut size,
                )
            })?;
            need = need.max(size);
            // SAFETY: as above.
            cudnn::status("backward filter workspace", unsafe {
                dnn::cudnnGetConvolutionBackwardFilterWorkspaceSize(
                    self.dnn.0,
                    xd.0,
                    yd.0,
                    cd.0,
                    wd.0,
                    cudnn::BWD_FILTER_ALGO,
                    &mut size,
                )
            })?;
            need = need.max(size);
        }
        if need as u64 > WORKSPACE_BYTES {
            return Err(ModelError::Device(format!(
                "cuDNN needs a {need}-byte workspace for a {c_in}->{c_out} convolution on {n} maps of {side}x{side}, more than the {WORKSPACE_BYTES} reserved"
            )));
        }
        Ok(())
    }

    /// The gradients of a conv + bias + ReLU layer. `dy` holds the gradient at the ReLU's
    /// output and is turned in place into the gradient at its input (`y` is the ReLU's
    /// output); the weight and bias gradients are written into the arena `grads`; the input
    /// gradient is returned unless `need_input_grad` is false (the first layer).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_relu_backward<const CI: usize, const CO: usize, const H: usize>(
        &self,
        x: &Map<CI, H>,
        y: &Map<CO, H>,
        mut dy: Map<CO, H>,
        params: &CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
        need_input_grad: bool,
    ) -> Result<Option<Map<CI, H>>, ModelError> {
        let n = x.batch();
        let sizes = (n, CI, CO, H);
        let dx = self.conv_relu_backward_sized(
            &x.data,
            &y.data,
            &mut dy.data,
            sizes,
            params,
            grads,
            arena,
            layer,
            need_input_grad,
        )?;
        dx.map(|dx| Gpu::map(dx, n)).transpose()
    }

    /// [`Gpu::conv_relu_backward`] on maps whose sizes are known at run time.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_relu_backward_dyn(
        &self,
        x: &Activation,
        y: &Activation,
        mut dy: Activation,
        params: &CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
        need_input_grad: bool,
    ) -> Result<Option<Activation>, ModelError> {
        let (n, c_in, side) = (x.batch(), x.channels(), x.side());
        let sizes = (n, c_in, y.channels(), side);
        let dx = self.conv_relu_backward_sized(
            &x.data,
            &y.data,
            &mut dy.data,
            sizes,
            params,
            grads,
            arena,
            layer,
            need_input_grad,
        )?;
        dx.map(|dx| Activation::new(dx, n, c_in, side)).transpose()
    }

    /// The body of both: `sizes` is `(batch, channels in, channels out, side)`.
    #[allow(clippy::too_many_arguments)]
    fn conv_relu_backward_sized(
        &self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &mut CudaSlice<f32>,
        (n, ci, co, h): (usize, usize, usize, usize),
        params: &CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        arena: &ParamArena,
        layer: usize,
        need_input_grad: bool,
    ) -> Result<Option<CudaSlice<f32>>, ModelError> {
        let (w_at, w_len, b_at, b_len) = arena.convs[layer];
        assert_eq!((w_len, b_len), (co * ci * 9, co), "layer {layer} shapes");
        let len = (n * co * h * h) as i64;
        assert_eq!(
            (x.len(), y.len(), dy.len()),
            (n * ci * h * h, len as usize, len as usize),
            "layer {layer} lengths"
        );
        launch!(
            self,
            &self.kernels.relu_backward,
            grid_for(len as usize),
            &mut *dy,
            y,
            &len
        )?;
        let (n_i, c_i, hw) = (n as i32, co as i32, (h * h) as i32);
        {
            let mut db = grads.slice_mut(b_at..b_at + b_len);
            let cfg = LaunchConfig {
                grid_dim: (co as u32, 1, 1),
                block_dim: (super::kernels::REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(
                self,
                &self.kernels.bias_grad,
                cfg,
                &*dy,
                &mut db,
                &n_i,
                &c_i,
                &hw
            )?;
        }
        let xd = Tensor4d::nchw(n, ci, h, h)?;
        let yd = Tensor4d::nchw(n, co, h, h)?;
        let wd = Filter::kcrs3x3(co, ci)?;
        let cd = Conv::same3x3(self.math)?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        {
            let mut dw = grads.slice_mut(w_at..w_at + w_len);
            let (xp, _rx) = x.device_ptr(&self.stream);
            let (dyp, _rdy) = dy.device_ptr(&self.stream);
            let (dwp, _rdw) = dw.device_ptr_mut(&self.stream);
            let (ws, _rws) = self.workspace_ptr();
            // SAFETY: descriptors match the buffers; workspace checked by `check_workspace`.
            cudnn::status("convolution backward filter", unsafe {
                dnn::cudnnConvolutionBackwardFilter(
                    self.dnn.0,
                    &alpha as *const f32 as *const c_void,
                    xd.0,
                    xp as *const c_void,
                    yd.0,
                    dyp as *const c_void,
                    cd.0,
                    cudnn::BWD_FILTER_ALGO,
                    ws as *mut c_void,
                    WORKSPACE_BYTES as usize,
                    &beta as *const f32 as *const c_void,
                    wd.0,
                    dwp as *mut c_void,
                )
            })?;
        }
        if !need_input_grad {
            return Ok(None);
        }
        let mut dx = self.alloc(n * ci * h * h)?;
        {
            let w = params.slice(w_at..w_at + w_len);
            let (wp, _rw) = w.device_ptr(&self.stream);
            let (dyp, _rdy) = dy.device_ptr(&self.stream);
            let (dxp, _rdx) = dx.device_ptr_mut(&self.stream);
            let (ws, _rws) = self.workspace_ptr();
            // SAFETY: as above.
            cudnn::status("convolution backward data", unsafe {
                dnn::cudnnConvolutionBackwardData(
                    self.dnn.0,
                    &alpha as *const f32 as *const c_void,
                    wd.0,
                    wp as *const c_void,
                    yd.0,
                    dyp as *const c_void,
                    cd.0,
                    cudnn::BWD_DATA_ALGO,
                    ws as *mut c_void,
                    WORKSPACE_BYTES as usize,
                    &beta as *const f32 as *const c_void,
                    xd.0,
                    dxp as *mut c_void,
                )
            })?;
        }
        Ok(Some(dx))
    }

    /// Max-pool 2x2, stride 2, floor: `[n, C, H, H] -> [n, C, OH, OH]`, `OH = H / 2` checked
    /// at compile time.
    #[allow(clippy::let_unit_value)]
    pub fn max_pool<const C: usize, const H: usize, const OH: usize>(
        &self,
        x: &Map<C, H>,
    ) -> Result<Map<C, OH>, ModelError> {
        let () = MaxPool2x2::<H, OH>::CHECK;
        let n = x.batch();
        Gpu::map(self.max_pool_sized(&x.data, n, C, H)?, n)
    }

    /// [`Gpu::max_pool`] on a map whose sizes are known at run time.
    pub fn max_pool_dyn(&self, x: &Activation) -> Result<Activation, ModelError> {
        let (n, c, side) = (x.batch(), x.channels(), x.side());
        Activation::new(self.max_pool_sized(&x.data, n, c, side)?, n, c, side / 2)
    }

    fn max_pool_sized(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        c: usize,
        h: usize,
    ) -> Result<CudaSlice<f32>, ModelError> {
        let oh = h / 2;
        assert_eq!(x.len(), n * c * h * h, "max-pool input length");
        let xd = Tensor4d::nchw(n, c, h, h)?;
        let yd = Tensor4d::nchw(n, c, oh, oh)?;
        let pd = Pool::max2x2()?;
        let mut y = self.alloc(n * c * oh * oh)?;
        {
            let (xp, _rx) = x.device_ptr(&self.stream);
            let (yp, _ry) = y.device_ptr_mut(&self.stream);
            let (alpha, beta) = (1.0f32, 0.0f32);
            // SAFETY: descriptors match the buffers.
            cudnn::status("max-pool forward", unsafe {
                dnn::cudnnPoolingForward(
                    self.dnn.0,
                    pd.0,
                    &alpha as *const f32 as *const c_void,
                    xd.0,
                    xp as *const c_void,
                    &beta as *const f32 as *const c_void,
                    yd.0,
                    yp as *mut c_void,
                )
            })?;
        }
        Ok(y)
    }

    /// The gradient at a max-pool's input from the one at its output (`x` its input, `y`
    /// its output).
    #[allow(clippy::let_unit_value)]
    pub fn max_pool_backward<const C: usize, const H: usize, const OH: usize>(
        &self,
        x: &Map<C, H>,
        y: &Map<C, OH>,
        dy: &Map<C, OH>,
    ) -> Result<Map<C, H>, ModelError> {
        let () = MaxPool2x2::<H, OH>::CHECK;
        let n = x.batch();
        Gpu::map(
            self.max_pool_backward_sized(&x.data, &y.data, &dy.data, n, C, H)?,
            n,
        )
    }

    /// [`Gpu::max_pool_backward`] on maps whose sizes are known at run time.
    pub fn max_pool_backward_dyn(
        &self,
        x: &Activation,
        y: &Activation,
        dy: &Activation,
    ) -> Result<Activation, ModelError> {
        let (n, c, side) = (x.batch(), x.channels(), x.side());
        let dx = self.max_pool_backward_sized(&x.data, &y.data, &dy.data, n, c, side)?;
        Activation::new(dx, n, c, side)
    }

    fn max_pool_backward_sized(
        &self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        n: usize,
        c: usize,
        h: usize,
    ) -> Result<CudaSlice<f32>, ModelError> {
        let oh = h / 2;
        assert_eq!(
            (x.len(), y.len(), dy.len()),
            (n * c * h * h, n * c * oh * oh, n * c * oh * oh),
            "max-pool backward lengths"
        );
        let xd = Tensor4d::nchw(n, c, h, h)?;
        let yd = Tensor4d::nchw(n, c, oh, oh)?;
        let pd = Pool::max2x2()?;
        // Zeros: with an odd side the last row and column get no gradient.
        let mut dx = self.zeros(n * c * h * h)?;
        {
            let (xp, _rx) = x.device_ptr(&self.stream);
            let (yp, _ry) = y.device_ptr(&self.stream);
            let (dyp, _rdy) = dy.device_ptr(&self.stream);
            let (dxp, _rdx) = dx.device_ptr_mut(&self.stream);
            let (alpha, beta) = (1.0f32, 0.0f32);
            // SAFETY: descriptors match the buffers.
            cudnn::status("max-pool backward", unsafe {
                dnn::cudnnPoolingBackward(
                    self.dnn.0,
                    pd.0,
                    &alpha as *const f32 as *const c_void,
                    yd.0,
                    yp as *const c_void,
                    yd.0,
                    dyp as *const c_void,
                    xd.0,
                    xp as *const c_void,
                    &beta as *const f32 as *const c_void,
                    xd.0,
                    dxp as *mut c_void,
                )
            })?;
        }
        Ok(dx)
    }

    /// The head's average pool `K x K` (top-left window, floor) to one value per channel:
    /// `[n, C, H, H] -> [n, C]`, `H / K = 1` checked at compile time.
    #[allow(clippy::let_unit_value)]
    pub fn avg_pool<const C: usize, const H: usize, const K: usize>(
        &self,
        x: &Map<C, H>,
    ) -> Result<Rows<C>, ModelError> {
        let () = AvgPoolToOne::<H, K>::CHECK;
        let n = x.batch();
        Ok(GpuTensor {
            data: self.avg_pool_sized(&x.data, n, C, H, K)?,
            shape: (n, Const),
        })
    }

    /// [`Gpu::avg_pool`] on a map whose sizes are known at run time (`window` from the
    /// plan): the pooled rows `[n, channels]`.
    pub fn avg_pool_dyn(&self, x: &Activation, window: usize) -> Result<Activation, ModelError> {
        let (n, c) = (x.batch(), x.channels());
        let y = self.avg_pool_sized(&x.data, n, c, x.side(), window)?;
        Activation::new(y, n, c, 1)
    }

    fn avg_pool_sized(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        c: usize,
        h: usize,
        window: usize,
    ) -> Result<CudaSlice<f32>, ModelError> {
        assert!(
            window >= 1 && h / window == 1,
            "the head's pooling leaves 1 x 1"
        );
        assert_eq!(x.len(), n * c * h * h, "average-pool input length");
        let mut y = self.alloc(n * c)?;
        let (nc, side, k) = ((n * c) as i32, h as i32, window as i32);
        let cfg = LaunchConfig {
            grid_dim: ((n * c).div_ceil(THREADS as usize) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            &self.kernels.avg_pool_forward,
            cfg,
            x,
            &mut y,
            &nc,
            &side,
            &k
        )?;
        Ok(y)
    }

    /// The gradient at the average pool's input from the one at its output.
    #[allow(clippy::let_unit_value)]
    pub fn avg_pool_backward<const C: usize, const H: usize, const K: usize>(
        &self,
        dy: &Rows<C>,
    ) -> Result<Map<C, H>, ModelError> {
        let () = AvgPoolToOne::<H, K>::CHECK;
        let n = dy.batch();
        Gpu::map(self.avg_pool_backward_sized(&dy.data, n, C, H, K)?, n)
    }

    /// [`Gpu::avg_pool_backward`] from pooled rows `dy` (`[n, channels]`) to a map of side
    /// `side`, sizes known at run time.
    pub fn avg_pool_backward_dyn(
        &self,
        dy: &Activation,
        side: usize,
        window: usize,
    ) -> Result<Activation, ModelError> {
        let (n, c) = (dy.batch(), dy.channels());
        let dx = self.avg_pool_backward_sized(&dy.data, n, c, side, window)?;
        Activation::new(dx, n, c, side)
    }

    fn avg_pool_backward_sized(
        &self,
        dy: &CudaSlice<f32>,
        n: usize,
        c: usize,
        h: usize,
        window: usize,
    ) -> Result<CudaSlice<f32>, ModelError> {
        assert!(
            window >= 1 && h / window == 1,
            "the head's pooling leaves 1 x 1"
        );
        assert_eq!(dy.len(), n * c, "average-pool gradient length");
        let mut dx = self.alloc(n * c * h * h)?;
        let (nc, side, k) = ((n * c) as i32, h as i32, window as i32);
        launch!(
            self,
            &self.kernels.avg_pool_backward,
            grid_for(n * c * h * h),
            dy,
            &mut dx,
            &nc,
            &side,
            &k
        )?;
        Ok(dx)
    }

    /// One Adam step (dfdx's formula, step number `t` from 1) over the whole arena.
    #[allow(clippy::too_many_arguments)]
    pub fn adam(
        &self,
        params: &mut CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
        t: i32,
        settings: &crate::model::spec::AdamSettings,
    ) -> Result<(), ModelError> {
        let len = params.len() as i64;
        let (lr, b1, b2, eps) = (
            settings.learning_rate as f32,
            settings.beta1 as f32,
            settings.beta2 as f32,
            settings.epsilon as f32,
        );
        // As dfdx computes them, in f32.
        let c1 = (1.0f32 - b1.powi(t)).recip();
        let c2 = (1.0f32 - b2.powi(t)).recip();
        launch!(
            self,
            &self.kernels.adam,
            grid_for(len as usize),
            params,
            m,
            v,
            grads,
            &len,
            &lr,
            &b1,
            &b2,
            &eps,
            &c1,
            &c2
        )
    }

    /// Free and total memory of the device, in bytes.
    pub fn memory(&self) -> Result<(usize, usize), ModelError> {
        self.stream
            .context()
            .mem_get_info()
            .map_err(|e| dev_err("cuMemGetInfo", e))
    }

    /// Waits for everything queued on the stream.
    pub fn synchronize(&self) -> Result<(), ModelError> {
        self.stream
            .synchronize()
            .map_err(|e| dev_err("synchronize", e))
    }
}
