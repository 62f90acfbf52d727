//! Adam on a dfdx network on the host: the one training step (forward with the tape, the
//! loss, the finite check, backward, Adam's update) and the logits without dropout, written
//! once for every backend. The loss is the seed's mean binary cross-entropy of the logit (on
//! dfdx's tape, as ever), or, with class weights or `C >= 3` classes, one computed on the
//! host (`metrics::categorical` for the softmax) whose gradient is handed to dfdx's backward
//! pass at the network's last tensor; for `C >= 3` the last dense layer is an
//! [`OutputLayer`] between the two.
//!
//! Every backend trains the head with it (the head is a few thousand multiply-adds per row,
//! so it stays in dfdx on the host, bit for bit the same everywhere); the CPU backend trains
//! its whole network with it too; the CUDA backend takes from it the gradient at the head's
//! input, to run the base's backward pass on the GPU.

use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;

use super::backend::{Step, Trainer};
use super::error::ModelError;
use super::output_layer::OutputLayer;
use super::spec::AdamSettings;
use super::weights::ModelWeights;
use crate::metrics::categorical::log_softmax_cross_entropy;

/// The scalar a step differentiates.
type Loss = Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>;

/// The last tensor of a network on the host, `[n, W]` with the tape: the logit of the seed's
/// Dense(1) (`W = 1`), or the hidden layer's output when the last layer is an
/// [`OutputLayer`] (`W = U`).
pub(crate) trait Outputs: Sized {
    /// Its values, row-major.
    fn values(&self) -> Vec<f32>;
    /// Keras' binary cross-entropy of the logits against 0/1 `targets`, on dfdx's tape (the
    /// seed's loss, unchanged).
    fn binary_cross_entropy(self, dev: &Cpu, targets: Vec<f32>) -> Result<Loss, ModelError>;
    /// A scalar whose gradient at this tensor is `gradient` (`sum(x * g)`): how a loss
    /// computed on the host hands its gradient to dfdx's backward pass.
    fn with_gradient(self, dev: &Cpu, gradient: Vec<f32>) -> Result<Loss, ModelError>;
}

impl<const W: usize> Outputs for Tensor<(usize, Const<W>), f32, Cpu, OwnedTape<f32, Cpu>> {
    fn values(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.shape().num_elements()];
        self.copy_into(&mut v);
        v
    }

    fn binary_cross_entropy(self, dev: &Cpu, targets: Vec<f32>) -> Result<Loss, ModelError> {
        let ys = dev.try_tensor_from_vec(targets, *self.shape())?;
        Ok(binary_cross_entropy_with_logits_loss(self, ys))
    }

    fn with_gradient(self, dev: &Cpu, gradient: Vec<f32>) -> Result<Loss, ModelError> {
        let g = dev.try_tensor_from_vec(gradient, *self.shape())?;
        Ok(self.try_mul(g)?.try_sum()?)
    }
}

/// The same tensor without the tape (predicting).
pub(crate) trait OutputValues {
    fn values(&self) -> Vec<f32>;
}

impl<const W: usize> OutputValues for Tensor<(usize, Const<W>), f32, Cpu> {
    fn values(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.shape().num_elements()];
        self.copy_into(&mut v);
        v
    }
}

/// What a step minimises, past the network's last tensor.
#[derive(Clone, Debug, Default)]
pub(crate) struct Objective {
    /// `None`: the network ends in the seed's Dense(1) and its output is the logit (binary
    /// cross-entropy). `Some`: the network ends at the hidden layer and this layer gives the
    /// `C >= 3` logits (categorical cross-entropy of their softmax).
    pub(crate) top: Option<OutputLayer>,
    /// Keras' `class_weight`, one per class: the loss is `sum(w_{y_i} l_i) / N`. `None`: 1.
    pub(crate) class_weights: Option<Vec<f64>>,
}

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

/// A network that can hand its trained parameters back to the host. `top` is the last
/// layer's `(weight, bias)` where it is an [`OutputLayer`] rather than part of the network.
pub(crate) trait Export {
    fn export(
        &self,
        weights: &mut ModelWeights,
        top: Option<(&[f32], &[f32])>,
    ) -> Result<(), ModelError>;
}

/// Network `M` with its Adam state and the seeded device that draws its dropout masks.
pub(crate) struct AdamStep<M: TensorCollection<f32, Cpu>> {
    net: M,
    opt: Adam<M, f32, Cpu>,
    settings: AdamSettings,
    objective: Objective,
    /// The parameters' gradient buffers, reused from step to step (`None` until the first
    /// step, and after a step that kept the input's gradient).
    grads: Option<Gradients<f32, Cpu>>,
    /// Holds the batches; its generator, seeded, draws the dropout masks (dfdx's dropout
    /// draws from the device of its input), so it is used for nothing else.
    dev: Cpu,
}

impl<M: TensorCollection<f32, Cpu>> AdamStep<M> {
    /// Adam with `adam`'s settings on `net` and `objective`; `seed` seeds the dropout masks.
    pub(crate) fn with_objective(
        net: M,
        adam: AdamSettings,
        seed: u64,
        objective: Objective,
    ) -> Self {
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
            settings: adam,
            objective,
            grads: None,
            dev: Cpu::seed_from_u64(seed),
        }
    }

    /// Writes the network's trained parameters, and the output layer's, into `weights`.
    pub(crate) fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError>
    where
        M: Export,
    {
        let top = self.objective.top.as_ref().map(|t| (t.weight(), t.bias()));
        self.net.export(weights, top)
    }

    /// One step on the input `rows` (of `shape`) with `targets` (one per row: 0 or 1 for two
    /// classes, else the class index). With [`InputGradient::Keep`], also d(loss)/d(rows), in
    /// the rows' layout; `None` when the loss was not finite (then no update was made) or
    /// with [`InputGradient::Drop`].
    pub(crate) fn step<S: Shape>(
        &mut self,
        rows: Vec<f32>,
        shape: S,
        targets: Vec<f32>,
        input: InputGradient,
    ) -> Result<(Step, Option<Vec<f32>>), ModelError>
    where
        M: ModuleMut<Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>, Error = CpuError>,
        <M as ModuleMut<Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>>>::Output: Outputs,
    {
        let n = targets.len();
        let xs = self.dev.try_tensor_from_vec(rows, shape)?;
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
        let out = self.net.try_forward_mut(traced)?;
        let values = out.values();
        let (value, loss, batch_logits) =
            match (&mut self.objective.top, &self.objective.class_weights) {
                // The seed's loss, on dfdx's tape.
                (None, None) => {
                    let loss = out.binary_cross_entropy(&self.dev, targets)?;
                    (loss.array(), loss, values)
                }
                (None, Some(weights)) => {
                    let (value, gradient) =
                        weighted_binary_cross_entropy(&values, &targets, weights);
                    let gradient = gradient.into_iter().map(|g| g as f32).collect();
                    (
                        value as f32,
                        out.with_gradient(&self.dev, gradient)?,
                        values,
                    )
                }
                (Some(top), weights) => {
                    let logits = top.forward(&values);
                    if logits.iter().any(|z| !z.is_finite()) {
                        return Ok((
                            Step {
                                loss: f32::NAN,
                                logits,
                            },
                            None,
                        ));
                    }
                    let labels: Vec<u32> = targets.iter().map(|&y| y as u32).collect();
                    let loss = log_softmax_cross_entropy(
                        &labels,
                        &logits,
                        top.outputs(),
                        weights.as_deref(),
                    )
                    .map_err(|e| ModelError::Loss(e.to_string()))?;
                    let d_hidden = top.backward(&values, &loss.gradient);
                    (
                        loss.loss as f32,
                        out.with_gradient(&self.dev, d_hidden)?,
                        logits,
                    )
                }
            };
        debug_assert_eq!(batch_logits.len() % n.max(1), 0);
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
        if let Some(top) = &mut self.objective.top {
            top.update(&self.settings);
        }
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

    /// The logits of `rows` (of `shape`), without dropout: `n` of them for two classes, else
    /// `n x C` row-major.
    pub(crate) fn logits<S: Shape>(&self, rows: Vec<f32>, shape: S) -> Result<Vec<f32>, ModelError>
    where
        M: Module<Tensor<S, f32, Cpu>, Error = CpuError>,
        <M as Module<Tensor<S, f32, Cpu>>>::Output: OutputValues,
    {
        let xs = self.dev.try_tensor_from_vec(rows, shape)?;
        let values = self.net.try_forward(xs)?.values();
        Ok(match &self.objective.top {
            None => values,
            Some(top) => top.forward(&values),
        })
    }
}

/// Keras' binary cross-entropy of logits with class weights, in `f64`: the loss
/// `sum_i w_{y_i} (max(x, 0) - x y + ln(1 + e^-|x|)) / N` and its gradient at the logits,
/// `w_{y_i} (sigmoid(x_i) - y_i) / N`.
pub(crate) fn weighted_binary_cross_entropy(
    logits: &[f32],
    targets: &[f32],
    class_weights: &[f64],
) -> (f64, Vec<f64>) {
    let n = logits.len().max(1) as f64;
    let mut total = 0.0;
    let gradient = logits
        .iter()
        .zip(targets)
        .map(|(&x, &y)| {
            let (x, y) = (f64::from(x), f64::from(y));
            let w = class_weights[usize::from(y > 0.5)];
            total += w * (x.max(0.0) - x * y + (-x.abs()).exp().ln_1p());
            w * (1.0 / (1.0 + (-x).exp()) - y) / n
        })
        .collect();
    (total / n, gradient)
}

/// A [`Trainer`] of network `M` on the host, whose input rows form tensors of shape `S`.
pub(crate) struct HostTrainer<S: Shape, M: TensorCollection<f32, Cpu>> {
    adam: AdamStep<M>,
    shape: fn(usize) -> S,
    row_len: usize,
    eval_batch: usize,
    outputs: usize,
}

impl<S: Shape, M: TensorCollection<f32, Cpu>> HostTrainer<S, M> {
    /// `shape(n)` is the tensor shape of `n` rows of `row_len` values; `eval_batch` the rows
    /// per forward pass when only predicting.
    pub(crate) fn new(
        net: M,
        adam: AdamSettings,
        seed: u64,
        objective: Objective,
        shape: fn(usize) -> S,
        row_len: usize,
        eval_batch: usize,
    ) -> Self {
        let outputs = objective.top.as_ref().map_or(1, OutputLayer::outputs);
        Self {
            adam: AdamStep::with_objective(net, adam, seed, objective),
            shape,
            row_len,
            eval_batch,
            outputs,
        }
    }
}

impl<S: Shape, M> Trainer for HostTrainer<S, M>
where
    M: TensorCollection<f32, Cpu>
        + Export
        + ModuleMut<Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>, Error = CpuError>
        + Module<Tensor<S, f32, Cpu>, Error = CpuError>,
    <M as ModuleMut<Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>>>::Output: Outputs,
    <M as Module<Tensor<S, f32, Cpu>>>::Output: OutputValues,
{
    fn row_len(&self) -> usize {
        self.row_len
    }

    fn eval_batch(&self) -> usize {
        self.eval_batch
    }

    fn outputs(&self) -> usize {
        self.outputs
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
        self.adam.export(weights)
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
        let mut adam =
            AdamStep::with_objective(net, AdamSettings::default(), 0, Objective::default());
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
        adam.export(&mut after).unwrap();
        assert_ne!(after.head, weights);
    }

    /// The `C`-class head's mean (class-weighted) categorical cross-entropy in f64, straight
    /// from its weights (no dropout): `z = W2 relu(W1 x + b1) + b2`, `l = lse(z) - z_y`.
    fn softmax_loss_f64(weights: &HeadWeights, x: &[f64], y: &[f32], w: Option<&[f64]>) -> f64 {
        let [w1, b1, w2, b2] = weights.values();
        let c = b2.len();
        let mut total = 0.0;
        for (row, &target) in x.chunks(HEAD_INPUTS).zip(y) {
            let hidden: Vec<f64> = (0..UNITS)
                .map(|u| {
                    let wu = &w1[u * HEAD_INPUTS..(u + 1) * HEAD_INPUTS];
                    let pre =
                        b1[u] as f64 + wu.iter().zip(row).map(|(a, b)| *a as f64 * b).sum::<f64>();
                    pre.max(0.0)
                })
                .collect();
            let z: Vec<f64> = (0..c)
                .map(|k| {
                    b2[k] as f64
                        + (0..UNITS)
                            .map(|u| w2[k * UNITS + u] as f64 * hidden[u])
                            .sum::<f64>()
                })
                .collect();
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            let label = target as usize;
            total += w.map_or(1.0, |w| w[label]) * (lse - z[label]);
        }
        total / y.len() as f64
    }

    /// The loss of the step and its gradient at the input rows against the f64 reference
    /// and central finite differences of it.
    type Rows = Tensor<(usize, Const<HEAD_INPUTS>), f32, Cpu, OwnedTape<f32, Cpu>>;

    fn check_against_reference<M>(
        adam: &mut AdamStep<M>,
        x: &[f32],
        y: &[f32],
        loss_f64: &dyn Fn(&[f64]) -> f64,
    ) where
        M: TensorCollection<f32, Cpu> + ModuleMut<Rows, Error = CpuError>,
        <M as ModuleMut<Rows>>::Output: Outputs,
    {
        let n = y.len();
        let (step, d) = adam
            .step(
                x.to_vec(),
                (n, Const::<HEAD_INPUTS>),
                y.to_vec(),
                InputGradient::Keep,
            )
            .unwrap();
        let d = d.expect("a finite loss hands back the input's gradient");
        let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
        let loss = loss_f64(&x64);
        assert!(
            (step.loss as f64 - loss).abs() < 1e-5,
            "{} vs {loss}",
            step.loss
        );
        let h = 1e-4;
        let (mut worst, mut scale) = (0.0f64, 0.0f64);
        for i in 0..x64.len() {
            let (mut plus, mut minus) = (x64.clone(), x64.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_f64(&plus) - loss_f64(&minus)) / (2.0 * h);
            worst = worst.max((fd - d[i] as f64).abs());
            scale = scale.max(fd.abs());
        }
        assert!(scale > 1e-3, "the loss depends on the features ({scale})");
        assert!(worst < 1e-3 * scale, "worst error {worst} of {scale}");
    }

    #[test]
    fn a_three_class_step_gives_the_reference_loss_and_the_finite_difference_gradient() {
        use crate::model::head::{hidden_net, HiddenNet};
        let head = HeadSpec::new(UNITS, 0.0).unwrap().with_classes(3).unwrap();
        let weights = HeadWeights::glorot(&head, 3);
        let n = 6;
        let x = rows(n);
        let y = vec![0.0, 1.0, 2.0, 2.0, 1.0, 0.0];
        for class_weights in [None, Some(vec![0.5, 2.0, 1.25])] {
            let (net, top): (HiddenNet<UNITS>, _) =
                hidden_net(&Cpu::default(), &head, &weights).unwrap();
            // The step's logits are the output layer's on the hidden layer: checked there.
            let objective = Objective {
                top: Some(top),
                class_weights: class_weights.clone(),
            };
            let mut adam = AdamStep::with_objective(net, AdamSettings::default(), 0, objective);
            let before = adam.logits(x.clone(), (n, Const::<HEAD_INPUTS>)).unwrap();
            assert_eq!(before.len(), n * 3);
            check_against_reference(&mut adam, &x, &y, &|x64| {
                softmax_loss_f64(&weights, x64, &y, class_weights.as_deref())
            });
            // Both layers moved, the last one by the hand-written Adam.
            let mut after = crate::model::weights::ModelWeights {
                base: crate::model::weights::BaseWeights::he(0),
                head: weights.clone(),
            };
            adam.export(&mut after).unwrap();
            assert_eq!(after.head.outputs(), 3);
            for k in 0..4 {
                assert_ne!(after.head.values()[k], weights.values()[k], "tensor {k}");
            }
        }
    }

    #[test]
    fn a_class_weighted_binary_step_gives_the_reference_loss_and_gradient() {
        let head = HeadSpec::new(UNITS, 0.0).unwrap();
        let weights = HeadWeights::glorot(&head, 3);
        let n = 4;
        let x = rows(n);
        let y = vec![1.0, 0.0, 1.0, 1.0];
        let w = [3.0, 0.5];
        let net: HeadNet<UNITS> = head_net(&Cpu::default(), &head, &weights).unwrap();
        let objective = Objective {
            top: None,
            class_weights: Some(w.to_vec()),
        };
        let mut adam = AdamStep::with_objective(net, AdamSettings::default(), 0, objective);
        let weighted = |x64: &[f64]| {
            // Per row: the unweighted loss of that row alone, weighed by its class.
            let total: f64 = (0..n)
                .map(|i| {
                    let row = &x64[i * HEAD_INPUTS..(i + 1) * HEAD_INPUTS];
                    w[y[i] as usize] * loss_f64(&weights, row, &y[i..i + 1])
                })
                .sum();
            total / n as f64
        };
        check_against_reference(&mut adam, &x, &y, &weighted);
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
