//! The GPU layer plan: what the base computes for one input size, layer by layer, in the
//! GPU's layout (NCHW activations, KCRS filters = torchvision's OIHW), and how much device
//! memory a batch needs. Plain arithmetic on the layer table ([`VGG16_FEATURES`]), so it is
//! checked on any machine; the GPU network walks these steps, and [`memory_need`] follows
//! what its loops hold alive at their peak.
//!
//! The same side lengths are what [`super::shape`] checks at compile time.

use crate::model::spec::{NetworkSpec, HEAD_INPUTS};
use crate::model::vgg16::{FeatureKind, VGG16_FEATURES};

/// One step of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// 3x3 convolution (padding 1) + bias + ReLU on a `side x side` map.
    Conv {
        /// Position in [`VGG16_FEATURES`].
        layer: usize,
        c_in: usize,
        c_out: usize,
        side: usize,
    },
    /// Max-pool 2x2, stride 2, floor: `side -> side / 2`.
    MaxPool {
        layer: usize,
        channels: usize,
        side: usize,
    },
    /// The head's average pool `window x window` (stride `window`, floor) to 1 x 1.
    AvgPool {
        channels: usize,
        side: usize,
        window: usize,
    },
}

impl Step {
    /// Values per image of the step's output.
    pub fn out_len(&self) -> usize {
        match *self {
            Step::Conv { c_out, side, .. } => c_out * side * side,
            Step::MaxPool { channels, side, .. } => channels * (side / 2) * (side / 2),
            Step::AvgPool { channels, .. } => channels,
        }
    }

    /// Values per image of the step's input.
    pub fn in_len(&self) -> usize {
        match *self {
            Step::Conv { c_in, side, .. } => c_in * side * side,
            Step::MaxPool { channels, side, .. } | Step::AvgPool { channels, side, .. } => {
                channels * side * side
            }
        }
    }

    /// Multiply-accumulates per image of the forward pass (convolutions only).
    pub fn macs(&self) -> u64 {
        match *self {
            Step::Conv {
                c_in, c_out, side, ..
            } => (c_in * c_out * 9 * side * side) as u64,
            _ => 0,
        }
    }
}

/// The whole base for one network, in order, ending with the head's average pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerPlan {
    pub steps: Vec<Step>,
}

impl LayerPlan {
    pub fn new(spec: &NetworkSpec) -> Self {
        let mut side = spec.size().pixels();
        let mut channels = 3;
        let mut steps = Vec::with_capacity(VGG16_FEATURES.len() + 1);
        for (layer, row) in VGG16_FEATURES.iter().enumerate() {
            match row.kind {
                FeatureKind::Conv { c_in, c_out, .. } => {
                    steps.push(Step::Conv {
                        layer,
                        c_in,
                        c_out,
                        side,
                    });
                    channels = c_out;
                }
                FeatureKind::MaxPool => {
                    steps.push(Step::MaxPool {
                        layer,
                        channels,
                        side,
                    });
                    side /= 2;
                }
            }
        }
        steps.push(Step::AvgPool {
            channels,
            side,
            window: spec.pooling().window(side),
        });
        Self { steps }
    }

    /// Side lengths at the input and after each max-pool (as `ImageSize::chain`).
    pub fn sides(&self) -> Vec<usize> {
        let mut sides = Vec::new();
        for step in &self.steps {
            match *step {
                Step::Conv { side, .. } if sides.is_empty() => sides.push(side),
                Step::MaxPool { side, .. } => sides.push(side / 2),
                _ => {}
            }
        }
        sides
    }

    /// Forward multiply-accumulates per image.
    pub fn macs(&self) -> u64 {
        self.steps.iter().map(Step::macs).sum()
    }

    /// The largest activation, in values per image.
    pub fn largest_activation(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.in_len().max(s.out_len()))
            .max()
            .unwrap_or(0)
    }

    /// Values per image alive at the peak of the forward pass that frees each activation
    /// once the next exists: the largest step's input and output together.
    pub fn inference_activations(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.in_len() + s.out_len())
            .max()
            .unwrap_or(0)
    }

    /// Values per image kept for the backward pass: every step's input (the convolutions'
    /// inputs and post-ReLU outputs, the pools' inputs and outputs).
    pub fn training_activations(&self) -> usize {
        self.steps.iter().map(|s| s.in_len()).sum()
    }

    /// Values per image alive at the peak of a training step: everything kept for the
    /// backward pass, plus the gradients at the output and input of the backward step that
    /// holds the most (the first step makes no input gradient: the images need none). At
    /// the end of the forward pass only the pooled features are alive besides the kept
    /// inputs, fewer than any backward step holds.
    pub fn training_peak(&self) -> usize {
        let gradients = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| s.out_len() + if i > 0 { s.in_len() } else { 0 })
            .max()
            .unwrap_or(0);
        self.training_activations() + gradients.max(HEAD_INPUTS)
    }
}

/// Device memory for one batch, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Parameters, and for training their gradients and Adam's two moments.
    pub parameters: u64,
    /// Activations (and their gradients when training), at their peak.
    pub activations: u64,
    /// cuDNN's workspace, as the plan reserves it.
    pub workspace: u64,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.parameters + self.activations + self.workspace
    }
}

/// cuDNN workspace the backend reserves: the algorithms it names (implicit precomputed gemm
/// forward, algorithm 1 backward) need at most a few MiB for these shapes; the rest is slack.
pub const WORKSPACE_BYTES: u64 = 256 << 20;

/// What `batch` images need with `params` parameter values on the device (the packed
/// arena's length, padding included): inference holds one step's input and output at a time
/// ([`LayerPlan::inference_activations`]); training keeps every step's input and, during the
/// backward pass, one step's two gradients ([`LayerPlan::training_peak`]), and holds the
/// parameters' gradients and Adam's two moments beside the parameters.
pub fn memory_need(plan: &LayerPlan, params: usize, batch: usize, training: bool) -> MemoryNeed {
    let f = 4u64;
    let b = batch as u64;
    if training {
        MemoryNeed {
            parameters: 4 * params as u64 * f,
            activations: b * f * plan.training_peak() as u64,
            workspace: WORKSPACE_BYTES,
        }
    } else {
        MemoryNeed {
            parameters: params as u64 * f,
            activations: b * f * plan.inference_activations() as u64,
            workspace: WORKSPACE_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::size::{ImageSize, Pooling};
    use crate::model::spec::ConvAlgorithm;
    use crate::model::vgg16::VGG16_BASE_PARAMS;

    fn plan(size: ImageSize, pooling: Pooling) -> LayerPlan {
        LayerPlan::new(&NetworkSpec::new(size, pooling, ConvAlgorithm::Direct).unwrap())
    }

    #[test]
    fn the_plan_for_237_224_and_32_follows_the_table_and_the_size_chain() {
        for (size, pooling, window) in [
            (ImageSize::S237, Pooling::Avg4, 4),
            (ImageSize::S224, Pooling::Global, 7),
            (ImageSize::S32, Pooling::Global, 1),
        ] {
            let p = plan(size, pooling);
            assert_eq!(p.steps.len(), 19, "13 convs, 5 max-pools, the head's pool");
            assert_eq!(p.sides(), size.chain().to_vec(), "{size:?}");
            let convs = p
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Conv { .. }))
                .count();
            assert_eq!(convs, 13);
            match p.steps.last() {
                Some(&Step::AvgPool {
                    channels,
                    side,
                    window: w,
                }) => {
                    assert_eq!((channels, side, w), (512, size.base_out(), window));
                    assert_eq!(side / w, 1, "the pooled map is 1 x 1");
                }
                other => panic!("ends with {other:?}"),
            }
            // Each step's input is the previous step's output.
            for pair in p.steps.windows(2) {
                assert_eq!(pair[0].out_len(), pair[1].in_len(), "{pair:?}");
            }
        }
        // 237: 237 -> 118 -> 59 -> 29 -> 14 -> 7, 16.728 GMAC per image (measured-facts.md).
        let p = plan(ImageSize::S237, Pooling::Avg4);
        assert_eq!(p.sides(), [237, 118, 59, 29, 14, 7]);
        assert_eq!((p.macs() as f64 / 1e9 * 1000.0).round() / 1000.0, 16.728);
        assert_eq!(p.largest_activation(), 64 * 237 * 237);
        // 224: the ImageNet figure, 15.35 GMAC (VGG16's 15.5 GFLOPs counts the classifier).
        let p = plan(ImageSize::S224, Pooling::Avg4);
        assert_eq!(p.macs(), 15_346_630_656);
        let p = plan(ImageSize::S32, Pooling::Global);
        assert_eq!(p.sides(), [32, 16, 8, 4, 2, 1]);
    }

    #[test]
    fn memory_grows_with_the_batch_and_training_needs_more() {
        let p = plan(ImageSize::S237, Pooling::Avg4);
        let infer8 = memory_need(&p, VGG16_BASE_PARAMS, 8, false);
        let infer64 = memory_need(&p, VGG16_BASE_PARAMS, 64, false);
        let train8 = memory_need(&p, VGG16_BASE_PARAMS, 8, true);
        assert_eq!(infer8.parameters, 4 * 14_714_688);
        assert_eq!(train8.parameters, 16 * 14_714_688);
        assert_eq!(
            infer64.activations - infer8.activations,
            56 * 4 * (2 * 64 * 237 * 237) as u64
        );
        assert!(train8.total() > infer8.total());
        assert_eq!(infer8.workspace, WORKSPACE_BYTES);
    }

    /// The estimate against the layer table worked by hand at 237 (sides 237 -> 118 -> 59
    /// -> 29 -> 14 -> 7, head pooling 4), in values per image: what the forward loop holds
    /// at once and what a training step keeps.
    #[test]
    fn the_memory_estimate_is_the_layer_tables_arithmetic() {
        let p = plan(ImageSize::S237, Pooling::Avg4);
        let (s0, s1, s2, s3, s4, s5) = (237 * 237, 118 * 118, 59 * 59, 29 * 29, 14 * 14, 7 * 7);
        // Each step's input, in table order: conv1_1 (the image), conv1_2, pool1, conv2_1,
        // conv2_2, pool2, conv3_1..3, pool3, conv4_1..3, pool4, conv5_1..3, pool5, and the
        // head's average pool.
        let inputs = [
            3 * s0,
            64 * s0,
            64 * s0,
            64 * s1,
            128 * s1,
            128 * s1,
            128 * s2,
            256 * s2,
            256 * s2,
            256 * s2,
            256 * s3,
            512 * s3,
            512 * s3,
            512 * s3,
            512 * s4,
            512 * s4,
            512 * s4,
            512 * s4,
            512 * s5,
        ];
        let in_lens: Vec<usize> = p.steps.iter().map(Step::in_len).collect();
        assert_eq!(in_lens, inputs);
        let kept: usize = inputs.iter().sum();
        assert_eq!(kept, 16_866_363, "about 67 MB per image kept for backward");
        assert_eq!(p.training_activations(), kept);
        // The forward pass at its peak holds conv1_2's input and output, 64 maps each
        // (about 29 MB per image): not every activation, as it did before each was freed.
        assert_eq!(p.inference_activations(), 2 * 64 * s0);
        // Training: everything kept, plus conv1_2's gradients at its output and input.
        assert_eq!(p.training_peak(), kept + 2 * 64 * s0);
        let arena = crate::model::cuda::layout::ParamArena::vgg16().len;
        let need = memory_need(&p, arena, 3, true);
        assert_eq!(need.activations, 3 * 4 * (kept + 2 * 64 * s0) as u64);
        assert_eq!(need.parameters, 4 * 4 * arena as u64);
        let need = memory_need(&p, arena, 5, false);
        assert_eq!(need.activations, 5 * 4 * (2 * 64 * s0) as u64);
        assert_eq!(need.parameters, 4 * arena as u64);
        assert!(arena >= VGG16_BASE_PARAMS, "the arena pads, never drops");
    }
}
