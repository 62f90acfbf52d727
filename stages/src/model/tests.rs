//! Model-level tests: the build-model stage, checkpoints, summaries and the feature pass,
//! on the small 32x32 instantiation (the 237 and 224 ones are instantiated by every build).

use super::build::build_model;
use super::checkpoint::{self, Model};
use super::config::{ModelConfig, Weights};
use super::inference::{self, pooled_features};
use super::size::ImageSize;
use super::summary::ModelSummary;
use super::{Backend, ConvAlgorithm, CpuBackend, ModelError};
use crate::model::cpu::ops::test_util::data;
use crate::progress::NoProgress;

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
    let e = Model::from_config(&config(&SMALL.replace("= 32", "= 100"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image size 100 is not supported; supported sizes: 32, 224, 237"
    );
    let e = Model::from_config(&config(&SMALL.replace("global", "avg4"))).unwrap_err();
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
    let model = Model::from_config(&cfg).unwrap();
    let s = ModelSummary::of(&model.spec, &model.head, true);
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

fn all_bits(m: &Model) -> Vec<u32> {
    let mut bits = Vec::new();
    for t in m
        .weights
        .base
        .tensors()
        .iter()
        .chain(&m.weights.head.tensors())
    {
        bits.extend(t.values.iter().map(|v| v.to_bits()));
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
    let loaded = checkpoint::load(&report.checkpoint).unwrap();
    let built = Model::from_config(&cfg).unwrap();
    assert_eq!(loaded.spec.size(), ImageSize::S32);
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
    let from_file = Model::from_config(&cfg2).unwrap();
    assert_eq!(
        from_file.weights.base.convs()[12],
        built.weights.base.convs()[12]
    );
}

#[test]
fn the_head_alone_reads_as_in_the_whole_checkpoint_and_damage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let report = build_model(&config(SMALL), dir.path()).unwrap();
    let whole = checkpoint::load(&report.checkpoint).unwrap();
    let head = checkpoint::load_head(&report.checkpoint).unwrap();
    assert_eq!(head.spec, whole.spec);
    assert_eq!(head.head, whole.head);
    assert_eq!(head.weights, whole.weights.head);

    // Cut short, or one byte longer: the header no longer describes the file.
    let bytes = std::fs::read(&report.checkpoint).unwrap();
    for (what, damaged) in [
        ("cut", bytes[..bytes.len() - 1].to_vec()),
        ("longer", [bytes.as_slice(), &[0]].concat()),
        ("no header", bytes[..5].to_vec()),
    ] {
        let path = dir.path().join(format!("{what}.safetensors"));
        std::fs::write(&path, damaged).unwrap();
        for result in [
            checkpoint::load(&path).map(|_| ()),
            checkpoint::load_head(&path).map(|_| ()),
        ] {
            match result {
                Err(ModelError::Safetensors { path: p, .. }) => assert_eq!(p, path, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
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
    let e = Model::from_config(&cfg).unwrap_err().to_string();
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
    let e = Model::from_config(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: tensor `features.0.weight` has shape [64, 3, 3, 4], expected [64, 3, 3, 3]",
            path.display()
        )
    );

    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(matches!(
        Model::from_config(&cfg),
        Err(ModelError::Safetensors { .. })
    ));
    cfg.weights = Weights::File(dir.path().join("absent.safetensors"));
    assert!(matches!(
        Model::from_config(&cfg),
        Err(ModelError::Io { .. })
    ));
}

/// The base features of `model` through the CPU backend.
fn features(model: &Model, images: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
    let extractor = CpuBackend.feature_extractor(model.spec, &model.weights.base)?;
    pooled_features(extractor.as_ref(), &model.spec, images, n, &NoProgress)
}

#[test]
fn features_do_not_depend_on_batching_or_threads() {
    let model = Model::from_config(&config(SMALL)).unwrap();
    let len = model.spec.image_len();
    let n = 10; // one batch of 8 and one of 2
    let images: Vec<f32> = data(n * len, 99).iter().map(|v| 0.5 + 0.5 * v).collect();
    let pool = |t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let two = pool(2).install(|| features(&model, &images, n).unwrap());
    let one = pool(1).install(|| features(&model, &images, n).unwrap());
    assert_eq!(two.len(), n * 512);
    assert!(
        one.iter()
            .zip(&two)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "thread count changed bits"
    );
    // Image 9 alone gives the same bits as inside the batch of 2.
    let last = features(&model, &images[9 * len..], 1).unwrap();
    assert!(last
        .iter()
        .zip(&two[9 * 512..])
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // Random Glorot weights keep a non-trivial signal through 13 ReLU layers.
    assert!(two.iter().any(|v| *v > 0.0));

    let p = inference::predict(&CpuBackend, &model, &images, n, &NoProgress)
        .unwrap()
        .positive()
        .unwrap();
    assert_eq!(p.len(), n);
    assert!(p.iter().all(|p| *p > 0.0 && *p < 1.0));
    let e = features(&model, &images[1..], n).unwrap_err().to_string();
    assert!(
        e.starts_with("images: got 30719 values, expected 30720"),
        "{e}"
    );
}

#[test]
fn seed_size_runs_one_image_through_the_compiled_237_model() {
    // One image only: about a second of compute; the shapes were checked when this built.
    let cfg = config(&SMALL.replace("= 32", "= 237").replace("global", "avg4"));
    let model = Model::from_config(&cfg).unwrap();
    let image: Vec<f32> = data(model.spec.image_len(), 5)
        .iter()
        .map(|v| 0.5 + 0.5 * v)
        .collect();
    let p = inference::predict(&CpuBackend, &model, &image, 1, &NoProgress)
        .unwrap()
        .positive()
        .unwrap();
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
    let loaded = checkpoint::load(&report.checkpoint).unwrap();
    assert_eq!(loaded.spec.conv(), ConvAlgorithm::Winograd);
    let base = dir.path().join("base.safetensors");
    checkpoint::save_base(&loaded.spec, &loaded.weights.base, &base).unwrap();
    let read = checkpoint::load_base(&base).unwrap();
    assert_eq!(read.spec.conv(), ConvAlgorithm::Winograd);
    assert_eq!(read.weights, loaded.weights.base);

    // The algorithm changes the features, by rounding only: how much is checked layer by
    // layer, within derived bounds, in `every_layer_is_within_its_rounding_bound_...` (an
    // end-to-end tolerance through 13 layers cannot be derived: worst-case bounds grow by
    // about sqrt(9 C) per layer and say nothing after a few).
    let images = data(3 * 32 * 32 * 3, 5);
    let fast = features(&loaded, &images, 3).unwrap();
    let mut direct_model = loaded.clone();
    direct_model.spec = loaded.spec.with_conv(ConvAlgorithm::Direct);
    let direct = features(&direct_model, &images, 3).unwrap();
    assert_ne!(fast, direct);
}
