//! Adam on a dfdx network on the host: the one training step (forward with the tape, the
//! mean binary cross-entropy of the logit, the finite check, backward, Adam's update) and the
//! logits without dropout, written once for every backend.
//!
//! Every backend trains the head with it (the head is a few thousand multiply-adds per row,
//! so it stays in dfdx on the host, bit for bit the same everywhere); the CPU backend trains
//! its whole network with it too; the CUDA backend takes from it the gradient at the head's
//! input, to run the base's backward pass on the GPU.

use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;

use super::backend::{Step, Trainer};
use super::error::ModelError;
use super::spec::AdamSettings;
use super::weights::ModelWeights;

/// A batch's logits, `[n, 1]`.
pub(crate) type Logits<T = NoneTape> = Tensor<(usize, Const<1>), f32, Cpu, T>;

/// Whether a step also hands back the gradient of the loss at its input rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputGradient {
    /// Only the parameters' gradients (the network is the whole model).
    Drop,
    /// Also d(loss)/d(input), for a backend that runs the layers below on its device. Only
    /// the CUDA backend asks for it (its tests on the CPU build it too).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Keep,
}

/// A network that can hand its trained parameters back to the host.
pub(crate) trait Export {
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError>;
}

/// Network `M` with its Adam state and the seeded device that draws its dropout masks.
pub(crate) struct AdamStep<M: TensorCollection<f32, Cpu>> {
    net: M,
    opt: Adam<M, f32, Cpu>,
    /// The parameters' gradient buffers, reused from step to step (`None` until the first
    /// step, and after a step that kept the input's gradient).
    grads: Option<Gradients<f32, Cpu>>,
    /// Holds the batches; its generator, seeded, draws the dropout masks (dfdx's dropout
    /// draws from the device of its input), so it is used for nothing else.
    dev: Cpu,
}

impl<M: TensorCollection<f32, Cpu>> AdamStep<M> {
    /// Adam with `adam`'s settings on `net`; `seed` seeds the dropout masks.
    pub(crate) fn new(net: M, adam: AdamSettings, seed: u64) -> Self {
        let opt = Adam::new(
            &net,
            AdamConfig {
                lr: adam.learning_rate,
                betas: [adam.beta1, adam.beta2],
                eps: adam.epsilon,
                weight_decay: None,
            },
        );
        Self {
            net,
            opt,
            grads: None,
            dev: Cpu::seed_from_u64(seed),
        }
    }

    /// The network as trained so far.
    pub(crate) fn net(&self) -> &M {
        &self.net
    }

    /// One step on the input `rows` (of `shape`) with `targets` (0 or 1, one per row).
    /// With [`InputGradient::Keep`], also d(loss)/d(rows), in the rows' layout; `None` when
    /// the loss was not finite (then no update was made) or with [`InputGradient::Drop`].
    pub(crate) fn step<S: Shape>(
        &mut self,
        rows: Vec<f32>,
        shape: S,
        targets: Vec<f32>,
        input: InputGradient,
    ) -> Result<(Step, Option<Vec<f32>>), ModelError>
    where
        M: ModuleMut<
            Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Logits<OwnedTape<f32, Cpu>>,
            Error = CpuError,
        >,
    {
        let n = targets.len();
        let xs = self.dev.try_tensor_from_vec(rows, shape)?;
        let ys = self.dev.try_tensor_from_vec(targets, (n, Const::<1>))?;
        let (kept, traced) = match input {
            InputGradient::Drop => {
                let grads = match self.grads.take() {
                    Some(g) => g,
                    None => self.net.try_alloc_grads()?,
                };
                (None, xs.traced(grads))
            }
            // Gradients from `try_alloc_grads` name the parameters as the only leaves, and
            // `backward` drops every other gradient, the input's among them; leaky ones keep
            // all. Fresh each step: reused, they would carry earlier steps' temporaries.
            InputGradient::Keep => (Some(xs.clone()), xs.traced(Gradients::leaky())),
        };
        let logits = self.net.try_forward_mut(traced)?;
        let mut batch_logits = vec![0.0; n];
        logits.copy_into(&mut batch_logits);
        let loss = binary_cross_entropy_with_logits_loss(logits, ys);
        let value = loss.array();
        if !value.is_finite() {
            // The caller stops here; the buffers are rebuilt if it goes on.
            return Ok((
                Step {
                    loss: value,
                    logits: batch_logits,
                },
                None,
            ));
        }
        let mut grads = loss.backward();
        let input_gradient = kept.map(|xs| {
            let mut d = vec![0.0; xs.shape().num_elements()];
            grads.get(&xs).copy_into(&mut d);
            d
        });
        self.opt
            .update(&mut self.net, &grads)
            .map_err(ModelError::AdamUpdate)?;
        if input == InputGradient::Drop {
            self.net.try_zero_grads(&mut grads)?;
            self.grads = Some(grads);
        }
        Ok((
            Step {
                loss: value,
                logits: batch_logits,
            },
            input_gradient,
        ))
    }

    /// The logits of `rows` (of `shape`), without dropout.
    pub(crate) fn logits<S: Shape>(&self, rows: Vec<f32>, shape: S) -> Result<Vec<f32>, ModelError>
    where
        M: Module<Tensor<S, f32, Cpu>, Output = Logits, Error = CpuError>,
    {
        let xs = self.dev.try_tensor_from_vec(rows, shape)?;
        let out = self.net.try_forward(xs)?;
        let mut logits = vec![0.0; out.shape().0];
        out.copy_into(&mut logits);
        Ok(logits)
    }
}

/// A [`Trainer`] of network `M` on the host, whose input rows form tensors of shape `S`.
pub(crate) struct HostTrainer<S: Shape, M: TensorCollection<f32, Cpu>> {
    adam: AdamStep<M>,
    shape: fn(usize) -> S,
    row_len: usize,
    eval_batch: usize,
}

impl<S: Shape, M: TensorCollection<f32, Cpu>> HostTrainer<S, M> {
    /// `shape(n)` is the tensor shape of `n` rows of `row_len` values; `eval_batch` the rows
    /// per forward pass when only predicting.
    pub(crate) fn new(
        net: M,
        adam: AdamSettings,
        seed: u64,
        shape: fn(usize) -> S,
        row_len: usize,
        eval_batch: usize,
    ) -> Self {
        Self {
            adam: AdamStep::new(net, adam, seed),
            shape,
            row_len,
            eval_batch,
        }
    }
}

impl<S: Shape, M> Trainer for HostTrainer<S, M>
where
    M: TensorCollection<f32, Cpu>
        + Export
        + ModuleMut<
            Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Logits<OwnedTape<f32, Cpu>>,
            Error = CpuError,
        > + Module<Tensor<S, f32, Cpu>, Output = Logits, Error = CpuError>,
{
    fn row_len(&self) -> usize {
        self.row_len
    }

    fn eval_batch(&self) -> usize {
        self.eval_batch
    }

    fn step(&mut self, rows: Vec<f32>, targets: Vec<f32>) -> Result<Step, ModelError> {
        let shape = (self.shape)(targets.len());
        let (step, _) = self.adam.step(rows, shape, targets, InputGradient::Drop)?;
        Ok(step)
    }

    fn logits(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ModelError> {
        self.adam.logits(rows, (self.shape)(n))
    }

    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        self.adam.net().export(weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::head::{head_net, HeadNet};
    use crate::model::spec::{HeadSpec, HEAD_INPUTS};
    use crate::model::weights::HeadWeights;

    const UNITS: usize = 16;

    /// `n` feature rows with values spread over [-1, 1].
    fn rows(n: usize) -> Vec<f32> {
        (0..n * HEAD_INPUTS)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect()
    }

    /// The head's mean binary cross-entropy in f64, straight from its weights (no dropout):
    /// `z = w2 . relu(w1 x + b1) + b2`, loss `max(z, 0) - z y + ln(1 + e^-|z|)`.
    fn loss_f64(weights: &HeadWeights, x: &[f64], y: &[f32]) -> f64 {
        let [w1, b1, w2, b2] = weights.values();
        let n = y.len();
        let mut total = 0.0;
        for (row, &target) in x.chunks(HEAD_INPUTS).zip(y) {
            let mut z = b2[0] as f64;
            for u in 0..UNITS {
                let w = &w1[u * HEAD_INPUTS..(u + 1) * HEAD_INPUTS];
                let pre: f64 =
                    b1[u] as f64 + w.iter().zip(row).map(|(a, b)| *a as f64 * b).sum::<f64>();
                z += w2[u] as f64 * pre.max(0.0);
            }
            total += z.max(0.0) - z * target as f64 + (-z.abs()).exp().ln_1p();
        }
        total / n as f64
    }

    #[test]
    fn the_head_step_hands_back_the_gradient_at_its_input_that_finite_differences_give() {
        let head = HeadSpec::new(UNITS, 0.0).unwrap();
        let weights = HeadWeights::glorot(&head, 3);
        let n = 4;
        let x = rows(n);
        let y = vec![1.0, 0.0, 1.0, 0.0];
        let net: HeadNet<UNITS> = head_net(&Cpu::default(), &head, &weights).unwrap();
        let mut adam = AdamStep::new(net, AdamSettings::default(), 0);
        let (step, d) = adam
            .step(
                x.clone(),
                (n, Const::<HEAD_INPUTS>),
                y.clone(),
                InputGradient::Keep,
            )
            .unwrap();
        let d = d.expect("a finite loss hands back the input's gradient");
        assert_eq!(d.len(), n * HEAD_INPUTS);

        let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
        let loss = loss_f64(&weights, &x64, &y);
        assert!(
            (step.loss as f64 - loss).abs() < 1e-5,
            "{} vs {loss}",
            step.loss
        );
        let h = 1e-4;
        let mut worst = 0.0f64;
        let mut scale = 0.0f64;
        for i in 0..x64.len() {
            let (mut plus, mut minus) = (x64.clone(), x64.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_f64(&weights, &plus, &y) - loss_f64(&weights, &minus, &y)) / (2.0 * h);
            worst = worst.max((fd - d[i] as f64).abs());
            scale = scale.max(fd.abs());
        }
        assert!(scale > 1e-3, "the loss depends on the features ({scale})");
        assert!(worst < 1e-3 * scale, "worst error {worst} of {scale}");

        // The step updated the head.
        let mut after = crate::model::weights::ModelWeights {
            base: crate::model::weights::BaseWeights::he(0),
            head: weights.clone(),
        };
        adam.net().export(&mut after).unwrap();
        assert_ne!(after.head, weights);
    }

    /// Why the step above takes leaky gradients: ones allocated for the parameters alone (as
    /// the GPU trainer once took them) lose the input's gradient in `backward`.
    #[test]
    fn gradients_allocated_for_the_parameters_alone_lose_the_inputs_in_backward() {
        let head = HeadSpec::new(UNITS, 0.0).unwrap();
        let weights = HeadWeights::glorot(&head, 3);
        let dev = Cpu::default();
        let mut net: HeadNet<UNITS> = head_net(&dev, &head, &weights).unwrap();
        let n = 2;
        let xs = dev.tensor_from_vec(rows(n), (n, Const::<HEAD_INPUTS>));
        let ys = dev.tensor_from_vec(vec![1.0, 0.0], (n, Const::<1>));
        let grads = net.alloc_grads();
        let logits = net.forward_mut(xs.trace(grads));
        let grads = binary_cross_entropy_with_logits_loss(logits, ys).backward();
        let lost = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&xs)));
        assert!(lost.is_err(), "dfdx dropped the input's gradient");
    }
}
