//! The VGG16 base on the GPU for one compile-time instantiation (input side `S0`, pooled
//! sides `S1..S5`, head pooling `K`; see [`super::shape`]): the frozen-feature pass
//! ([`FeatureExtractor`]) and, for fine-tuning, a forward pass that keeps every activation
//! and the backward pass through it.

use cudarc::driver::CudaSlice;

use super::device::CudaBackend;
use super::layout::{nhwc_to_nchw, ParamArena};
use super::ops::Gpu;
use super::plan::{memory_need, LayerPlan};
use super::shape::Chain;
use super::tensor::{Map, Rows};
use crate::model::backend::FeatureExtractor;
use crate::model::spec::{NetworkSpec, HEAD_INPUTS};
use crate::model::vgg16::VGG16_BASE_PARAMS;
use crate::model::weights::BaseWeights;
use crate::model::ModelError;

/// Images per batch of the frozen-feature pass on the GPU at 224 and 237 (about 30 MB of
/// activations each at 237); small inputs get more, as on the CPU.
pub const GPU_FEATURE_BATCH: usize = 32;

/// Fails with a clear message when `batch` images would not fit the device's free memory.
pub(crate) fn check_memory(
    gpu_free: usize,
    gpu_total: usize,
    spec: &NetworkSpec,
    batch: usize,
    training: bool,
) -> Result<(), ModelError> {
    let need = memory_need(&LayerPlan::new(spec), VGG16_BASE_PARAMS, batch, training);
    if need.total() > gpu_free as u64 {
        return Err(ModelError::DeviceMemory {
            batch,
            side: spec.size().pixels(),
            training,
            need: need.total(),
            free: gpu_free as u64,
            total: gpu_total as u64,
        });
    }
    Ok(())
}

/// The base's parameters on the device, packed.
pub(crate) struct DeviceParams {
    pub arena: ParamArena,
    pub values: CudaSlice<f32>,
}

impl DeviceParams {
    pub fn upload(gpu: &Gpu, weights: &BaseWeights) -> Result<Self, ModelError> {
        let arena = ParamArena::vgg16();
        let values = gpu.upload(&arena.pack(weights))?;
        Ok(Self { arena, values })
    }

    pub fn download(&self, gpu: &Gpu) -> Result<BaseWeights, ModelError> {
        self.arena.unpack(&gpu.download(&self.values)?)
    }
}

/// Every activation of one forward pass, typed, kept for the backward pass.
pub(crate) struct Activations<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
> {
    pub x: Map<3, S0>,
    pub c11: Map<64, S0>,
    pub c12: Map<64, S0>,
    pub p1: Map<64, S1>,
    pub c21: Map<128, S1>,
    pub c22: Map<128, S1>,
    pub p2: Map<128, S2>,
    pub c31: Map<256, S2>,
    pub c32: Map<256, S2>,
    pub c33: Map<256, S2>,
    pub p3: Map<256, S3>,
    pub c41: Map<512, S3>,
    pub c42: Map<512, S3>,
    pub c43: Map<512, S3>,
    pub p4: Map<512, S4>,
    pub c51: Map<512, S4>,
    pub c52: Map<512, S4>,
    pub c53: Map<512, S4>,
    pub p5: Map<512, S5>,
}

/// The base's forward pass, dropping each activation once the next is computed.
#[allow(clippy::let_unit_value)]
pub(crate) fn forward<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    gpu: &Gpu,
    p: &DeviceParams,
    x: Map<3, S0>,
) -> Result<Rows<HEAD_INPUTS>, ModelError> {
    Chain::<S0, S1, S2, S3, S4, S5, K>::check();
    let (w, a) = (&p.values, &p.arena);
    let x = gpu.conv_relu::<3, 64, S0>(&x, w, a, 0)?;
    let x = gpu.conv_relu::<64, 64, S0>(&x, w, a, 1)?;
    let x = gpu.max_pool::<64, S0, S1>(&x)?;
    let x = gpu.conv_relu::<64, 128, S1>(&x, w, a, 2)?;
    let x = gpu.conv_relu::<128, 128, S1>(&x, w, a, 3)?;
    let x = gpu.max_pool::<128, S1, S2>(&x)?;
    let x = gpu.conv_relu::<128, 256, S2>(&x, w, a, 4)?;
    let x = gpu.conv_relu::<256, 256, S2>(&x, w, a, 5)?;
    let x = gpu.conv_relu::<256, 256, S2>(&x, w, a, 6)?;
    let x = gpu.max_pool::<256, S2, S3>(&x)?;
    let x = gpu.conv_relu::<256, 512, S3>(&x, w, a, 7)?;
    let x = gpu.conv_relu::<512, 512, S3>(&x, w, a, 8)?;
    let x = gpu.conv_relu::<512, 512, S3>(&x, w, a, 9)?;
    let x = gpu.max_pool::<512, S3, S4>(&x)?;
    let x = gpu.conv_relu::<512, 512, S4>(&x, w, a, 10)?;
    let x = gpu.conv_relu::<512, 512, S4>(&x, w, a, 11)?;
    let x = gpu.conv_relu::<512, 512, S4>(&x, w, a, 12)?;
    let x = gpu.max_pool::<512, S4, S5>(&x)?;
    gpu.avg_pool::<HEAD_INPUTS, S5, K>(&x)
}

/// The forward pass keeping every activation, and the pooled features.
#[allow(clippy::type_complexity)]
pub(crate) fn forward_keep<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    gpu: &Gpu,
    p: &DeviceParams,
    x: Map<3, S0>,
) -> Result<(Activations<S0, S1, S2, S3, S4, S5>, Rows<HEAD_INPUTS>), ModelError> {
    Chain::<S0, S1, S2, S3, S4, S5, K>::check();
    let (w, a) = (&p.values, &p.arena);
    let c11 = gpu.conv_relu::<3, 64, S0>(&x, w, a, 0)?;
    let c12 = gpu.conv_relu::<64, 64, S0>(&c11, w, a, 1)?;
    let p1 = gpu.max_pool::<64, S0, S1>(&c12)?;
    let c21 = gpu.conv_relu::<64, 128, S1>(&p1, w, a, 2)?;
    let c22 = gpu.conv_relu::<128, 128, S1>(&c21, w, a, 3)?;
    let p2 = gpu.max_pool::<128, S1, S2>(&c22)?;
    let c31 = gpu.conv_relu::<128, 256, S2>(&p2, w, a, 4)?;
    let c32 = gpu.conv_relu::<256, 256, S2>(&c31, w, a, 5)?;
    let c33 = gpu.conv_relu::<256, 256, S2>(&c32, w, a, 6)?;
    let p3 = gpu.max_pool::<256, S2, S3>(&c33)?;
    let c41 = gpu.conv_relu::<256, 512, S3>(&p3, w, a, 7)?;
    let c42 = gpu.conv_relu::<512, 512, S3>(&c41, w, a, 8)?;
    let c43 = gpu.conv_relu::<512, 512, S3>(&c42, w, a, 9)?;
    let p4 = gpu.max_pool::<512, S3, S4>(&c43)?;
    let c51 = gpu.conv_relu::<512, 512, S4>(&p4, w, a, 10)?;
    let c52 = gpu.conv_relu::<512, 512, S4>(&c51, w, a, 11)?;
    let c53 = gpu.conv_relu::<512, 512, S4>(&c52, w, a, 12)?;
    let p5 = gpu.max_pool::<512, S4, S5>(&c53)?;
    let pooled = gpu.avg_pool::<HEAD_INPUTS, S5, K>(&p5)?;
    Ok((
        Activations {
            x,
            c11,
            c12,
            p1,
            c21,
            c22,
            p2,
            c31,
            c32,
            c33,
            p3,
            c41,
            c42,
            c43,
            p4,
            c51,
            c52,
            c53,
            p5,
        },
        pooled,
    ))
}

/// The backward pass from the gradient at the pooled features: writes every parameter's
/// gradient into `grads` (the arena's layout).
pub(crate) fn backward<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    gpu: &Gpu,
    p: &DeviceParams,
    acts: &Activations<S0, S1, S2, S3, S4, S5>,
    d_pooled: &Rows<HEAD_INPUTS>,
    grads: &mut CudaSlice<f32>,
) -> Result<(), ModelError> {
    Chain::<S0, S1, S2, S3, S4, S5, K>::check();
    let (w, ar) = (&p.values, &p.arena);
    let a = acts;
    let missing = || ModelError::Device("an input gradient was not computed".into());
    let g = gpu.avg_pool_backward::<HEAD_INPUTS, S5, K>(d_pooled)?;
    let g = gpu.max_pool_backward::<512, S4, S5>(&a.c53, &a.p5, &g)?;
    let g = gpu
        .conv_relu_backward::<512, 512, S4>(&a.c52, &a.c53, g, w, grads, ar, 12, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<512, 512, S4>(&a.c51, &a.c52, g, w, grads, ar, 11, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<512, 512, S4>(&a.p4, &a.c51, g, w, grads, ar, 10, true)?
        .ok_or_else(missing)?;
    let g = gpu.max_pool_backward::<512, S3, S4>(&a.c43, &a.p4, &g)?;
    let g = gpu
        .conv_relu_backward::<512, 512, S3>(&a.c42, &a.c43, g, w, grads, ar, 9, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<512, 512, S3>(&a.c41, &a.c42, g, w, grads, ar, 8, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<256, 512, S3>(&a.p3, &a.c41, g, w, grads, ar, 7, true)?
        .ok_or_else(missing)?;
    let g = gpu.max_pool_backward::<256, S2, S3>(&a.c33, &a.p3, &g)?;
    let g = gpu
        .conv_relu_backward::<256, 256, S2>(&a.c32, &a.c33, g, w, grads, ar, 6, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<256, 256, S2>(&a.c31, &a.c32, g, w, grads, ar, 5, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<128, 256, S2>(&a.p2, &a.c31, g, w, grads, ar, 4, true)?
        .ok_or_else(missing)?;
    let g = gpu.max_pool_backward::<128, S1, S2>(&a.c22, &a.p2, &g)?;
    let g = gpu
        .conv_relu_backward::<128, 128, S1>(&a.c21, &a.c22, g, w, grads, ar, 3, true)?
        .ok_or_else(missing)?;
    let g = gpu
        .conv_relu_backward::<64, 128, S1>(&a.p1, &a.c21, g, w, grads, ar, 2, true)?
        .ok_or_else(missing)?;
    let g = gpu.max_pool_backward::<64, S0, S1>(&a.c12, &a.p1, &g)?;
    let g = gpu
        .conv_relu_backward::<64, 64, S0>(&a.c11, &a.c12, g, w, grads, ar, 1, true)?
        .ok_or_else(missing)?;
    // The images need no gradient.
    gpu.conv_relu_backward::<3, 64, S0>(&a.x, &a.c11, g, w, grads, ar, 0, false)?;
    Ok(())
}

/// Checks cuDNN's workspace need for every convolution of the plan at batch `n`.
pub(crate) fn check_workspaces(
    gpu: &Gpu,
    spec: &NetworkSpec,
    n: usize,
    training: bool,
) -> Result<(), ModelError> {
    for step in LayerPlan::new(spec).steps {
        if let super::plan::Step::Conv {
            c_in, c_out, side, ..
        } = step
        {
            gpu.check_workspace(n, c_in, c_out, side, training)?;
        }
    }
    Ok(())
}

/// The frozen base on the GPU for one instantiation.
pub(crate) struct GpuFeatures<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
> {
    gpu: Gpu,
    params: DeviceParams,
    spec: NetworkSpec,
    ctx: std::sync::Arc<cudarc::driver::CudaContext>,
    /// Batches already checked for memory and workspace.
    checked: std::cell::Cell<usize>,
}

/// Builds the feature extractor of `weights` for this instantiation.
pub(crate) fn features<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    backend: &CudaBackend,
    spec: NetworkSpec,
    weights: &BaseWeights,
) -> Result<Box<dyn FeatureExtractor>, ModelError> {
    Chain::<S0, S1, S2, S3, S4, S5, K>::check();
    let gpu = Gpu::new(&backend.ctx, &backend.image, backend.math)?;
    let params = DeviceParams::upload(&gpu, weights)?;
    Ok(Box::new(GpuFeatures::<S0, S1, S2, S3, S4, S5, K> {
        gpu,
        params,
        spec,
        ctx: backend.ctx.clone(),
        checked: std::cell::Cell::new(0),
    }))
}

impl<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    > FeatureExtractor for GpuFeatures<S0, S1, S2, S3, S4, S5, K>
{
    fn batch_size(&self) -> usize {
        (GPU_FEATURE_BATCH * 224 * 224 / (S0 * S0)).clamp(GPU_FEATURE_BATCH, 512)
    }

    fn pooled_features(&self, images: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let len = S0 * S0 * 3;
        if images.len() != n * len {
            return Err(ModelError::InputLength {
                what: "images",
                got: images.len(),
                expected: n * len,
                detail: format!("{n} NHWC images of {S0}x{S0}x3"),
            });
        }
        if n > self.checked.get() {
            let (free, total) = self
                .ctx
                .mem_get_info()
                .map_err(|e| ModelError::Device(format!("cuMemGetInfo: {e:?}")))?;
            check_memory(free, total, &self.spec, n, false)?;
            check_workspaces(&self.gpu, &self.spec, n, false)?;
            self.checked.set(n);
        }
        let x = self
            .gpu
            .images::<S0>(&nhwc_to_nchw(images, n, S0, S0, 3), n)?;
        let pooled = forward::<S0, S1, S2, S3, S4, S5, K>(&self.gpu, &self.params, x)?;
        // [n, 512] rows: the same layout as the CPU's flattened 1 x 1 maps.
        self.gpu.download(&pooled.data)
    }
}
