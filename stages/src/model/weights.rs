//! The model's parameters on the host, in torchvision's names and layouts: what every backend
//! is built from and exports to, and what checkpoints hold.
//!
//! - Base: for each of the 13 convolutions of [`VGG16_FEATURES`], `features.{i}.weight`
//!   OIHW `[c_out, c_in, 3, 3]` and `features.{i}.bias` `[c_out]`.
//! - Head: `head.dense1.weight` `[units, 512]`, `head.dense1.bias` `[units]`,
//!   `head.dense2.weight` `[O, units]`, `head.dense2.bias` `[O]` (PyTorch `Linear` layout),
//!   `O` = 1 for two classes (a logit), else one output per class.
//!
//! The constructors check every length against the table, so a value of these types always
//! holds a complete, well-shaped set of tensors.

use super::error::ModelError;
use super::init;
use super::spec::{HeadSpec, HEAD_INPUTS};
use super::vgg16::{conv_layers, FeatureKind, VGG16_FEATURES};

/// One named tensor, borrowed: name, shape, values.
#[derive(Clone, Copy, Debug)]
pub struct NamedTensor<'a> {
    pub name: &'static str,
    pub shape: [usize; 4],
    /// How many of `shape`'s dimensions are used (1, 2 or 4).
    pub rank: usize,
    pub values: &'a [f32],
}

impl NamedTensor<'_> {
    pub fn dims(&self) -> &[usize] {
        &self.shape[..self.rank]
    }
}

/// One convolution's parameters: OIHW weight and bias.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The 13 convolutions of the base, in table order ([`conv_layers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BaseWeights {
    convs: Vec<ConvWeights>,
}

/// `(c_in, c_out, weight name, bias name)` of each convolution, in table order.
fn conv_shapes() -> impl Iterator<Item = (usize, usize, &'static str, &'static str)> {
    conv_layers().filter_map(|l| match l.kind {
        FeatureKind::Conv {
            c_in,
            c_out,
            weight,
            bias,
        } => Some((c_in, c_out, weight, bias)),
        FeatureKind::MaxPool => None,
    })
}

fn check_len(name: &str, values: &[f32], expected: usize) -> Result<(), ModelError> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(ModelError::InputLength {
            what: "weights",
            got: values.len(),
            expected,
            detail: format!("tensor `{name}`"),
        })
    }
}

impl BaseWeights {
    /// Builds the base by asking `tensor(name, shape)` for each tensor in table order
    /// (weight then bias of each convolution); every length is checked.
    pub fn try_from_fn(
        mut tensor: impl FnMut(&'static str, &[usize]) -> Result<Vec<f32>, ModelError>,
    ) -> Result<Self, ModelError> {
        let mut convs = Vec::with_capacity(13);
        for (c_in, c_out, weight_name, bias_name) in conv_shapes() {
            let weight = tensor(weight_name, &[c_out, c_in, 3, 3])?;
            check_len(weight_name, &weight, c_out * c_in * 9)?;
            let bias = tensor(bias_name, &[c_out])?;
            check_len(bias_name, &bias, c_out)?;
            convs.push(ConvWeights { weight, bias });
        }
        Ok(Self { convs })
    }

    /// Keras-default initialisation from `seed`: Glorot-uniform kernels, zero biases
    /// (see [`init`]).
    pub fn glorot(seed: u64) -> Self {
        Self::random(seed, init::conv_kernel)
    }

    /// He-uniform kernels, zero biases (see [`init::conv_kernel_he`]).
    pub fn he(seed: u64) -> Self {
        Self::random(seed, init::conv_kernel_he)
    }

    fn random(seed: u64, kernel: fn(u64, &str, usize, usize) -> Vec<f32>) -> Self {
        let convs = conv_shapes()
            .map(|(c_in, c_out, weight, _)| ConvWeights {
                weight: kernel(seed, weight, c_in, c_out),
                bias: vec![0.0; c_out],
            })
            .collect();
        Self { convs }
    }

    /// The convolutions in table order.
    pub fn convs(&self) -> &[ConvWeights] {
        &self.convs
    }

    /// The tensors in torchvision naming, table order (weight, then bias, per convolution).
    pub fn tensors(&self) -> Vec<NamedTensor<'_>> {
        conv_shapes()
            .zip(&self.convs)
            .flat_map(|((c_in, c_out, weight, bias), conv)| {
                [
                    NamedTensor {
                        name: weight,
                        shape: [c_out, c_in, 3, 3],
                        rank: 4,
                        values: &conv.weight,
                    },
                    NamedTensor {
                        name: bias,
                        shape: [c_out, 0, 0, 0],
                        rank: 1,
                        values: &conv.bias,
                    },
                ]
            })
            .collect()
    }

    /// Parameters of the whole base (14,714,688).
    pub fn num_params(&self) -> usize {
        VGG16_FEATURES.iter().map(|l| l.num_params()).sum()
    }
}

/// Checkpoint names of the head's tensors, PyTorch `Linear` layout (`weight` is `[out, in]`).
pub const HEAD_TENSORS: [&str; 4] = [
    "head.dense1.weight",
    "head.dense1.bias",
    "head.dense2.weight",
    "head.dense2.bias",
];

/// The head's parameters: dense `units` (weight `[units, 512]`, bias), dense `outputs`
/// (weight `[outputs, units]`, bias `[outputs]`): 1 output for two classes, else one per class.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadWeights {
    units: usize,
    outputs: usize,
    /// In [`HEAD_TENSORS`] order.
    values: [Vec<f32>; 4],
}

impl HeadWeights {
    /// The shapes of [`HEAD_TENSORS`] for a head of width `units` with `outputs` outputs.
    pub fn shapes(units: usize, outputs: usize) -> [Vec<usize>; 4] {
        [
            vec![units, HEAD_INPUTS],
            vec![units],
            vec![outputs, units],
            vec![outputs],
        ]
    }

    /// A head of width `units` from values in [`HEAD_TENSORS`] order; its number of outputs
    /// is the last bias's length (at least 1), and every length is checked.
    pub fn new(units: usize, values: [Vec<f32>; 4]) -> Result<Self, ModelError> {
        let outputs = values[3].len().max(1);
        for ((name, shape), v) in HEAD_TENSORS
            .iter()
            .zip(Self::shapes(units, outputs))
            .zip(&values)
        {
            check_len(name, v, shape.iter().product())?;
        }
        Ok(Self {
            units,
            outputs,
            values,
        })
    }

    /// Glorot-uniform kernels, zero biases, deterministic from `seed` (Keras' defaults).
    pub fn glorot(head: &HeadSpec, seed: u64) -> Self {
        let (u, o) = (head.units(), head.outputs());
        Self {
            units: u,
            outputs: o,
            values: [
                init::dense_kernel(seed, HEAD_TENSORS[0], HEAD_INPUTS, u),
                vec![0.0; u],
                init::dense_kernel(seed, HEAD_TENSORS[2], u, o),
                vec![0.0; o],
            ],
        }
    }

    pub fn units(&self) -> usize {
        self.units
    }

    /// Width of the last dense layer (1 for a two-class head).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Values in [`HEAD_TENSORS`] order.
    pub fn values(&self) -> &[Vec<f32>; 4] {
        &self.values
    }

    /// The tensors in checkpoint naming, [`HEAD_TENSORS`] order.
    pub fn tensors(&self) -> Vec<NamedTensor<'_>> {
        let (u, o) = (self.units, self.outputs);
        let shapes = [[u, HEAD_INPUTS], [u, 0], [o, u], [o, 0]];
        let ranks = [2, 1, 2, 1];
        HEAD_TENSORS
            .iter()
            .zip(shapes.iter().zip(ranks))
            .zip(&self.values)
            .map(|((name, (s, rank)), values)| NamedTensor {
                name,
                shape: [s[0], s[1], 0, 0],
                rank,
                values,
            })
            .collect()
    }
}

/// Base and head together: a whole model's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWeights {
    pub base: BaseWeights,
    pub head: HeadWeights,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_table_and_lengths_are_checked() {
        let base = BaseWeights::glorot(1);
        let tensors = base.tensors();
        assert_eq!(tensors.len(), 26);
        assert_eq!(tensors[0].name, "features.0.weight");
        assert_eq!(tensors[0].dims(), [64, 3, 3, 3]);
        assert_eq!(tensors[25].name, "features.28.bias");
        assert_eq!(tensors[25].dims(), [512]);
        let total: usize = tensors.iter().map(|t| t.values.len()).sum();
        assert_eq!(total, 14_714_688);
        assert_eq!(base.num_params(), total);

        let err =
            BaseWeights::try_from_fn(|_, shape| Ok(vec![0.0; shape.iter().product::<usize>() - 1]))
                .unwrap_err()
                .to_string();
        assert_eq!(
            err,
            "weights: got 1727 values, expected 1728 (tensor `features.0.weight`)"
        );

        let head = HeadWeights::glorot(&HeadSpec::new(64, 0.2).unwrap(), 3);
        let t = head.tensors();
        assert_eq!(t[0].dims(), [64, 512]);
        assert_eq!(t[2].dims(), [1, 64]);
        assert_eq!(t[3].dims(), [1]);
        assert!(HeadWeights::new(64, [vec![0.0; 10], vec![], vec![], vec![]]).is_err());

        // Three classes: one output per class, the hidden layer as the binary head's.
        let three = HeadSpec::new(64, 0.2).unwrap().with_classes(3).unwrap();
        let wide = HeadWeights::glorot(&three, 3);
        assert_eq!(wide.outputs(), 3);
        assert_eq!(wide.tensors()[2].dims(), [3, 64]);
        assert_eq!(wide.tensors()[3].dims(), [3]);
        assert_eq!(wide.values()[0], head.values()[0]);
        assert_eq!(three.num_params(), 512 * 64 + 64 + 3 * 65);
        let again = HeadWeights::new(64, wide.values().clone()).unwrap();
        assert_eq!(again, wide);
    }
}
