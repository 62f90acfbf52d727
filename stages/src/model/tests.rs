//! Model-level tests: the build-model stage, checkpoints, summaries and the feature pass,
//! on the small 32x32 instantiation (the 237 and 224 ones are instantiated by every build).

use super::checkpoint;
use super::config::{ModelConfig, Weights};
use super::layers::MaxPool2x2;
use super::network::Vgg16Model;
use super::ops::conv3x3::Dims;
use super::ops::test_util::{
    assert_within, conv_reference, data, direct_forward_bound, to_f64, winograd_forward_bound,
    winograd_forward_magnitude,
};
use super::ops::{ConvAlgorithm, WINOGRAD_MIN_CHANNELS};
use super::size::ImageSize;
use super::stage::build_model;
use super::summary::ModelSummary;
use super::ModelError;
use crate::progress::NoProgress;
use dfdx::prelude::*;

fn config(text: &str) -> ModelConfig {
    toml::from_str(text).expect("valid config")
}

const SMALL: &str = r#"
image_size = 32
weights = "random"
seed = 42
[head]
units = 64
dropout = 0.2
pooling = "global"
"#;

#[test]
fn config_parses_and_rejects_unknown_keys() {
    let cfg = config(SMALL);
    assert_eq!(cfg.weights, Weights::Random);
    assert_eq!(cfg.head.units, 64);
    let err = toml::from_str::<ModelConfig>(&SMALL.replace("seed = 42", "seed = 42\nsede = 1"))
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `sede`"), "{err}");
    let mut cfg = config(&SMALL.replace("\"random\"", "\"weights/vgg16.safetensors\""));
    cfg.resolve_weights(std::path::Path::new("/data"));
    assert_eq!(
        cfg.weights,
        Weights::File("/data/weights/vgg16.safetensors".into())
    );
}

#[test]
fn unsupported_size_and_pooling_are_clear_errors() {
    let e = Vgg16Model::from_config(&config(&SMALL.replace("= 32", "= 100"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image size 100 is not supported; supported sizes: 32, 224, 237"
    );
    let e = Vgg16Model::from_config(&config(&SMALL.replace("global", "avg4"))).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::PoolingTooLarge {
                size: 32,
                base_out: 1
            }
        ),
        "{e}"
    );
}

#[test]
fn seed_summary_at_237_matches_keras_counts_and_shapes() {
    let cfg = config(&SMALL.replace("= 32", "= 237").replace("global", "avg4"));
    let model = Vgg16Model::from_config(&cfg).unwrap();
    let s = ModelSummary::of(&model, true);
    assert_eq!(s.total_params, 14_747_585);
    assert_eq!(s.trainable_params, 32_897);
    assert_eq!(s.non_trainable_params, 14_714_688);
    let shapes: Vec<Vec<usize>> = s.rows.iter().map(|r| r.output.clone()).collect();
    assert_eq!(shapes[0], vec![237, 237, 64]);
    assert_eq!(shapes[2], vec![118, 118, 64]);
    assert_eq!(shapes[17], vec![7, 7, 512]);
    assert_eq!(shapes[18], vec![1, 1, 512]);
    assert_eq!(shapes[19], vec![512]);
    let text = s.to_string();
    assert!(text.contains("block1_conv1 (Conv2D)"), "{text}");
    assert!(text.contains("1,792"), "{text}");
    assert!(text.contains("Trainable params: 32,897"), "{text}");
    assert!(text.contains("Total params: 14,747,585"), "{text}");
}

fn all_bits(m: &Vgg16Model) -> Vec<u32> {
    let mut bits = Vec::new();
    for c in m.features.convs() {
        bits.extend(
            c.weight_vec()
                .iter()
                .chain(&c.bias_vec())
                .map(|v| v.to_bits()),
        );
    }
    for (_, _, v) in m.head.tensors() {
        bits.extend(v.iter().map(|v| v.to_bits()));
    }
    bits
}

#[test]
fn build_model_writes_a_checkpoint_that_round_trips_bitwise() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SMALL);
    let report = build_model(&cfg, dir.path()).unwrap();
    assert!(std::fs::read_to_string(&report.summary_file)
        .unwrap()
        .contains("Non-trainable params: 14,714,688"));
    assert!(report.weights.contains("seed 42"));
    let loaded = checkpoint::load(&report.checkpoint, &Cpu::default()).unwrap();
    let built = Vgg16Model::from_config(&cfg).unwrap();
    assert_eq!(loaded.size, ImageSize::S32);
    assert_eq!(loaded.head.units(), 64);
    assert_eq!(loaded.head.dropout(), 0.2);
    let bits = all_bits(&loaded);
    assert_eq!(bits.len(), 14_747_585);
    assert!(
        bits == all_bits(&built),
        "checkpoint does not round-trip bitwise"
    );
    // The base in the checkpoint loads as a torchvision-named weights file.
    let mut cfg2 = cfg.clone();
    cfg2.weights = Weights::File(report.checkpoint.clone());
    cfg2.seed = 7;
    let from_file = Vgg16Model::from_config(&cfg2).unwrap();
    assert_eq!(
        from_file.features.convs()[12].weight_vec(),
        built.features.convs()[12].weight_vec()
    );
}

/// Writes a safetensors file holding `tensors` (name, shape), each filled with zeros.
fn write_weights(path: &std::path::Path, tensors: &[(&str, Vec<usize>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s), b)| {
            (
                *n,
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn missing_or_misshapen_weights_name_the_tensor_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg.safetensors");
    let mut cfg = config(SMALL);
    cfg.weights = Weights::File(path.clone());

    write_weights(
        &path,
        &[
            ("features.0.weight", vec![64, 3, 3, 3]),
            ("features.0.bias", vec![64]),
        ],
    );
    let e = Vgg16Model::from_config(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: tensor `features.2.weight` is missing", path.display())
    );

    write_weights(
        &path,
        &[
            ("features.0.weight", vec![64, 3, 3, 4]),
            ("features.0.bias", vec![64]),
        ],
    );
    let e = Vgg16Model::from_config(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: tensor `features.0.weight` has shape [64, 3, 3, 4], expected [64, 3, 3, 3]",
            path.display()
        )
    );

    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(matches!(
        Vgg16Model::from_config(&cfg),
        Err(ModelError::Safetensors { .. })
    ));
    cfg.weights = Weights::File(dir.path().join("absent.safetensors"));
    assert!(matches!(
        Vgg16Model::from_config(&cfg),
        Err(ModelError::Io { .. })
    ));
}

#[test]
fn features_do_not_depend_on_batching_or_threads() {
    let model = Vgg16Model::from_config(&config(SMALL)).unwrap();
    let n = 10; // one batch of 8 and one of 2
    let images: Vec<f32> = data(n * model.image_len(), 99)
        .iter()
        .map(|v| 0.5 + 0.5 * v)
        .collect();
    let pool = |t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let two = pool(2).install(|| model.base_features(&images, n, &NoProgress).unwrap());
    let one = pool(1).install(|| model.base_features(&images, n, &NoProgress).unwrap());
    assert_eq!(two.len(), n * 512);
    assert!(
        one.iter()
            .zip(&two)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "thread count changed bits"
    );
    // Image 9 alone gives the same bits as inside the batch of 2.
    let last = model
        .base_features(&images[9 * model.image_len()..], 1, &NoProgress)
        .unwrap();
    assert!(last
        .iter()
        .zip(&two[9 * 512..])
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // Random Glorot weights keep a non-trivial signal through 13 ReLU layers.
    assert!(two.iter().any(|v| *v > 0.0));

    let p = model.predict(&images, n, &NoProgress).unwrap();
    assert_eq!(p.len(), n);
    assert!(p.iter().all(|p| *p > 0.0 && *p < 1.0));
    let e = model
        .base_features(&images[1..], n, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("images: got 30719 values, expected 30720"),
        "{e}"
    );
}

#[test]
fn seed_size_runs_one_image_through_the_compiled_237_model() {
    // One image only: about a second of compute; the shapes were checked when this built.
    let cfg = config(&SMALL.replace("= 32", "= 237").replace("global", "avg4"));
    let model = Vgg16Model::from_config(&cfg).unwrap();
    let image: Vec<f32> = data(model.image_len(), 5)
        .iter()
        .map(|v| 0.5 + 0.5 * v)
        .collect();
    let p = model.predict(&image, 1, &NoProgress).unwrap();
    assert_eq!(p.len(), 1);
    assert!(p[0] > 0.0 && p[0] < 1.0, "{p:?}");
}

#[test]
fn the_conv_algorithm_is_configured_saved_and_loaded_with_the_model() {
    assert_eq!(config(SMALL).conv, ConvAlgorithm::Direct, "the default");
    let cfg = config(&SMALL.replace("seed = 42", "seed = 42\nconv = \"winograd\""));
    assert_eq!(cfg.conv, ConvAlgorithm::Winograd);
    let err =
        toml::from_str::<ModelConfig>(&SMALL.replace("seed = 42", "seed = 42\nconv = \"fft\""))
            .unwrap_err();
    assert!(err.to_string().contains("unknown conv `fft`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let report = build_model(&cfg, dir.path()).unwrap();
    let loaded = checkpoint::load(&report.checkpoint, &Cpu::default()).unwrap();
    assert_eq!(loaded.conv, ConvAlgorithm::Winograd);
    let base = dir.path().join("base.safetensors");
    checkpoint::save_base(&loaded, &base).unwrap();
    let read = checkpoint::load_base(&base, &Cpu::default()).unwrap();
    assert_eq!(read.conv, ConvAlgorithm::Winograd);

    // The algorithm changes the features, by rounding only: how much is checked layer by
    // layer, within derived bounds, in `every_layer_is_within_its_rounding_bound_...` (an
    // end-to-end tolerance through 13 layers cannot be derived: worst-case bounds grow by
    // about sqrt(9 C) per layer and say nothing after a few).
    let images = data(3 * 32 * 32 * 3, 5);
    let fast = loaded.base_features(&images, 3, &NoProgress).unwrap();
    let mut direct_model = loaded.clone();
    direct_model.conv = ConvAlgorithm::Direct;
    let direct = direct_model.base_features(&images, 3, &NoProgress).unwrap();
    assert_ne!(fast, direct);
}

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
fn run_steps(model: &Vgg16Model, image: &[f32]) -> Vec<Step> {
    let (f, a) = (&model.features, model.conv);
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
    let x = model.dev.tensor_from_vec(
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
    let cfg = config(&SMALL.replace("seed = 42", "seed = 42\nconv = \"winograd\""));
    let winograd = Vgg16Model::from_config(&cfg).unwrap();
    let mut direct = winograd.clone();
    direct.conv = ConvAlgorithm::Direct;
    let image: Vec<f32> = data(32 * 32 * 3, 5).iter().map(|v| 0.5 + 0.5 * v).collect();
    let convs = winograd.features.convs();
    for model in [&winograd, &direct] {
        let steps = run_steps(model, &image);
        for step in &steps {
            let x = to_f64(&step.input);
            let d = step.dims;
            let Some(layer) = step.conv else {
                let want = max_pool_reference(&x, d);
                let what = format!("{:?} max-pool of {}x{}", model.conv, d.h, d.w);
                assert_within(&step.output, &want, &vec![0.0; want.len()], &what);
                continue;
            };
            let w = to_f64(&convs[layer].weight_vec());
            let b = to_f64(&convs[layer].bias_vec());
            let (z, mag) = conv_reference(&x, &w, &b, d);
            let bound = if model.conv == ConvAlgorithm::Winograd && d.c_in >= WINOGRAD_MIN_CHANNELS
            {
                winograd_forward_bound(&winograd_forward_magnitude(&x, &w, &b, d), &mag, d.c_in)
            } else {
                direct_forward_bound(&mag, d.c_in)
            };
            let want: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
            let what = format!("{:?} conv {layer} ({}->{})", model.conv, d.c_in, d.c_out);
            assert_within(&step.output, &want, &bound, &what);
            // Random Glorot weights keep a signal all the way.
            assert!(step.output.iter().any(|v| *v > 0.0), "{what}: all zero");
        }
        let last = &steps.last().expect("steps").output;
        let features = model.base_features(&image, 1, &NoProgress).unwrap();
        assert!(
            features
                .iter()
                .map(|v| v.to_bits())
                .eq(last.iter().map(|v| v.to_bits())),
            "{:?}: the step-by-step run differs from the model's features",
            model.conv
        );
    }
}
