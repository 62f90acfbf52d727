//! Training the whole network on the CPU: the base (through the project's conv and pool
//! backward passes), its pooling and the shared head, one dfdx network stepped by the shared
//! host step ([`crate::model::host_step`]). The head alone trains through
//! [`crate::model::head`], the same for every backend.

use super::layers::{AvgPool, Flatten};
use super::vgg16::{Vgg16Base, Vgg16Features};
use crate::model::backend::Trainer;
use crate::model::head::{head_net, hidden_net, HeadNet, HiddenNet};
use crate::model::host_step::{Export, HostTrainer, Objective};
use crate::model::spec::{AdamSettings, ConvAlgorithm, HeadSpec, HEAD_INPUTS};
use crate::model::weights::ModelWeights;
use crate::model::ModelError;
use dfdx::prelude::*;

/// Validation images per forward pass when the whole network trains: bounds the activations
/// (about 60 MB per 237 x 237 image); images per gradient step are the caller's batch size.
const NETWORK_EVAL_BATCH: usize = 8;

/// The whole network: base for side `S0` (pooled sizes `S1..S5`), pooling `K`, head `H`
/// ([`HeadNet`] for two classes, [`HiddenNet`] for more).
type WholeNet<
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
    H,
> = (
    Vgg16Base<S1, S2, S3, S4, S5, f32, Cpu>,
    AvgPool<K, 1, 1>,
    Flatten<HEAD_INPUTS>,
    H,
);

impl<
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
        H: Export,
    > Export for WholeNet<S1, S2, S3, S4, S5, K, H>
{
    fn export(
        &self,
        weights: &mut ModelWeights,
        top: Option<(&[f32], &[f32])>,
    ) -> Result<(), ModelError> {
        weights.base = self.0.features.to_weights()?;
        self.3.export(weights, top)
    }
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
    class_weights: Option<&[f64]>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let dev = Cpu::default();
    let base = Vgg16Base {
        features: Vgg16Features::from_weights(&dev, &weights.base)?,
        conv,
    };
    let class_weights = class_weights.map(<[f64]>::to_vec);
    let images = |n| (n, Const::<S0>, Const::<S0>, Const::<3>);
    if head.is_binary() {
        let net: WholeNet<S1, S2, S3, S4, S5, K, HeadNet<U>> = (
            base,
            AvgPool::<K, 1, 1>,
            Flatten::<HEAD_INPUTS>,
            head_net(&dev, head, &weights.head)?,
        );
        let objective = Objective {
            top: None,
            class_weights,
        };
        Ok(Box::new(HostTrainer::new(
            net,
            adam,
            seed,
            objective,
            images,
            S0 * S0 * 3,
            NETWORK_EVAL_BATCH,
        )))
    } else {
        let (hidden, top) = hidden_net::<U>(&dev, head, &weights.head)?;
        let net: WholeNet<S1, S2, S3, S4, S5, K, HiddenNet<U>> =
            (base, AvgPool::<K, 1, 1>, Flatten::<HEAD_INPUTS>, hidden);
        let objective = Objective {
            top: Some(top),
            class_weights,
        };
        Ok(Box::new(HostTrainer::new(
            net,
            adam,
            seed,
            objective,
            images,
            S0 * S0 * 3,
            NETWORK_EVAL_BATCH,
        )))
    }
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
            .head_trainer(head, &initial, AdamSettings::default(), None, 0)
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
                .head_trainer(head, &w, AdamSettings::default(), None, seed)
                .unwrap();
            (0..3)
                .map(|_| t.step(x.clone(), y.clone()).unwrap().loss.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7), "same seed, same masks, same bits");
        assert_ne!(run(7), run(8), "the seed draws the dropout masks");
    }

    #[test]
    fn a_three_class_whole_network_trains_and_agrees_with_the_feature_path() {
        let spec =
            NetworkSpec::new(ImageSize::S32, Pooling::Global, ConvAlgorithm::Direct).unwrap();
        let head = HeadSpec::new(16, 0.0).unwrap().with_classes(3).unwrap();
        let model = Model {
            spec,
            head,
            weights: ModelWeights {
                base: BaseWeights::he(5),
                head: HeadWeights::glorot(&head, 5),
            },
            classes: ["A", "B", "C"].map(String::from).to_vec(),
        };
        let n = 3;
        let images: Vec<f32> = data(n * spec.image_len(), 11)
            .iter()
            .map(|v| 0.5 + 0.5 * v)
            .collect();
        let mut trainer = CpuBackend
            .network_trainer(spec, head, &model.weights, AdamSettings::default(), None, 0)
            .unwrap();
        assert_eq!(trainer.outputs(), 3);
        let whole = trainer.logits(images.clone(), n).unwrap();
        assert_eq!(whole.len(), n * 3);
        let extractor = CpuBackend
            .feature_extractor(spec, &model.weights.base)
            .unwrap();
        let features = pooled_features(extractor.as_ref(), &spec, &images, n, &NoProgress).unwrap();
        let split =
            inference::head_logits(&CpuBackend, head, &model.weights.head, &features, n).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&whole), bits(&split));

        let step = trainer.step(images.clone(), vec![2.0, 0.0, 1.0]).unwrap();
        assert!(step.loss.is_finite() && step.loss > 0.0);
        assert_eq!(
            bits(&step.logits),
            bits(&whole),
            "no dropout: the same forward"
        );
        let mut trained = model.weights.clone();
        trainer.export(&mut trained).unwrap();
        assert_ne!(trained.base, model.weights.base, "the base moved");
        assert_eq!(trained.head.outputs(), 3);
        assert_ne!(trained.head.values()[2], model.weights.head.values()[2]);
        // Its logits after the step are the feature path's on the exported weights.
        let after = trainer.logits(images.clone(), n).unwrap();
        let extractor = CpuBackend.feature_extractor(spec, &trained.base).unwrap();
        let features = pooled_features(extractor.as_ref(), &spec, &images, n, &NoProgress).unwrap();
        let split = inference::head_logits(&CpuBackend, head, &trained.head, &features, n).unwrap();
        assert_eq!(bits(&after), bits(&split));
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
            classes: crate::model::spec::default_classes(),
        };
        let n = 4;
        let images: Vec<f32> = data(n * spec.image_len(), 11)
            .iter()
            .map(|v| 0.5 + 0.5 * v)
            .collect();
        let mut trainer = CpuBackend
            .network_trainer(spec, head, &model.weights, AdamSettings::default(), None, 0)
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
