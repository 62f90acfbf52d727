//! The classification head, the same for every backend: a dfdx module on the host, dense
//! `U` + ReLU, dropout, then for two classes dense 1, outputting a logit (the probability is
//! its sigmoid, Keras' `Dense(1, "sigmoid")`), for `C >= 3` classes dense `C` (an
//! [`OutputLayer`] on the host; the probabilities are the logits' softmax); and its trainer
//! on feature rows. The two-class head is the seed's, unchanged bit for bit.
//!
//! Training uses the logit with `binary_cross_entropy_with_logits_loss`, which equals Keras'
//! sigmoid + binary cross-entropy but stays finite for confident predictions (the step is
//! [`super::host_step`]). The hidden width is a compile-time constant (dfdx parameter tensors
//! need constant shapes), picked with `geometry::with_units!`.

use super::backend::Trainer;
use super::error::ModelError;
use super::geometry::with_units;
use super::host_step::{Export, HostTrainer, Objective};
use super::output_layer::OutputLayer;
use super::spec::{AdamSettings, HeadSpec, HEAD_INPUTS};
use super::weights::{HeadWeights, ModelWeights};
use dfdx::nn::modules::{Dropout, Linear, ReLU};
use dfdx::prelude::*;

/// The two-class head: `forward` (no tape) predicts, `forward_mut` with an `OwnedTape`
/// trains (dropout active). Output `[B, 1]` logits.
pub type HeadNet<const U: usize> = (
    Linear<HEAD_INPUTS, U, f32, Cpu>,
    ReLU,
    Dropout,
    Linear<U, 1, f32, Cpu>,
);

/// The `C >= 3` head's layers in dfdx: all but the last, whose width is known only at run
/// time ([`OutputLayer`]). Output `[B, U]`, the hidden layer after dropout.
pub type HiddenNet<const U: usize> = (Linear<HEAD_INPUTS, U, f32, Cpu>, ReLU, Dropout);

/// Checks that `weights` and `spec` are a head of width `U` with `spec`'s outputs.
fn check_width<const U: usize>(spec: &HeadSpec, weights: &HeadWeights) -> Result<(), ModelError> {
    if weights.units() != U || spec.units() != U {
        return Err(ModelError::UnsupportedUnits {
            units: weights.units(),
            supported: U.to_string(),
        });
    }
    if weights.outputs() != spec.outputs() {
        return Err(ModelError::InputLength {
            what: "head weights",
            got: weights.outputs(),
            expected: spec.outputs(),
            detail: format!("outputs of a head of {} classes", spec.classes()),
        });
    }
    Ok(())
}

/// The two-class head of width `U` holding `weights`, with `spec`'s dropout.
pub(crate) fn head_net<const U: usize>(
    dev: &Cpu,
    spec: &HeadSpec,
    weights: &HeadWeights,
) -> Result<HeadNet<U>, ModelError> {
    check_width::<U>(spec, weights)?;
    let mut h: HeadNet<U> = BuildModule::try_build(dev)?;
    let [w1, b1, w2, b2] = weights.values();
    h.0.weight.copy_from(w1);
    h.0.bias.copy_from(b1);
    h.2 = Dropout { p: spec.dropout() };
    h.3.weight.copy_from(w2);
    h.3.bias.copy_from(b2);
    Ok(h)
}

/// The `C >= 3` head of width `U` holding `weights`: its dfdx layers and its last layer.
pub(crate) fn hidden_net<const U: usize>(
    dev: &Cpu,
    spec: &HeadSpec,
    weights: &HeadWeights,
) -> Result<(HiddenNet<U>, OutputLayer), ModelError> {
    check_width::<U>(spec, weights)?;
    let mut h: HiddenNet<U> = BuildModule::try_build(dev)?;
    let [w1, b1, w2, b2] = weights.values();
    h.0.weight.copy_from(w1);
    h.0.bias.copy_from(b1);
    h.2 = Dropout { p: spec.dropout() };
    Ok((h, OutputLayer::new(U, w2.clone(), b2.clone())))
}

/// The values of a dfdx tensor.
fn values_of<S: Shape>(t: &Tensor<S, f32, Cpu>) -> Vec<f32> {
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Copies the two-class head's parameters into `weights.head`.
pub(crate) fn export_head<const U: usize>(
    h: &HeadNet<U>,
    weights: &mut ModelWeights,
) -> Result<(), ModelError> {
    weights.head = HeadWeights::new(
        U,
        [
            values_of(&h.0.weight),
            values_of(&h.0.bias),
            values_of(&h.3.weight),
            values_of(&h.3.bias),
        ],
    )?;
    Ok(())
}

impl<const U: usize> Export for HeadNet<U> {
    fn export(
        &self,
        weights: &mut ModelWeights,
        _top: Option<(&[f32], &[f32])>,
    ) -> Result<(), ModelError> {
        export_head(self, weights)
    }
}

impl<const U: usize> Export for HiddenNet<U> {
    fn export(
        &self,
        weights: &mut ModelWeights,
        top: Option<(&[f32], &[f32])>,
    ) -> Result<(), ModelError> {
        let (w2, b2) = top.ok_or_else(|| {
            ModelError::Device("a C-class head exported without its last layer".into())
        })?;
        weights.head = HeadWeights::new(
            U,
            [
                values_of(&self.0.weight),
                values_of(&self.0.bias),
                w2.to_vec(),
                b2.to_vec(),
            ],
        )?;
        Ok(())
    }
}

/// A trainer of the head alone on rows of pooled features (`[n, 512]`), for every backend.
/// `seed` seeds the dropout masks; `class_weights` (one per class) weighs the loss as Keras'
/// `class_weight`.
pub(crate) fn head_trainer(
    head: HeadSpec,
    weights: &HeadWeights,
    adam: AdamSettings,
    class_weights: Option<&[f64]>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    with_units!(
        head.units(),
        trainer_of_width(&head, weights, adam, class_weights, seed)
    )
}

fn trainer_of_width<const U: usize>(
    head: &HeadSpec,
    weights: &HeadWeights,
    adam: AdamSettings,
    class_weights: Option<&[f64]>,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let class_weights = class_weights.map(<[f64]>::to_vec);
    let dev = Cpu::default();
    // The head is small: the validation rows go through in one pass.
    let rows = |n| (n, Const::<HEAD_INPUTS>);
    if head.is_binary() {
        let net: HeadNet<U> = head_net(&dev, head, weights)?;
        let objective = Objective {
            top: None,
            class_weights,
        };
        Ok(Box::new(HostTrainer::new(
            net,
            adam,
            seed,
            objective,
            rows,
            HEAD_INPUTS,
            usize::MAX,
        )))
    } else {
        let (net, top) = hidden_net::<U>(&dev, head, weights)?;
        let objective = Objective {
            top: Some(top),
            class_weights,
        };
        Ok(Box::new(HostTrainer::new(
            net,
            adam,
            seed,
            objective,
            rows,
            HEAD_INPUTS,
            usize::MAX,
        )))
    }
}
