//! The classification head on the pooled VGG16 features: dense `U` + ReLU, dropout, dense 1.
//! It outputs a logit; the probability is its sigmoid (Keras' `Dense(1, "sigmoid")`).
//!
//! Training uses the logit with `binary_cross_entropy_with_logits_loss`, which equals Keras'
//! sigmoid + binary cross-entropy but stays finite for confident predictions.
//!
//! The hidden width is a compile-time constant (dfdx parameter tensors need constant shapes);
//! [`AnyHead`] chooses among [`SUPPORTED_UNITS`] at run time and [`with_head!`] runs generic
//! code on whichever it holds.

use super::error::ModelError;
use super::init;
use super::vgg16::VGG16_OUT_CHANNELS;
use dfdx::nn::modules::{Dropout, Linear, ReLU};
use dfdx::prelude::*;

/// Input width of the head: the pooled, flattened base output.
pub const HEAD_INPUTS: usize = VGG16_OUT_CHANNELS;

/// The head as a dfdx module: `forward` (no tape) predicts, `forward_mut` with an
/// `OwnedTape` trains (dropout active). Output `[B, 1]` logits.
pub type HeadNet<const U: usize> = (
    Linear<HEAD_INPUTS, U, f32, Cpu>,
    ReLU,
    Dropout,
    Linear<U, 1, f32, Cpu>,
);

/// Hidden widths with a compiled head.
pub const SUPPORTED_UNITS: [usize; 6] = [16, 32, 64, 128, 256, 512];

/// A head of any supported width.
#[derive(Debug, Clone)]
pub enum AnyHead {
    U16(HeadNet<16>),
    U32(HeadNet<32>),
    U64(HeadNet<64>),
    U128(HeadNet<128>),
    U256(HeadNet<256>),
    U512(HeadNet<512>),
}

/// Runs `$body` with `$h` bound to the concrete head inside `$head` (an `AnyHead`, `&AnyHead`
/// or `&mut AnyHead`), so generic code (e.g. a training loop over `HeadNet<U>` with dfdx's
/// Adam) works on whichever width the config chose.
///
/// ```ignore
/// with_head!(&mut model.head, h => train_loop(h, &features, &labels))
/// ```
#[macro_export]
macro_rules! with_head {
    ($head:expr, $h:ident => $body:expr) => {
        match $head {
            $crate::model::head::AnyHead::U16($h) => $body,
            $crate::model::head::AnyHead::U32($h) => $body,
            $crate::model::head::AnyHead::U64($h) => $body,
            $crate::model::head::AnyHead::U128($h) => $body,
            $crate::model::head::AnyHead::U256($h) => $body,
            $crate::model::head::AnyHead::U512($h) => $body,
        }
    };
}
pub use with_head;

/// Checkpoint names of the head's tensors, PyTorch `Linear` layout (`weight` is `[out, in]`).
pub const HEAD_TENSORS: [&str; 4] = [
    "head.dense1.weight",
    "head.dense1.bias",
    "head.dense2.weight",
    "head.dense2.bias",
];

fn build<const U: usize>(dev: &Cpu, seed: u64, dropout: f32) -> HeadNet<U> {
    let mut h: HeadNet<U> = BuildModule::build(dev);
    h.0.weight
        .copy_from(&init::dense_kernel(seed, HEAD_TENSORS[0], HEAD_INPUTS, U));
    h.0.bias.copy_from(&vec![0.0; U]);
    h.2 = Dropout { p: dropout };
    h.3.weight
        .copy_from(&init::dense_kernel(seed, HEAD_TENSORS[2], U, 1));
    h.3.bias.copy_from(&[0.0]);
    h
}

fn tensors<const U: usize>(h: &HeadNet<U>) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let get = |t: &dyn Fn(&mut [f32]), n: usize| {
        let mut v = vec![0.0; n];
        t(&mut v);
        v
    };
    vec![
        (
            HEAD_TENSORS[0],
            vec![U, HEAD_INPUTS],
            get(&|v| h.0.weight.copy_into(v), U * HEAD_INPUTS),
        ),
        (HEAD_TENSORS[1], vec![U], get(&|v| h.0.bias.copy_into(v), U)),
        (
            HEAD_TENSORS[2],
            vec![1, U],
            get(&|v| h.3.weight.copy_into(v), U),
        ),
        (HEAD_TENSORS[3], vec![1], get(&|v| h.3.bias.copy_into(v), 1)),
    ]
}

fn set<const U: usize>(h: &mut HeadNet<U>, values: &[Vec<f32>; 4]) {
    h.0.weight.copy_from(&values[0]);
    h.0.bias.copy_from(&values[1]);
    h.3.weight.copy_from(&values[2]);
    h.3.bias.copy_from(&values[3]);
}

fn logits<const U: usize>(
    h: &HeadNet<U>,
    dev: &Cpu,
    features: Vec<f32>,
    n: usize,
) -> Result<Vec<f32>, ModelError> {
    let x = dev.try_tensor_from_vec(features, (n, Const::<HEAD_INPUTS>))?;
    let y = h.try_forward(x)?;
    let mut out = vec![0.0; n];
    y.copy_into(&mut out);
    Ok(out)
}

impl AnyHead {
    /// A Glorot-initialised head (zero biases) of width `units`, deterministic from `seed`.
    pub fn glorot(dev: &Cpu, units: usize, dropout: f32, seed: u64) -> Result<Self, ModelError> {
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelError::InvalidDropout(dropout));
        }
        Ok(match units {
            16 => AnyHead::U16(build(dev, seed, dropout)),
            32 => AnyHead::U32(build(dev, seed, dropout)),
            64 => AnyHead::U64(build(dev, seed, dropout)),
            128 => AnyHead::U128(build(dev, seed, dropout)),
            256 => AnyHead::U256(build(dev, seed, dropout)),
            512 => AnyHead::U512(build(dev, seed, dropout)),
            _ => {
                return Err(ModelError::UnsupportedUnits {
                    units,
                    supported: SUPPORTED_UNITS.map(|u| u.to_string()).join(", "),
                })
            }
        })
    }

    /// Hidden width.
    pub fn units(&self) -> usize {
        with_head!(self, h => h.0.bias.shape().0.size())
    }

    /// Dropout rate used in training.
    pub fn dropout(&self) -> f32 {
        with_head!(self, h => h.2.p)
    }

    /// Number of parameters (all trainable): `513 U + U + 1`.
    pub fn num_params(&self) -> usize {
        let u = self.units();
        HEAD_INPUTS * u + u + u + 1
    }

    /// The head's tensors as (checkpoint name, shape, values), in [`HEAD_TENSORS`] order.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        with_head!(self, h => tensors(h))
    }

    /// Replaces the parameters (values in [`HEAD_TENSORS`] order, shapes already checked).
    pub fn set_tensors(&mut self, values: &[Vec<f32>; 4]) {
        with_head!(self, h => set(h, values))
    }

    /// Logits for `n` feature rows (`features` is `[n, 512]`), no dropout.
    pub fn logits(&self, dev: &Cpu, features: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        if features.len() != n * HEAD_INPUTS {
            return Err(ModelError::InputLength {
                what: "head features",
                got: features.len(),
                expected: n * HEAD_INPUTS,
                detail: format!("{n} rows of {HEAD_INPUTS}"),
            });
        }
        with_head!(self, h => logits(h, dev, features.to_vec(), n))
    }
}

/// The logistic function, `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::optim::{Adam, AdamConfig, Optimizer};

    /// A training loop generic over the width, driven through `with_head!`.
    fn train<const U: usize>(
        h: &mut HeadNet<U>,
        dev: &Cpu,
        x: &[f32],
        y: &[f32],
        n: usize,
    ) -> (f32, f32) {
        let xs = dev.tensor_from_vec(x.to_vec(), (n, Const::<HEAD_INPUTS>));
        let ys = dev.tensor_from_vec(y.to_vec(), (n, Const::<1>));
        let mut opt = Adam::new(
            h,
            AdamConfig {
                lr: 1e-3,
                ..Default::default()
            },
        );
        let mut grads = h.alloc_grads();
        let mut first = 0.0;
        let mut last = 0.0;
        for step in 0..60 {
            let logits = h.forward_mut(xs.trace(grads));
            let loss = binary_cross_entropy_with_logits_loss(logits, ys.clone());
            last = loss.array();
            if step == 0 {
                first = last;
            }
            grads = loss.backward();
            opt.update(h, &grads).unwrap();
            h.zero_grads(&mut grads);
        }
        (first, last)
    }

    #[test]
    fn seed_head_has_32897_params_and_learns_a_separable_problem() {
        let dev = Cpu::seed_from_u64(0);
        let mut head = AnyHead::glorot(&dev, 64, 0.2, 1).unwrap();
        assert_eq!(head.num_params(), 32_897);
        assert_eq!(head.units(), 64);
        let n = 16;
        let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let x: Vec<f32> = (0..n * HEAD_INPUTS)
            .map(|i| if (i / HEAD_INPUTS) % 2 == 1 { 0.5 } else { -0.5 } * ((i % 7) as f32 / 7.0))
            .collect();
        let (first, last) = with_head!(&mut head, h => train(h, &dev, &x, &y, n));
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        let p: Vec<f32> = head
            .logits(&dev, &x, n)
            .unwrap()
            .into_iter()
            .map(sigmoid)
            .collect();
        for (p, y) in p.iter().zip(&y) {
            assert_eq!((*p > 0.5) as i32 as f32, *y, "probabilities {p}");
        }
    }

    #[test]
    fn unsupported_units_and_dropout_are_errors() {
        let dev = Cpu::default();
        let e = AnyHead::glorot(&dev, 65, 0.2, 0).unwrap_err().to_string();
        assert_eq!(
            e,
            "head units 65 not supported; supported: 16, 32, 64, 128, 256, 512"
        );
        assert!(AnyHead::glorot(&dev, 64, 1.0, 0).is_err());
    }
}
