//! The VGG16 base on the GPU for one compile-time instantiation (input side `S0`, pooled
//! sides `S1..S5`, head pooling `K`; see [`super::shape`]): the frozen-feature pass
//! ([`FeatureExtractor`]) and, for fine-tuning, a forward pass that keeps every step's input
//! and the backward pass through it.
//!
//! The layers are not written out here: one loop walks the plan ([`LayerPlan`], read from
//! the layer table `model::vgg16`) forward, one backward. The instantiation's side lengths
//! are checked at compile time ([`Chain`]) and compared with the plan's when a network is
//! built; each activation's sizes are checked when it is made.

use std::cell::Cell;

use cudarc::driver::CudaSlice;
use dfdx::shapes::Const;

use super::layout::{nhwc_to_nchw, ParamArena};
use super::ops::Gpu;
use super::plan::{memory_need, LayerPlan, Step};
use super::shape::Chain;
use super::tensor::{Activation, GpuTensor, Map, Rows};
use crate::model::backend::FeatureExtractor;
use crate::model::spec::{check_image_len, NetworkSpec, HEAD_INPUTS};
use crate::model::weights::BaseWeights;
use crate::model::ModelError;

/// Images per batch of the frozen-feature pass on the GPU at 224 and 237 (about 30 MB of
/// activations each at 237); small inputs get more, as on the CPU.
pub const GPU_FEATURE_BATCH: usize = 32;

/// The plan of `spec`, checked against the instantiation's compile-time chain.
pub(crate) fn checked_plan<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    spec: &NetworkSpec,
) -> Result<LayerPlan, ModelError> {
    Chain::<S0, S1, S2, S3, S4, S5, K>::check();
    let plan = LayerPlan::new(spec);
    let window = match plan.steps.last() {
        Some(Step::AvgPool { window, .. }) => *window,
        _ => 0,
    };
    if plan.sides() != Chain::<S0, S1, S2, S3, S4, S5, K>::SIDES || window != K {
        return Err(ModelError::Device(format!(
            "the layer plan for {spec:?} does not match the instantiation {:?} / {K}",
            Chain::<S0, S1, S2, S3, S4, S5, K>::SIDES
        )));
    }
    Ok(plan)
}

/// The memory and workspace checks of one network on one device, each batch size checked
/// once: before a batch runs, its estimated need ([`memory_need`]) against the device's free
/// memory, and cuDNN's workspace need for every convolution against what was reserved.
pub(crate) struct BatchCheck {
    plan: LayerPlan,
    side: usize,
    /// Largest batch already checked, for training and for inference.
    checked: Cell<(usize, usize)>,
}

impl BatchCheck {
    pub(crate) fn new(plan: LayerPlan, spec: &NetworkSpec) -> Self {
        Self {
            plan,
            side: spec.size().pixels(),
            checked: Cell::new((0, 0)),
        }
    }

    /// Fails with a clear message when `batch` images would not fit.
    pub(crate) fn ensure(&self, gpu: &Gpu, batch: usize, training: bool) -> Result<(), ModelError> {
        let (train, infer) = self.checked.get();
        if batch <= if training { train } else { infer } {
            return Ok(());
        }
        let (free, total) = gpu.memory()?;
        let need = memory_need(&self.plan, ParamArena::vgg16().len, batch, training);
        if need.total() > free as u64 {
            return Err(ModelError::DeviceMemory {
                batch,
                side: self.side,
                training,
                need: need.total(),
                free: free as u64,
                total: total as u64,
            });
        }
        for step in &self.plan.steps {
            if let Step::Conv {
                c_in, c_out, side, ..
            } = *step
            {
                gpu.check_workspace(batch, c_in, c_out, side, training)?;
            }
        }
        self.checked.set(if training {
            (batch, infer)
        } else {
            (train, batch)
        });
        Ok(())
    }

    pub(crate) fn plan(&self) -> &LayerPlan {
        &self.plan
    }
}

/// The checks before a batch of `n` NHWC images of side `S0` runs (their length, then the
/// device's memory), and the images on the device, NCHW.
pub(crate) fn checked_images<const S0: usize>(
    gpu: &Gpu,
    check: &BatchCheck,
    images: &[f32],
    n: usize,
    training: bool,
) -> Result<Map<3, S0>, ModelError> {
    check_image_len(images.len(), n, S0)?;
    check.ensure(gpu, n, training)?;
    gpu.images::<S0>(&nhwc_to_nchw(images, n, S0, S0, 3), n)
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

/// Every step's input of one forward pass, in plan order, kept for the backward pass.
pub(crate) struct Activations(Vec<Activation>);

/// The forward pass of the plan from `x`. With `keep`, every step's input is kept and
/// returned; without, each activation is freed as soon as the next exists, so that at most
/// one step's input and output are alive at once.
fn run_forward(
    gpu: &Gpu,
    p: &DeviceParams,
    plan: &LayerPlan,
    mut x: Activation,
    keep: bool,
) -> Result<(Vec<Activation>, Rows<HEAD_INPUTS>), ModelError> {
    let (w, a) = (&p.values, &p.arena);
    let mut kept = Vec::with_capacity(if keep { plan.steps.len() } else { 0 });
    let mut conv = 0;
    for step in &plan.steps {
        let y = match *step {
            Step::Conv { c_out, .. } => {
                conv += 1;
                gpu.conv_relu_dyn(&x, c_out, w, a, conv - 1)?
            }
            Step::MaxPool { .. } => gpu.max_pool_dyn(&x)?,
            Step::AvgPool { window, .. } => gpu.avg_pool_dyn(&x, window)?,
        };
        let input = std::mem::replace(&mut x, y);
        if keep {
            kept.push(input);
        }
    }
    let n = x.batch();
    if x.channels() != HEAD_INPUTS || x.side() != 1 {
        return Err(ModelError::Device(format!(
            "the base ends with {} x {} x {} maps, not {HEAD_INPUTS} pooled values",
            x.channels(),
            x.side(),
            x.side()
        )));
    }
    Ok((
        kept,
        GpuTensor {
            data: x.data,
            shape: (n, Const),
        },
    ))
}

fn activation<const C: usize, const H: usize>(x: Map<C, H>) -> Activation {
    let n = x.batch();
    GpuTensor {
        data: x.data,
        shape: (n, C, H, H),
    }
}

/// The base's forward pass, freeing each activation once the next is computed.
pub(crate) fn forward<const S0: usize>(
    gpu: &Gpu,
    p: &DeviceParams,
    plan: &LayerPlan,
    x: Map<3, S0>,
) -> Result<Rows<HEAD_INPUTS>, ModelError> {
    Ok(run_forward(gpu, p, plan, activation(x), false)?.1)
}

/// The forward pass keeping every step's input, and the pooled features.
pub(crate) fn forward_keep<const S0: usize>(
    gpu: &Gpu,
    p: &DeviceParams,
    plan: &LayerPlan,
    x: Map<3, S0>,
) -> Result<(Activations, Rows<HEAD_INPUTS>), ModelError> {
    let (kept, pooled) = run_forward(gpu, p, plan, activation(x), true)?;
    Ok((Activations(kept), pooled))
}

/// The backward pass of the plan from the gradient at the pooled features: writes every
/// parameter's gradient into `grads` (the arena's layout). Each gradient is freed once the
/// one below it exists.
pub(crate) fn backward(
    gpu: &Gpu,
    p: &DeviceParams,
    plan: &LayerPlan,
    acts: &Activations,
    d_pooled: Rows<HEAD_INPUTS>,
    grads: &mut CudaSlice<f32>,
) -> Result<(), ModelError> {
    let (w, ar) = (&p.values, &p.arena);
    let acts = &acts.0;
    let missing = || ModelError::Device("an input gradient was not computed".into());
    if acts.len() != plan.steps.len() {
        return Err(missing());
    }
    let n = d_pooled.batch();
    let mut g = Activation::new(d_pooled.data, n, HEAD_INPUTS, 1)?;
    let mut conv = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Conv { .. }))
        .count();
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let input = &acts[i];
        g = match *step {
            Step::AvgPool { side, window, .. } => gpu.avg_pool_backward_dyn(&g, side, window)?,
            Step::MaxPool { .. } => {
                let output = acts.get(i + 1).ok_or_else(missing)?;
                gpu.max_pool_backward_dyn(input, output, &g)?
            }
            Step::Conv { .. } => {
                let output = acts.get(i + 1).ok_or_else(missing)?;
                conv -= 1;
                // The images need no gradient.
                let need_input_grad = i > 0;
                match gpu.conv_relu_backward_dyn(
                    input,
                    output,
                    g,
                    w,
                    grads,
                    ar,
                    conv,
                    need_input_grad,
                )? {
                    Some(dx) => dx,
                    None if !need_input_grad => return Ok(()),
                    None => return Err(missing()),
                }
            }
        };
    }
    Ok(())
}

/// The frozen base on the GPU for one instantiation.
pub(crate) struct GpuFeatures<const S0: usize> {
    gpu: Gpu,
    params: DeviceParams,
    check: BatchCheck,
}

/// Builds the feature extractor of `weights` for this instantiation on `gpu`.
pub(crate) fn features<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>(
    gpu: Gpu,
    spec: NetworkSpec,
    weights: &BaseWeights,
) -> Result<Box<dyn FeatureExtractor>, ModelError> {
    let plan = checked_plan::<S0, S1, S2, S3, S4, S5, K>(&spec)?;
    let params = DeviceParams::upload(&gpu, weights)?;
    Ok(Box::new(GpuFeatures::<S0> {
        gpu,
        params,
        check: BatchCheck::new(plan, &spec),
    }))
}

impl<const S0: usize> FeatureExtractor for GpuFeatures<S0> {
    fn batch_size(&self) -> usize {
        (GPU_FEATURE_BATCH * 224 * 224 / (S0 * S0)).clamp(GPU_FEATURE_BATCH, 512)
    }

    fn pooled_features(&self, images: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let x = checked_images::<S0>(&self.gpu, &self.check, images, n, false)?;
        let pooled = forward(&self.gpu, &self.params, self.check.plan(), x)?;
        // [n, 512] rows: the same layout as the CPU's flattened 1 x 1 maps.
        self.gpu.download(&pooled.data)
    }
}
