//! Training on the CPU: dfdx's Adam on the mean binary cross-entropy of the logit, for the
//! head alone (on features) or the whole network (on images, through the project's conv and
//! pool backward passes). The Keras `fit` loop above it is [`crate::fit`].

use super::head::{export_head, head_net, HeadNet};
use super::layers::{AvgPool, Flatten};
use super::vgg16::{Vgg16Base, Vgg16Features};
use crate::model::backend::{Step, Trainer};
use crate::model::spec::{AdamSettings, ConvAlgorithm, HeadSpec, HEAD_INPUTS};
use crate::model::weights::{HeadWeights, ModelWeights};
use crate::model::ModelError;
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;

/// Validation images per forward pass when the whole network trains: bounds the activations
/// (about 60 MB per 237 x 237 image); images per gradient step are the caller's batch size.
const NETWORK_EVAL_BATCH: usize = 8;

type Logits<T = NoneTape> = Tensor<(usize, Const<1>), f32, Cpu, T>;

/// A network that can hand its trained parameters back to the host.
pub(super) trait Export {
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError>;
}

impl<const U: usize> Export for HeadNet<U> {
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        export_head(self, weights)
    }
}

/// The whole network: base for side `S0` (pooled sizes `S1..S5`), pooling `K`, head `U`.
type WholeNet<
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
    const U: usize,
> = (
    Vgg16Base<S1, S2, S3, S4, S5, f32, Cpu>,
    AvgPool<K, 1, 1>,
    Flatten<HEAD_INPUTS>,
    HeadNet<U>,
);

impl<
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
        const U: usize,
    > Export for WholeNet<S1, S2, S3, S4, S5, K, U>
{
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        weights.base = self.0.features.to_weights()?;
        export_head(&self.3, weights)
    }
}

/// Adam on network `M`, whose input rows form tensors of shape `S`.
pub(super) struct CpuTrainer<S: Shape, M: TensorCollection<f32, Cpu>> {
    net: M,
    opt: Adam<M, f32, Cpu>,
    /// Gradient buffers, reused from step to step (`None` until the first step).
    grads: Option<Gradients<f32, Cpu>>,
    /// Holds the batches; its generator, seeded, draws the dropout masks (dfdx's dropout
    /// draws from the device of its input), so it is used for nothing else.
    dev: Cpu,
    shape: fn(usize) -> S,
    row_len: usize,
    eval_batch: usize,
}

impl<S: Shape, M> CpuTrainer<S, M>
where
    M: TensorCollection<f32, Cpu>,
{
    fn new(
        net: M,
        adam: AdamSettings,
        seed: u64,
        shape: fn(usize) -> S,
        row_len: usize,
        eval_batch: usize,
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
            grads: None,
            dev: Cpu::seed_from_u64(seed),
            shape,
            row_len,
            eval_batch,
        }
    }
}

impl<S: Shape, M> Trainer for CpuTrainer<S, M>
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
        let n = targets.len();
        let xs = self.dev.try_tensor_from_vec(rows, (self.shape)(n))?;
        let ys = self.dev.try_tensor_from_vec(targets, (n, Const::<1>))?;
        let grads = match self.grads.take() {
            Some(g) => g,
            None => self.net.try_alloc_grads()?,
        };
        let logits = self.net.try_forward_mut(xs.traced(grads))?;
        let mut batch_logits = vec![0.0; n];
        logits.copy_into(&mut batch_logits);
        let loss = binary_cross_entropy_with_logits_loss(logits, ys);
        let value = loss.array();
        if !value.is_finite() {
            // The caller stops here; the buffers are rebuilt if it goes on.
            return Ok(Step {
                loss: value,
                logits: batch_logits,
            });
        }
        let mut grads = loss.backward();
        self.opt
            .update(&mut self.net, &grads)
            .map_err(|e| ModelError::Device(format!("{e:?}")))?;
        self.net.try_zero_grads(&mut grads)?;
        self.grads = Some(grads);
        Ok(Step {
            loss: value,
            logits: batch_logits,
        })
    }

    fn logits(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ModelError> {
        let xs = self.dev.try_tensor_from_vec(rows, (self.shape)(n))?;
        let out = self.net.try_forward(xs)?;
        let mut logits = vec![0.0; n];
        out.copy_into(&mut logits);
        Ok(logits)
    }

    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        self.net.export(weights)
    }
}

/// A trainer of the head of width `U` on feature rows.
pub(super) fn head_trainer<const U: usize>(
    head: &HeadSpec,
    weights: &HeadWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let net: HeadNet<U> = head_net(&Cpu::default(), head, weights)?;
    Ok(Box::new(CpuTrainer::new(
        net,
        adam,
        seed,
        |n| (n, Const::<HEAD_INPUTS>),
        HEAD_INPUTS,
        // The head is small: the validation rows go through in one pass.
        usize::MAX,
    )))
}

/// A trainer of the whole network for side `S0` (pooled sizes `S1..S5`), pooling `K` and
/// head width `U`, on NHWC image rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn network_trainer<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
    const U: usize,
>(
    conv: ConvAlgorithm,
    head: &HeadSpec,
    weights: &ModelWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let dev = Cpu::default();
    let net: WholeNet<S1, S2, S3, S4, S5, K, U> = (
        Vgg16Base {
            features: Vgg16Features::from_weights(&dev, &weights.base)?,
            conv,
        },
        AvgPool::<K, 1, 1>,
        Flatten::<HEAD_INPUTS>,
        head_net(&dev, head, &weights.head)?,
    );
    Ok(Box::new(CpuTrainer::new(
        net,
        adam,
        seed,
        |n| (n, Const::<S0>, Const::<S0>, Const::<3>),
        S0 * S0 * 3,
        NETWORK_EVAL_BATCH,
    )))
}

#[cfg(test)]
mod tests {
    use crate::model::cpu::ops::test_util::data;
    use crate::model::inference::{self, pooled_features};
    use crate::model::size::{ImageSize, Pooling};
    use crate::model::spec::{AdamSettings, ConvAlgorithm, HeadSpec, NetworkSpec, HEAD_INPUTS};
    use crate::model::weights::{BaseWeights, HeadWeights, ModelWeights};
    use crate::model::{Backend, CpuBackend, Model};
    use crate::progress::NoProgress;

    /// A separable problem on feature rows: label 1 rows lean positive, label 0 negative.
    fn separable(n: usize) -> (Vec<f32>, Vec<f32>) {
        let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let x: Vec<f32> = (0..n * HEAD_INPUTS)
            .map(|i| if (i / HEAD_INPUTS) % 2 == 1 { 0.5 } else { -0.5 } * ((i % 7) as f32 / 7.0))
            .collect();
        (x, y)
    }

    #[test]
    fn the_seed_head_learns_a_separable_problem_and_exports_what_it_learned() {
        let head = HeadSpec::new(64, 0.2).unwrap();
        assert_eq!(head.num_params(), 32_897);
        let initial = HeadWeights::glorot(&head, 1);
        let mut trainer = CpuBackend
            .head_trainer(head, &initial, AdamSettings::default(), 0)
            .unwrap();
        let n = 16;
        let (x, y) = separable(n);
        let first = trainer.step(x.clone(), y.clone()).unwrap().loss;
        let mut last = first;
        for _ in 0..59 {
            last = trainer.step(x.clone(), y.clone()).unwrap().loss;
        }
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        let logits = trainer.logits(x.clone(), n).unwrap();
        for (l, y) in logits.iter().zip(&y) {
            assert_eq!((*l > 0.0) as i32 as f32, *y, "logit {l}");
        }

        // The exported head gives the trainer's logits bit for bit through a fresh backend
        // head, and the base it was handed is left as it was.
        let base = BaseWeights::he(0);
        let mut weights = ModelWeights {
            base: base.clone(),
            head: initial.clone(),
        };
        trainer.export(&mut weights).unwrap();
        assert_ne!(weights.head, initial);
        assert_eq!(weights.base, base);
        let again = inference::head_logits(&CpuBackend, head, &weights.head, &x, n).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&again), bits(&logits));
    }

    #[test]
    fn a_step_with_dropout_is_repeatable_from_the_seed() {
        let head = HeadSpec::new(16, 0.5).unwrap();
        let w = HeadWeights::glorot(&head, 3);
        let (x, y) = separable(8);
        let run = |seed| {
            let mut t = CpuBackend
                .head_trainer(head, &w, AdamSettings::default(), seed)
                .unwrap();
            (0..3)
                .map(|_| t.step(x.clone(), y.clone()).unwrap().loss.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7), "same seed, same masks, same bits");
        assert_ne!(run(7), run(8), "the seed draws the dropout masks");
    }

    #[test]
    fn the_whole_network_trains_its_base_and_agrees_with_the_feature_path() {
        let spec =
            NetworkSpec::new(ImageSize::S32, Pooling::Global, ConvAlgorithm::Direct).unwrap();
        let head = HeadSpec::new(16, 0.0).unwrap();
        let model = Model {
            spec,
            head,
            weights: ModelWeights {
                base: BaseWeights::he(5),
                head: HeadWeights::glorot(&head, 5),
            },
        };
        let n = 4;
        let images: Vec<f32> = data(n * spec.image_len(), 11)
            .iter()
            .map(|v| 0.5 + 0.5 * v)
            .collect();
        let mut trainer = CpuBackend
            .network_trainer(spec, head, &model.weights, AdamSettings::default(), 0)
            .unwrap();
        assert_eq!(trainer.row_len(), 32 * 32 * 3);

        // Before any step the whole network's logits are the feature path's, bit for bit.
        let whole = trainer.logits(images.clone(), n).unwrap();
        let extractor = CpuBackend
            .feature_extractor(spec, &model.weights.base)
            .unwrap();
        let features = pooled_features(extractor.as_ref(), &spec, &images, n, &NoProgress).unwrap();
        let split =
            inference::head_logits(&CpuBackend, head, &model.weights.head, &features, n).unwrap();
        assert_eq!(
            whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            split.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );

        let targets = vec![1.0, 0.0, 1.0, 0.0];
        let step = trainer.step(images.clone(), targets).unwrap();
        assert!(step.loss.is_finite());
        assert_eq!(
            step.logits, whole,
            "no dropout: the step's forward is the same"
        );
        let mut trained = model.weights.clone();
        trainer.export(&mut trained).unwrap();
        assert_ne!(trained.base, model.weights.base, "the base moved");
        assert_ne!(trained.head, model.weights.head, "the head moved");
    }
}
