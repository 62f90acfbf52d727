//! The GPU layer plan: what the base computes for one input size, layer by layer, in the
//! GPU's layout (NCHW activations, KCRS filters = torchvision's OIHW), and how much device
//! memory a batch needs. Plain arithmetic on the layer table ([`VGG16_FEATURES`]), so it is
//! checked on any machine; the GPU code allocates exactly what it says.
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

    /// Values per image kept for the backward pass: every step's input (the convolutions'
    /// inputs and post-ReLU outputs, the pools' inputs and outputs).
    pub fn training_activations(&self) -> usize {
        self.steps.iter().map(|s| s.in_len()).sum::<usize>() + HEAD_INPUTS
    }
}

/// Device memory for one batch, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Parameters, and for training their gradients and Adam's two moments.
    pub parameters: u64,
    /// Activations (and their gradients when training).
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

/// What `batch` images need: inference keeps two activation buffers of the largest size
/// (ping-pong); training keeps every step's input plus two gradient buffers of the largest.
pub fn memory_need(plan: &LayerPlan, params: usize, batch: usize, training: bool) -> MemoryNeed {
    let f = 4u64;
    let b = batch as u64;
    let largest = plan.largest_activation() as u64;
    if training {
        MemoryNeed {
            parameters: 4 * params as u64 * f,
            activations: b * f * (plan.training_activations() as u64 + 2 * largest),
            workspace: WORKSPACE_BYTES,
        }
    } else {
        MemoryNeed {
            parameters: params as u64 * f,
            activations: b * f * 2 * largest + b * f * HEAD_INPUTS as u64,
            workspace: WORKSPACE_BYTES,
        }
    }
}

/// Bytes as `1.2 GiB` / `340 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
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
            56 * 4 * (2 * 64 * 237 * 237 + 512) as u64
        );
        assert!(train8.total() > infer8.total());
        // About 60 MB of activations per training image at 237 (as on the CPU) plus two
        // gradient buffers of the largest map.
        let per_image = train8.activations / 8;
        assert!((80 << 20..120 << 20).contains(&per_image), "{per_image}");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(340 << 20), "340 MiB");
    }
}
