//! Fine-tuning on the GPU: the base's forward and backward passes and its Adam steps run on
//! the device; the small head (512 -> units -> 1, with dropout) stays in dfdx on the CPU,
//! seeded as the CPU trainer seeds it, so that both draw the same dropout masks. Each step
//! moves only the pooled features down (`n x 512`) and their gradient up.

use std::cell::Cell;

use cudarc::driver::CudaSlice;
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;

use super::device::CudaBackend;
use super::layout::nhwc_to_nchw;
use super::network::{
    backward, check_memory, check_workspaces, forward, forward_keep, DeviceParams,
};
use super::ops::Gpu;
use super::tensor::GpuTensor;
use crate::model::backend::{Step, Trainer};
use crate::model::cpu::geometry::with_units;
use crate::model::cpu::head::{export_head, head_net, HeadNet};
use crate::model::spec::{AdamSettings, HeadSpec, NetworkSpec, HEAD_INPUTS};
use crate::model::weights::ModelWeights;
use crate::model::ModelError;

/// Validation images per forward pass on the GPU (images per gradient step are the
/// experiment's batch size).
const GPU_EVAL_BATCH: usize = 32;

pub(super) struct GpuTrainer<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
    const U: usize,
> {
    gpu: Gpu,
    params: DeviceParams,
    grads: CudaSlice<f32>,
    moment1: CudaSlice<f32>,
    moment2: CudaSlice<f32>,
    /// Adam's step number on the device (dfdx counts the head's).
    t: i32,
    adam: AdamSettings,
    head: HeadNet<U>,
    head_opt: Adam<HeadNet<U>, f32, Cpu>,
    /// Seeded: draws the head's dropout masks, as the CPU trainer's device does.
    dev: Cpu,
    spec: NetworkSpec,
    ctx: std::sync::Arc<cudarc::driver::CudaContext>,
    /// Largest batch already checked for memory, for training and for predicting.
    checked: Cell<(usize, usize)>,
}

fn dev_err(what: &str, e: impl std::fmt::Debug) -> ModelError {
    ModelError::Device(format!("{what}: {e:?}"))
}

/// A GPU trainer of the whole network for this instantiation (head width from `head`).
pub(super) fn whole_network_trainer<
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
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    with_units!(
        head.units(),
        trainer::<S0, S1, S2, S3, S4, S5, K>(backend, spec, head, weights, adam, seed)
    )
}

#[allow(clippy::too_many_arguments)]
fn trainer<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
    const U: usize,
>(
    backend: &CudaBackend,
    spec: NetworkSpec,
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let gpu = Gpu::new(&backend.ctx, &backend.image, backend.math)?;
    let params = DeviceParams::upload(&gpu, &weights.base)?;
    let len = params.arena.len;
    let net: HeadNet<U> = head_net(&Cpu::default(), head, &weights.head)?;
    let head_opt = Adam::new(
        &net,
        AdamConfig {
            lr: adam.learning_rate,
            betas: [adam.beta1, adam.beta2],
            eps: adam.epsilon,
            weight_decay: None,
        },
    );
    Ok(Box::new(GpuTrainer::<S0, S1, S2, S3, S4, S5, K, U> {
        grads: gpu.zeros(len)?,
        moment1: gpu.zeros(len)?,
        moment2: gpu.zeros(len)?,
        gpu,
        params,
        t: 0,
        adam,
        head: net,
        head_opt,
        dev: Cpu::seed_from_u64(seed),
        spec,
        ctx: backend.ctx.clone(),
        checked: Cell::new((0, 0)),
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
        const U: usize,
    > GpuTrainer<S0, S1, S2, S3, S4, S5, K, U>
{
    fn check(&self, n: usize, training: bool) -> Result<(), ModelError> {
        let (train, eval) = self.checked.get();
        let done = if training { train } else { eval };
        if n <= done {
            return Ok(());
        }
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(|e| dev_err("cuMemGetInfo", e))?;
        check_memory(free, total, &self.spec, n, training)?;
        check_workspaces(&self.gpu, &self.spec, n, training)?;
        self.checked
            .set(if training { (n, eval) } else { (train, n) });
        Ok(())
    }

    fn images(&self, rows: &[f32], n: usize) -> Result<super::tensor::Map<3, S0>, ModelError> {
        let len = S0 * S0 * 3;
        if rows.len() != n * len {
            return Err(ModelError::InputLength {
                what: "images",
                got: rows.len(),
                expected: n * len,
                detail: format!("{n} NHWC images of {S0}x{S0}x3"),
            });
        }
        self.gpu.images::<S0>(&nhwc_to_nchw(rows, n, S0, S0, 3), n)
    }
}

impl<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
        const U: usize,
    > Trainer for GpuTrainer<S0, S1, S2, S3, S4, S5, K, U>
{
    fn row_len(&self) -> usize {
        S0 * S0 * 3
    }

    fn eval_batch(&self) -> usize {
        GPU_EVAL_BATCH
    }

    fn step(&mut self, rows: Vec<f32>, targets: Vec<f32>) -> Result<Step, ModelError> {
        let n = targets.len();
        self.check(n, true)?;
        let x = self.images(&rows, n)?;
        drop(rows);
        let (acts, pooled) = forward_keep::<S0, S1, S2, S3, S4, S5, K>(&self.gpu, &self.params, x)?;
        let features = self.gpu.download(&pooled.data)?;

        // The head on the CPU, with the gradient at its input.
        let feats = self
            .dev
            .try_tensor_from_vec(features, (n, Const::<HEAD_INPUTS>))?;
        let ys = self.dev.try_tensor_from_vec(targets, (n, Const::<1>))?;
        let grads = self.head.try_alloc_grads()?;
        let logits = self.head.try_forward_mut(feats.trace(grads))?;
        let mut batch_logits = vec![0.0; n];
        logits.copy_into(&mut batch_logits);
        let loss = binary_cross_entropy_with_logits_loss(logits, ys);
        let value = loss.array();
        if !value.is_finite() {
            return Ok(Step {
                loss: value,
                logits: batch_logits,
            });
        }
        let grads = loss.backward();
        let mut d_features = vec![0.0; n * HEAD_INPUTS];
        grads.get(&feats).copy_into(&mut d_features);
        self.head_opt
            .update(&mut self.head, &grads)
            .map_err(|e| ModelError::Device(format!("{e:?}")))?;

        // The base on the GPU.
        let d_pooled = GpuTensor {
            data: self.gpu.upload(&d_features)?,
            shape: (n, Const::<HEAD_INPUTS>),
        };
        backward::<S0, S1, S2, S3, S4, S5, K>(
            &self.gpu,
            &self.params,
            &acts,
            &d_pooled,
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
        Ok(Step {
            loss: value,
            logits: batch_logits,
        })
    }

    fn logits(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ModelError> {
        self.check(n, false)?;
        let x = self.images(&rows, n)?;
        let pooled = forward::<S0, S1, S2, S3, S4, S5, K>(&self.gpu, &self.params, x)?;
        let features = self.gpu.download(&pooled.data)?;
        let feats = self
            .dev
            .try_tensor_from_vec(features, (n, Const::<HEAD_INPUTS>))?;
        let out = self.head.try_forward(feats)?;
        let mut logits = vec![0.0; n];
        out.copy_into(&mut logits);
        Ok(logits)
    }

    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        weights.base = self.params.download(&self.gpu)?;
        export_head(&self.head, weights)
    }
}
