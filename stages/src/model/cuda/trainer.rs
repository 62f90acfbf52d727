//! Fine-tuning on the GPU: the base's forward and backward passes and its Adam steps run on
//! the device; the small head (512 -> units -> 1, with dropout) is the shared one
//! (`model::head`), stepped on the host by the shared step (`model::host_step`) seeded as
//! every backend seeds it, so that all draw the same dropout masks. Each step moves only the
//! pooled features down (`n x 512`) and their gradient up.

use cudarc::driver::CudaSlice;
use dfdx::prelude::*;

use super::network::{
    backward, checked_images, checked_plan, forward, forward_keep, BatchCheck, DeviceParams,
};
use super::ops::Gpu;
use super::tensor::GpuTensor;
use crate::model::backend::{Step, Trainer};
use crate::model::geometry::with_units;
use crate::model::head::{head_net, HeadNet};
use crate::model::host_step::{AdamStep, InputGradient, Objective};
use crate::model::spec::{AdamSettings, HeadSpec, NetworkSpec, HEAD_INPUTS};
use crate::model::weights::ModelWeights;
use crate::model::ModelError;

/// Validation images per forward pass on the GPU (images per gradient step are the
/// experiment's batch size).
const GPU_EVAL_BATCH: usize = 32;

pub(super) struct GpuTrainer<const S0: usize, const U: usize> {
    gpu: Gpu,
    params: DeviceParams,
    grads: CudaSlice<f32>,
    moment1: CudaSlice<f32>,
    moment2: CudaSlice<f32>,
    /// Adam's step number on the device (dfdx counts the head's).
    t: i32,
    adam: AdamSettings,
    head: AdamStep<HeadNet<U>>,
    check: BatchCheck,
}

/// A GPU trainer of the whole network for this instantiation (head width from `head`), on
/// `gpu`.
pub(super) fn whole_network_trainer<
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
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    class_weights: Option<&[f64]>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    if !head.is_binary() {
        return Err(ModelError::Unsupported(format!(
            "fine-tuning a head of {} classes (freeze_base = false) does not run on the GPU yet: train it with --device cpu, or keep freeze_base = true (the head alone trains on every device)",
            head.classes()
        )));
    }
    let plan = checked_plan::<S0, S1, S2, S3, S4, S5, K>(&spec)?;
    let check = BatchCheck::new(plan, &spec);
    let class_weights = class_weights.map(<[f64]>::to_vec);
    with_units!(
        head.units(),
        trainer::<S0>(gpu, check, head, weights, adam, class_weights, seed)
    )
}

fn trainer<const S0: usize, const U: usize>(
    gpu: Gpu,
    check: BatchCheck,
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    class_weights: Option<Vec<f64>>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let params = DeviceParams::upload(&gpu, &weights.base)?;
    let len = params.arena.len;
    let net: HeadNet<U> = head_net(&Cpu::default(), head, &weights.head)?;
    Ok(Box::new(GpuTrainer::<S0, U> {
        grads: gpu.zeros(len)?,
        moment1: gpu.zeros(len)?,
        moment2: gpu.zeros(len)?,
        gpu,
        params,
        t: 0,
        adam,
        head: AdamStep::with_objective(
            net,
            adam,
            seed,
            Objective {
                top: None,
                class_weights,
            },
        ),
        check,
    }))
}

impl<const S0: usize, const U: usize> Trainer for GpuTrainer<S0, U> {
    fn row_len(&self) -> usize {
        S0 * S0 * 3
    }

    fn eval_batch(&self) -> usize {
        GPU_EVAL_BATCH
    }

    fn outputs(&self) -> usize {
        1
    }

    fn step(&mut self, rows: Vec<f32>, targets: Vec<f32>) -> Result<Step, ModelError> {
        let n = targets.len();
        let x = checked_images::<S0>(&self.gpu, &self.check, &rows, n, true)?;
        drop(rows);
        let plan = self.check.plan();
        let (acts, pooled) = forward_keep(&self.gpu, &self.params, plan, x)?;
        let features = self.gpu.download(&pooled.data)?;
        drop(pooled);

        // The head on the host, with the gradient at its input.
        let (step, d_features) = self.head.step(
            features,
            (n, Const::<HEAD_INPUTS>),
            targets,
            InputGradient::Keep,
        )?;
        let Some(d_features) = d_features else {
            // The loss was not finite: no update was made.
            return Ok(step);
        };

        // The base on the GPU.
        let d_pooled = GpuTensor {
            data: self.gpu.upload(&d_features)?,
            shape: (n, Const::<HEAD_INPUTS>),
        };
        backward(
            &self.gpu,
            &self.params,
            plan,
            &acts,
            d_pooled,
            &mut self.grads,
        )?;
        drop(acts);
        self.t += 1;
        self.gpu.adam(
            &mut self.params.values,
            &mut self.moment1,
            &mut self.moment2,
            &self.grads,
            self.t,
            &self.adam,
        )?;
        self.gpu.synchronize()?;
        Ok(step)
    }

    fn logits(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ModelError> {
        let x = checked_images::<S0>(&self.gpu, &self.check, &rows, n, false)?;
        let pooled = forward(&self.gpu, &self.params, self.check.plan(), x)?;
        let features = self.gpu.download(&pooled.data)?;
        drop(pooled);
        self.head.logits(features, (n, Const::<HEAD_INPUTS>))
    }

    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        weights.base = self.params.download(&self.gpu)?;
        self.head.export(weights)
    }
}
