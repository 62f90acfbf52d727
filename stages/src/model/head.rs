//! The classification head as a dfdx module: dense `U` + ReLU, dropout, dense 1, outputting a
//! logit (the probability is its sigmoid, Keras' `Dense(1, "sigmoid")`).
//!
//! Training uses the logit with `binary_cross_entropy_with_logits_loss`, which equals Keras'
//! sigmoid + binary cross-entropy but stays finite for confident predictions. The hidden width
//! is a compile-time constant (dfdx parameter tensors need constant shapes); the backend picks
//! it with `geometry::with_units!`.

use crate::model::spec::{HeadSpec, HEAD_INPUTS};
use crate::model::weights::{HeadWeights, ModelWeights};
use crate::model::ModelError;
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
