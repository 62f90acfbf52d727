//! Safetensors checkpoints of the whole model, and loading torchvision VGG16 weights.
//!
//! Layout of `model.safetensors` (all tensors f32, little-endian):
//! - `features.{i}.weight` `[c_out, c_in, 3, 3]` (OIHW) and `features.{i}.bias` `[c_out]` for
//!   the 13 convolutions, `i` in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28: exactly the
//!   `features.*` part of torchvision's `vgg16()` state dict, so
//!   `vgg16().load_state_dict(load_file(path), strict=False)` in PyTorch loads the base (only
//!   `classifier.*` missing; `head.*` unexpected in a whole checkpoint), and the same weights
//!   give the same outputs there (after permuting NHWC input to NCHW).
//!   `tools/torch_crosscheck.py` checks both, loading strictly. (Not
//!   `vgg16().features.load_state_dict(...)`: that module names its tensors `0.weight`, ...,
//!   so with `strict=False` it would silently load nothing.)
//! - `head.dense1.weight` `[units, 512]`, `head.dense1.bias` `[units]`, `head.dense2.weight`
//!   `[1, units]`, `head.dense2.bias` `[1]`: PyTorch `Linear` layout (`[out, in]`).
//! - Metadata: `format`, `image_size`, `pooling`, `conv`, `units`, `dropout`, `input_layout`.
//!   `conv` (the forward algorithm, see [`ConvAlgorithm`]) was added within format 2: a file
//!   without it was computed with `direct`, which is what loading assumes.

use super::error::ModelError;
use super::size::{ImageSize, Pooling};
use super::spec::{ConvAlgorithm, HeadSpec, NetworkSpec};
use super::weights::{BaseWeights, HeadWeights, ModelWeights, NamedTensor, HEAD_TENSORS};
use safetensors::{Dtype as StDtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Value of the `format` metadata key; bump when the layout changes.
pub const FORMAT: &str = "pipeline-vgg16/2";

/// A whole model on the host: what a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub spec: NetworkSpec,
    pub head: HeadSpec,
    pub weights: ModelWeights,
}

/// An owned f32 tensor to serialise.
struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32Tensor {
    fn of(t: &NamedTensor<'_>) -> Self {
        Self {
            shape: t.dims().to_vec(),
            bytes: t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for &F32Tensor {
    fn dtype(&self) -> StDtype {
        StDtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Reads one f32 tensor, checking presence, dtype and shape.
fn read_f32(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    expected: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let view = st.tensor(name).map_err(|_| ModelError::MissingTensor {
        path: path.to_path_buf(),
        name: name.to_string(),
    })?;
    if view.dtype() != StDtype::F32 {
        return Err(ModelError::DtypeMismatch {
            path: path.to_path_buf(),
            name: name.to_string(),
            found: format!("{:?}", view.dtype()),
        });
    }
    if view.shape() != expected {
        return Err(ModelError::ShapeMismatch {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn read_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, ModelError> {
    SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Reads the base from safetensors `st` in torchvision naming; other tensors are ignored.
fn read_base(st: &SafeTensors<'_>, path: &Path) -> Result<BaseWeights, ModelError> {
    BaseWeights::try_from_fn(|name, shape| read_f32(st, path, name, shape))
}

/// Loads the 13 convolutions from a `.safetensors` file in torchvision VGG16 naming
/// (`features.0.weight` `[64, 3, 3, 3]` f32, ...), e.g. ImageNet weights: the `features.*`
/// entries of `torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()` (the README
/// has the conversion; `.features.state_dict()` alone names them `0.weight`, ...).
pub fn load_base_weights(path: &Path) -> Result<BaseWeights, ModelError> {
    let bytes = read_file(path)?;
    read_base(&parse(&bytes, path)?, path)
}

/// The metadata every checkpoint carries about the network.
fn network_metadata(spec: &NetworkSpec) -> Vec<(&'static str, String)> {
    vec![
        ("format", FORMAT.to_string()),
        ("image_size", spec.size().pixels().to_string()),
        ("pooling", spec.pooling().name().to_string()),
        ("conv", spec.conv().name().to_string()),
    ]
}

/// Writes the whole model to `path` (layout in the module docs).
pub fn save(model: &Model, path: &Path) -> Result<(), ModelError> {
    let mut tensors = model.weights.base.tensors();
    tensors.extend(model.weights.head.tensors());
    let mut metadata = network_metadata(&model.spec);
    metadata.extend([
        ("units", model.head.units().to_string()),
        ("dropout", model.head.dropout().to_string()),
        (
            "input_layout",
            "NHWC f32; conv weights OIHW (torchvision)".to_string(),
        ),
    ]);
    write(&tensors, metadata, path)
}

/// Writes only what the frozen-feature pass depends on: the base in torchvision naming, with
/// the input size, pooling and conv algorithm in the metadata. A change of the head leaves
/// these bytes, and so every feature computed from them, unchanged.
pub fn save_base(spec: &NetworkSpec, base: &BaseWeights, path: &Path) -> Result<(), ModelError> {
    write(&base.tensors(), network_metadata(spec), path)
}

/// What [`load_base`] reads: the base and how it is to be run.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseCheckpoint {
    pub spec: NetworkSpec,
    pub weights: BaseWeights,
}

/// The `conv` metadata value; files written before it existed were computed `direct`.
fn conv_of(meta: &HashMap<String, String>) -> Option<ConvAlgorithm> {
    meta.get("conv")
        .map_or(Some(ConvAlgorithm::Direct), |name| {
            ConvAlgorithm::from_name(name)
        })
}

/// Reads a file written by [`save_base`]: the base, and the input size, pooling and conv
/// algorithm it was built for.
pub fn load_base(path: &Path) -> Result<BaseCheckpoint, ModelError> {
    let bytes = read_file(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let meta = decode_metadata(header.metadata());
    let field = |name: &str| {
        meta.get(name)
            .cloned()
            .ok_or_else(|| ModelError::Safetensors {
                path: path.to_path_buf(),
                detail: format!("metadata `{name}` is missing"),
            })
    };
    let pixels: u32 = field("image_size")?
        .parse()
        .map_err(|_| ModelError::Safetensors {
            path: path.to_path_buf(),
            detail: "metadata `image_size` is not a number".into(),
        })?;
    let size = ImageSize::from_pixels(pixels)?;
    let pooling_name = field("pooling")?;
    let pooling = Pooling::from_name(&pooling_name).ok_or_else(|| ModelError::Safetensors {
        path: path.to_path_buf(),
        detail: format!("unknown pooling `{pooling_name}` in the metadata"),
    })?;
    let conv = conv_of(&meta).ok_or_else(|| ModelError::Safetensors {
        path: path.to_path_buf(),
        detail: format!(
            "unknown conv `{}` in the metadata",
            meta.get("conv").map_or("", |s| s.as_str())
        ),
    })?;
    let spec = NetworkSpec::new(size, pooling, conv)?;
    let weights = read_base(&parse(&bytes, path)?, path)?;
    Ok(BaseCheckpoint { spec, weights })
}

fn write(
    tensors: &[NamedTensor<'_>],
    metadata: Vec<(&str, String)>,
    path: &Path,
) -> Result<(), ModelError> {
    let owned: Vec<(&str, F32Tensor)> =
        tensors.iter().map(|t| (t.name, F32Tensor::of(t))).collect();
    safetensors::serialize_to_file(
        owned.iter().map(|(n, t)| (*n, t)),
        Some(encode_metadata(&metadata)),
        path,
    )
    .map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => ModelError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => ModelError::Safetensors {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

/// The metadata key holding all of ours. safetensors keeps metadata in a `HashMap`, whose
/// order (and so the file's bytes) would change from process to process with several keys;
/// one key holding `name=value` lines keeps checkpoints byte-identical run to run.
const METADATA_KEY: &str = "pipeline";

fn encode_metadata(pairs: &[(&str, String)]) -> HashMap<String, String> {
    let lines: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    HashMap::from([(METADATA_KEY.to_string(), lines.join("\n"))])
}

fn decode_metadata(metadata: &Option<HashMap<String, String>>) -> HashMap<String, String> {
    metadata
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Model, ModelError> {
    let bytes = read_file(path)?;
    let st = parse(&bytes, path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let meta = decode_metadata(header.metadata());
    let get = |key: &str| -> Result<&String, ModelError> {
        meta.get(key).ok_or_else(|| ModelError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            detail: "missing".to_string(),
        })
    };
    let bad = |key: &str, detail: String| ModelError::Metadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        detail,
    };
    let format = get("format")?;
    if format != FORMAT {
        return Err(bad("format", format!("`{format}`, expected `{FORMAT}`")));
    }
    let pixels: u32 = get("image_size")?
        .parse()
        .map_err(|e| bad("image_size", format!("{e}")))?;
    let size = ImageSize::from_pixels(pixels)?;
    let pooling_name = get("pooling")?;
    let pooling = Pooling::from_name(pooling_name)
        .ok_or_else(|| bad("pooling", format!("unknown `{pooling_name}`")))?;
    let conv = conv_of(&meta).ok_or_else(|| {
        bad(
            "conv",
            format!(
                "unknown `{}`, expected one of {}",
                meta.get("conv").map_or("", |s| s.as_str()),
                ConvAlgorithm::NAMES.join(", ")
            ),
        )
    })?;
    let units: usize = get("units")?
        .parse()
        .map_err(|e| bad("units", format!("{e}")))?;
    let dropout: f32 = get("dropout")?
        .parse()
        .map_err(|e| bad("dropout", format!("{e}")))?;
    let spec = NetworkSpec::new(size, pooling, conv)?;
    let head = HeadSpec::new(units, dropout)?;
    let base = read_base(&st, path)?;
    let shapes = HeadWeights::shapes(units);
    let mut values: [Vec<f32>; 4] = Default::default();
    for ((name, shape), slot) in HEAD_TENSORS.iter().zip(&shapes).zip(values.iter_mut()) {
        *slot = read_f32(&st, path, name, shape)?;
    }
    let head_weights = HeadWeights::new(units, values)?;
    Ok(Model {
        spec,
        head,
        weights: ModelWeights {
            base,
            head: head_weights,
        },
    })
}
