//! Tests of the CPU backend as a whole: the base layer by layer within rounding bounds.

use super::layers::MaxPool2x2;
use super::ops::conv3x3::Dims;
use super::ops::test_util::{
    assert_within, conv_reference, data, direct_forward_bound, to_f64, winograd_forward_bound,
    winograd_forward_magnitude,
};
use super::ops::WINOGRAD_MIN_CHANNELS;
use super::vgg16::Vgg16Features;
use super::CpuBackend;
use crate::model::size::{ImageSize, Pooling};
use crate::model::{Backend, BaseWeights, ConvAlgorithm, NetworkSpec};
use dfdx::prelude::*;

/// One step of the base on one image: a convolution (its index in `convs()`) or a 2x2
/// max-pool, with its f32 input and output (NHWC).
struct Step {
    conv: Option<usize>,
    dims: Dims,
    input: Vec<f32>,
    output: Vec<f32>,
}

/// The 32-pixel base run step by step through the model's own layers, as
/// `Vgg16Base::try_forward` chains them.
fn run_steps(f: &Vgg16Features<f32, Cpu>, a: ConvAlgorithm, dev: &Cpu, image: &[f32]) -> Vec<Step> {
    let mut steps = Vec::new();
    macro_rules! step {
        ($x:ident, $conv:expr, $forward:expr) => {{
            let (_, h, w, c) = *$x.shape();
            let input = $x.as_vec();
            let y = $forward.unwrap();
            let dims = Dims {
                batch: 1,
                h: h.size(),
                w: w.size(),
                c_in: c.size(),
                c_out: y.shape().3.size(),
            };
            steps.push(Step {
                conv: $conv,
                dims,
                input,
                output: y.as_vec(),
            });
            y
        }};
    }
    let x = dev.tensor_from_vec(
        image.to_vec(),
        (Const::<1>, Const::<32>, Const::<32>, Const::<3>),
    );
    let x = step!(x, Some(0), f.conv1_1.try_forward_with(x, a));
    let x = step!(x, Some(1), f.conv1_2.try_forward_with(x, a));
    let x = step!(x, None, MaxPool2x2::<16, 16>.try_forward(x));
    let x = step!(x, Some(2), f.conv2_1.try_forward_with(x, a));
    let x = step!(x, Some(3), f.conv2_2.try_forward_with(x, a));
    let x = step!(x, None, MaxPool2x2::<8, 8>.try_forward(x));
    let x = step!(x, Some(4), f.conv3_1.try_forward_with(x, a));
    let x = step!(x, Some(5), f.conv3_2.try_forward_with(x, a));
    let x = step!(x, Some(6), f.conv3_3.try_forward_with(x, a));
    let x = step!(x, None, MaxPool2x2::<4, 4>.try_forward(x));
    let x = step!(x, Some(7), f.conv4_1.try_forward_with(x, a));
    let x = step!(x, Some(8), f.conv4_2.try_forward_with(x, a));
    let x = step!(x, Some(9), f.conv4_3.try_forward_with(x, a));
    let x = step!(x, None, MaxPool2x2::<2, 2>.try_forward(x));
    let x = step!(x, Some(10), f.conv5_1.try_forward_with(x, a));
    let x = step!(x, Some(11), f.conv5_2.try_forward_with(x, a));
    let x = step!(x, Some(12), f.conv5_3.try_forward_with(x, a));
    step!(x, None, MaxPool2x2::<1, 1>.try_forward(x));
    steps
}

/// 2x2 max-pool (floor) of one NHWC image in f64.
fn max_pool_reference(x: &[f64], d: Dims) -> Vec<f64> {
    let (oh, ow, c) = (d.h / 2, d.w / 2, d.c_in);
    let mut out = Vec::with_capacity(oh * ow * c);
    for y in 0..oh {
        for xx in 0..ow {
            for ch in 0..c {
                let at = |i: usize, j: usize| x[((2 * y + i) * d.w + 2 * xx + j) * c + ch];
                out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    out
}

#[test]
fn every_layer_is_within_its_rounding_bound_with_either_algorithm() {
    // Each layer is checked on the input the model actually gave it (its f32 activations),
    // against the exact layer in f64, within the bound of the algorithm it ran (Winograd from
    // 16 input channels, direct below); max-pooling is exact. So on any machine the whole
    // base computes the exact network up to bounded rounding at each layer, and the
    // layer-by-layer run is the model's own (same output bits).
    let dev = Cpu::default();
    let weights = BaseWeights::glorot(42);
    let features = Vgg16Features::from_weights(&dev, &weights).unwrap();
    let spec = NetworkSpec::new(ImageSize::S32, Pooling::Global, ConvAlgorithm::Winograd).unwrap();
    let image: Vec<f32> = data(32 * 32 * 3, 5).iter().map(|v| 0.5 + 0.5 * v).collect();
    let convs = features.convs();
    for conv in [ConvAlgorithm::Winograd, ConvAlgorithm::Direct] {
        let steps = run_steps(&features, conv, &dev, &image);
        for step in &steps {
            let x = to_f64(&step.input);
            let d = step.dims;
            let Some(layer) = step.conv else {
                let want = max_pool_reference(&x, d);
                let what = format!("{:?} max-pool of {}x{}", conv, d.h, d.w);
                assert_within(&step.output, &want, &vec![0.0; want.len()], &what);
                continue;
            };
            let w = to_f64(&convs[layer].weight_vec());
            let b = to_f64(&convs[layer].bias_vec());
            let (z, mag) = conv_reference(&x, &w, &b, d);
            let bound = if conv == ConvAlgorithm::Winograd && d.c_in >= WINOGRAD_MIN_CHANNELS {
                winograd_forward_bound(&winograd_forward_magnitude(&x, &w, &b, d), &mag, d.c_in)
            } else {
                direct_forward_bound(&mag, d.c_in)
            };
            let want: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
            let what = format!("{:?} conv {layer} ({}->{})", conv, d.c_in, d.c_out);
            assert_within(&step.output, &want, &bound, &what);
            // Random Glorot weights keep a signal all the way.
            assert!(step.output.iter().any(|v| *v > 0.0), "{what}: all zero");
        }
        let last = &steps.last().expect("steps").output;
        let extractor = CpuBackend
            .feature_extractor(spec.with_conv(conv), &weights)
            .unwrap();
        let pooled = extractor.pooled_features(&image, 1).unwrap();
        assert!(
            pooled
                .iter()
                .map(|v| v.to_bits())
                .eq(last.iter().map(|v| v.to_bits())),
            "{:?}: the step-by-step run differs from the model's features",
            conv
        );
    }
}
