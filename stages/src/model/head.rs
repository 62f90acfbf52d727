//! The classification head, the same for every backend: a dfdx module on the host, dense
//! `U` + ReLU, dropout, dense 1, outputting a logit (the probability is its sigmoid, Keras'
//! `Dense(1, "sigmoid")`), and its trainer on feature rows.
//!
//! Training uses the logit with `binary_cross_entropy_with_logits_loss`, which equals Keras'
//! sigmoid + binary cross-entropy but stays finite for confident predictions (the step is
//! [`super::host_step`]). The hidden width is a compile-time constant (dfdx parameter tensors
//! need constant shapes), picked with `geometry::with_units!`.

use super::backend::Trainer;
use super::error::ModelError;
use super::geometry::with_units;
use super::host_step::{Export, HostTrainer};
use super::spec::{AdamSettings, HeadSpec, HEAD_INPUTS};
use super::weights::{HeadWeights, ModelWeights};
use dfdx::nn::modules::{Dropout, Linear, ReLU};
use dfdx::prelude::*;

/// The head: `forward` (no tape) predicts, `forward_mut` with an `OwnedTape` trains (dropout
/// active). Output `[B, 1]` logits.
pub type HeadNet<const U: usize> = (
    Linear<HEAD_INPUTS, U, f32, Cpu>,
    ReLU,
    Dropout,
    Linear<U, 1, f32, Cpu>,
);

/// The head of width `U` holding `weights`, with `spec`'s dropout.
pub(crate) fn head_net<const U: usize>(
    dev: &Cpu,
    spec: &HeadSpec,
    weights: &HeadWeights,
) -> Result<HeadNet<U>, ModelError> {
    if weights.units() != U || spec.units() != U {
        return Err(ModelError::UnsupportedUnits {
            units: weights.units(),
            supported: U.to_string(),
        });
    }
    let mut h: HeadNet<U> = BuildModule::try_build(dev)?;
    let [w1, b1, w2, b2] = weights.values();
    h.0.weight.copy_from(w1);
    h.0.bias.copy_from(b1);
    h.2 = Dropout { p: spec.dropout() };
    h.3.weight.copy_from(w2);
    h.3.bias.copy_from(b2);
    Ok(h)
}

/// Copies the head's parameters into `weights.head`.
pub(crate) fn export_head<const U: usize>(
    h: &HeadNet<U>,
    weights: &mut ModelWeights,
) -> Result<(), ModelError> {
    let get = |t: &dyn Fn(&mut [f32]), n: usize| {
        let mut v = vec![0.0; n];
        t(&mut v);
        v
    };
    weights.head = HeadWeights::new(
        U,
        [
            get(&|v| h.0.weight.copy_into(v), U * HEAD_INPUTS),
            get(&|v| h.0.bias.copy_into(v), U),
            get(&|v| h.3.weight.copy_into(v), U),
            get(&|v| h.3.bias.copy_into(v), 1),
        ],
    )?;
    Ok(())
}

impl<const U: usize> Export for HeadNet<U> {
    fn export(&self, weights: &mut ModelWeights) -> Result<(), ModelError> {
        export_head(self, weights)
    }
}

/// A trainer of the head alone on rows of pooled features (`[n, 512]`), for every backend.
/// `seed` seeds the dropout masks.
pub(crate) fn head_trainer(
    head: HeadSpec,
    weights: &HeadWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    with_units!(head.units(), trainer_of_width(&head, weights, adam, seed))
}

fn trainer_of_width<const U: usize>(
    head: &HeadSpec,
    weights: &HeadWeights,
    adam: AdamSettings,
    seed: u64,
) -> Result<Box<dyn Trainer>, ModelError> {
    let net: HeadNet<U> = head_net(&Cpu::default(), head, weights)?;
    Ok(Box::new(HostTrainer::new(
        net,
        adam,
        seed,
        |n| (n, Const::<HEAD_INPUTS>),
        HEAD_INPUTS,
        // The head is small: the validation rows go through in one pass.
        usize::MAX,
    )))
}
