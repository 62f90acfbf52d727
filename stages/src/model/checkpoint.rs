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
//!   `[O, units]`, `head.dense2.bias` `[O]`: PyTorch `Linear` layout (`[out, in]`); `O` is 1
//!   for two classes (a logit: sigmoid), else the number of classes (logits: softmax).
//! - Metadata: `format`, `image_size`, `pooling`, `conv`, `units`, `dropout`, `input_layout`,
//!   and `classes` (a JSON array of the class names, class 0 first) unless the classes are
//!   the default pair ([`DEFAULT_CLASSES`]): the seed's checkpoints keep their bytes, and a
//!   file without the key has those two classes. `conv` (the forward algorithm, see
//!   [`ConvAlgorithm`]) was added within format 2: a file without it was computed with
//!   `direct`, which is what loading assumes.

use super::error::ModelError;
use super::size::{ImageSize, Pooling};
use super::spec::{
    class_names_problem, default_classes, ConvAlgorithm, HeadSpec, NetworkSpec, DEFAULT_CLASSES,
};
use super::weights::{BaseWeights, HeadWeights, ModelWeights, NamedTensor, HEAD_TENSORS};
use safetensors::tensor::Metadata;
use safetensors::{Dtype as StDtype, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Value of the `format` metadata key; bump when the layout changes.
pub const FORMAT: &str = "pipeline-vgg16/2";

/// A whole model on the host: what a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub spec: NetworkSpec,
    pub head: HeadSpec,
    pub weights: ModelWeights,
    /// The class names, class 0 first: `head.classes()` of them.
    pub classes: Vec<String>,
}

impl Model {
    /// The class names, class 0 first.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

/// An f32 tensor to serialise: its values' bytes borrowed where the machine is
/// little-endian, as the file is (a 59 MB model is not copied once more to be written).
struct F32Tensor<'a> {
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

impl<'a> F32Tensor<'a> {
    fn of(t: &NamedTensor<'a>) -> Self {
        let bytes = if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(t.values))
        } else {
            Cow::Owned(t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        Self {
            shape: t.dims().to_vec(),
            bytes,
        }
    }
}

impl View for &F32Tensor<'_> {
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

/// Headers larger than this are refused before they are read (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Fills `buf` from `file` at `offset`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// A safetensors file opened for reading tensors one at a time: the header is read and
/// checked against the file's length, and each tensor's bytes are read straight into its
/// values when asked for. A stage that needs only the head reads ~130 kB of a 59 MB model,
/// and a whole model is copied once, not read into a buffer and then converted.
struct TensorFile {
    file: File,
    path: PathBuf,
    /// Where the data section begins: after the length and the header.
    data_start: u64,
    header: Metadata,
}

impl TensorFile {
    fn open(path: &Path) -> Result<TensorFile, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |detail: String| ModelError::Safetensors {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len_bytes = [0u8; 8];
        read_exact_at(&file, &mut len_bytes, 0)
            .map_err(|_| bad("shorter than its header's length".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER || header_len + 8 > file_len {
            return Err(bad(format!(
                "a header of {header_len} bytes does not fit in a file of {file_len}"
            )));
        }
        let mut header_bytes = vec![0u8; header_len as usize];
        read_exact_at(&file, &mut header_bytes, 8).map_err(io)?;
        // Checks that the tensors lie end to end, each as long as its dtype and shape say.
        let header: Metadata = serde_json::from_slice(&header_bytes)
            .map_err(|e| bad(format!("its header does not parse: {e}")))?;
        let data_len = header
            .tensors()
            .values()
            .map(|info| info.data_offsets.1 as u64)
            .max()
            .unwrap_or(0);
        if 8 + header_len + data_len != file_len {
            return Err(bad(format!(
                "its header describes {} bytes, the file has {file_len}",
                8 + header_len + data_len
            )));
        }
        Ok(TensorFile {
            file,
            path: path.to_path_buf(),
            data_start: 8 + header_len,
            header,
        })
    }

    /// Our metadata, as `name -> value`.
    fn metadata(&self) -> HashMap<String, String> {
        decode_metadata(self.header.metadata())
    }

    /// Reads one f32 tensor, checking presence, dtype and shape.
    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let path = &self.path;
        let info = self
            .header
            .info(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
            })?;
        if info.dtype != StDtype::F32 {
            return Err(ModelError::DtypeMismatch {
                path: path.to_path_buf(),
                name: name.to_string(),
                found: format!("{:?}", info.dtype),
            });
        }
        if info.shape != expected {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        // The header's check guarantees the range holds exactly these values.
        let mut values = vec![0f32; expected.iter().product()];
        read_exact_at(
            &self.file,
            bytemuck::cast_slice_mut(&mut values),
            self.data_start + info.data_offsets.0 as u64,
        )
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if cfg!(target_endian = "big") {
            for v in &mut values {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        Ok(values)
    }

    /// The base in torchvision naming; other tensors are ignored.
    fn base(&self) -> Result<BaseWeights, ModelError> {
        BaseWeights::try_from_fn(|name, shape| self.read_f32(name, shape))
    }
}

/// Loads the 13 convolutions from a `.safetensors` file in torchvision VGG16 naming
/// (`features.0.weight` `[64, 3, 3, 3]` f32, ...), e.g. ImageNet weights: the `features.*`
/// entries of `torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()` (the README
/// has the conversion; `.features.state_dict()` alone names them `0.weight`, ...).
pub fn load_base_weights(path: &Path) -> Result<BaseWeights, ModelError> {
    TensorFile::open(path)?.base()
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
    check_classes(model, path)?;
    let mut tensors = model.weights.base.tensors();
    tensors.extend(model.weights.head.tensors());
    write(&tensors, model_metadata(model), path)
}

/// The metadata of a whole checkpoint: the network's, the head's, and the input layout.
fn model_metadata(model: &Model) -> Vec<(&'static str, String)> {
    let mut metadata = network_metadata(&model.spec);
    metadata.extend([
        ("units", model.head.units().to_string()),
        ("dropout", model.head.dropout().to_string()),
        (
            "input_layout",
            "NHWC f32; conv weights OIHW (torchvision)".to_string(),
        ),
    ]);
    // Only where they are not the default pair: the seed's checkpoints keep their bytes.
    if model.classes != DEFAULT_CLASSES {
        metadata.push((CLASSES_KEY, classes_value(&model.classes)));
    }
    metadata
}

/// The metadata key of the class names.
const CLASSES_KEY: &str = "classes";

/// The class names as the metadata holds them: a JSON array (names may hold any character).
fn classes_value(classes: &[String]) -> String {
    serde_json::Value::from(classes.to_vec()).to_string()
}

/// Refuses to write a model whose class names do not fit its head.
fn check_classes(model: &Model, path: &Path) -> Result<(), ModelError> {
    let bad = |detail: String| ModelError::Metadata {
        path: path.to_path_buf(),
        key: CLASSES_KEY.to_string(),
        detail,
    };
    if let Some(problem) = class_names_problem(&model.classes) {
        return Err(bad(problem));
    }
    if model.classes.len() != model.head.classes() {
        return Err(bad(format!(
            "{} names for a head of {} classes",
            model.classes.len(),
            model.head.classes()
        )));
    }
    Ok(())
}

/// Writes the head alone (`head.*` tensors) with the whole checkpoint's metadata, so that
/// [`load_head`] reads it as it reads a whole checkpoint, and [`with_head`] puts it back on
/// its base: what a run directory holds of a head trained on a frozen base.
pub fn save_head(model: &Model, path: &Path) -> Result<(), ModelError> {
    check_classes(model, path)?;
    write(&model.weights.head.tensors(), model_metadata(model), path)
}

/// The whole model: the checkpoint `base` (the one the head was trained from) with its head
/// replaced by the one in `head` (written by [`save_head`]). Both must describe the same
/// network and head shape; [`save`] of the result gives back the trained checkpoint's bytes.
pub fn with_head(base: &Path, head: &Path) -> Result<Model, ModelError> {
    let mut model = load(base)?;
    let trained = load_head(head)?;
    if trained.spec != model.spec || trained.head != model.head || trained.classes != model.classes
    {
        return Err(ModelError::Metadata {
            path: head.to_path_buf(),
            key: "format".to_string(),
            detail: format!(
                "describes another network than its base {} (image size, pooling, conv, units, dropout or classes differ)",
                base.display()
            ),
        });
    }
    model.weights.head = trained.weights;
    Ok(model)
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
    let file = TensorFile::open(path)?;
    let meta = file.metadata();
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
    let weights = file.base()?;
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
    let file = TensorFile::open(path)?;
    let (spec, head, classes) = specs_of(&file)?;
    let base = file.base()?;
    let head_weights = read_head(&file, head)?;
    Ok(Model {
        spec,
        head,
        weights: ModelWeights {
            base,
            head: head_weights,
        },
        classes,
    })
}

/// The head of a checkpoint, and the network it belongs to, without its base.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadCheckpoint {
    pub spec: NetworkSpec,
    pub head: HeadSpec,
    pub weights: HeadWeights,
    /// The class names, class 0 first: `head.classes()` of them.
    pub classes: Vec<String>,
}

impl HeadCheckpoint {
    /// The class names, class 0 first.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

/// Reads the head of a checkpoint written by [`save`], leaving the base's bytes unread: for
/// the stages that work from features.
pub fn load_head(path: &Path) -> Result<HeadCheckpoint, ModelError> {
    let file = TensorFile::open(path)?;
    let (spec, head, classes) = specs_of(&file)?;
    let weights = read_head(&file, head)?;
    Ok(HeadCheckpoint {
        spec,
        head,
        weights,
        classes,
    })
}

fn read_head(file: &TensorFile, head: HeadSpec) -> Result<HeadWeights, ModelError> {
    let units = head.units();
    let shapes = HeadWeights::shapes(units, head.outputs());
    let mut values: [Vec<f32>; 4] = Default::default();
    for ((name, shape), slot) in HEAD_TENSORS.iter().zip(&shapes).zip(values.iter_mut()) {
        *slot = file.read_f32(name, shape)?;
    }
    HeadWeights::new(units, values)
}

/// The network, head and class names a checkpoint's metadata describe.
fn specs_of(file: &TensorFile) -> Result<(NetworkSpec, HeadSpec, Vec<String>), ModelError> {
    let path = file.path.as_path();
    let meta = file.metadata();
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
    let classes = match meta.get(CLASSES_KEY) {
        None => default_classes(),
        Some(text) => {
            let names: Vec<String> = serde_json::from_str(text).map_err(|e| {
                bad(
                    CLASSES_KEY,
                    format!("`{text}` is not a JSON array of names: {e}"),
                )
            })?;
            if let Some(problem) = class_names_problem(&names) {
                return Err(bad(CLASSES_KEY, problem));
            }
            names
        }
    };
    let spec = NetworkSpec::new(size, pooling, conv)?;
    let head = HeadSpec::new(units, dropout)?.with_classes(classes.len())?;
    Ok((spec, head, classes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build::build_model;
    use crate::model::config::ModelConfig;

    fn built(dir: &Path, units: usize) -> PathBuf {
        let cfg: ModelConfig = toml::from_str(&format!(
            "image_size = 32\nweights = \"random\"\nseed = 42\n[head]\nunits = {units}\ndropout = 0.2\npooling = \"global\"\n"
        ))
        .unwrap();
        build_model(&cfg, dir).unwrap().checkpoint
    }

    /// The JSON header of a safetensors file.
    fn header(path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        String::from_utf8(bytes[8..8 + len].to_vec()).unwrap()
    }

    #[test]
    fn class_names_travel_in_the_metadata_unless_they_are_the_default_pair() {
        let dir = tempfile::tempdir().unwrap();
        // The seed's pair: no `classes` key, so the seed's checkpoints keep their bytes.
        let binary = built(dir.path(), 16);
        assert!(!header(&binary).contains("classes"), "{}", header(&binary));
        let loaded = load(&binary).unwrap();
        assert_eq!(loaded.classes(), DEFAULT_CLASSES);
        assert_eq!(loaded.head.outputs(), 1);

        // Three classes: the names in order, the last layer three wide, everything back.
        let three = tempfile::tempdir().unwrap();
        let names = ["NORMAL", "PNEUMONIA", "COVID-19, ARDS \"x\""];
        let cfg: ModelConfig = toml::from_str(&format!(
            "image_size = 32\nweights = \"random\"\nseed = 42\nclasses = {names:?}\n[head]\nunits = 16\ndropout = 0.2\npooling = \"global\"\n"
        ))
        .unwrap();
        let path = build_model(&cfg, three.path()).unwrap().checkpoint;
        let text = header(&path);
        assert!(
            text.contains(r#"classes=[\"NORMAL\",\"PNEUMONIA\""#),
            "{text}"
        );
        let model = load(&path).unwrap();
        assert_eq!(model.classes(), names);
        assert_eq!(model.head.classes(), 3);
        assert_eq!(model.weights.head.outputs(), 3);
        let head = load_head(&path).unwrap();
        assert_eq!(head.classes(), names);
        assert_eq!(head.weights, model.weights.head);
        // Saved again, the same bytes; the head alone goes back on its base.
        let again = three.path().join("again.safetensors");
        save(&model, &again).unwrap();
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&path).unwrap());
        let head_file = three.path().join("head.safetensors");
        save_head(&model, &head_file).unwrap();
        assert_eq!(with_head(&path, &head_file).unwrap(), model);
        // A head of other classes does not go on this base.
        let err = with_head(&binary, &head_file).unwrap_err().to_string();
        assert!(err.contains("classes differ"), "{err}");
        // Two named classes other than the default pair are recorded too.
        let mut renamed = loaded.clone();
        renamed.classes = vec!["PNEUMONIA".into(), "COVID".into()];
        let other = dir.path().join("renamed.safetensors");
        save(&renamed, &other).unwrap();
        assert_eq!(load(&other).unwrap().classes(), renamed.classes);
        // Names that do not fit the head are refused, naming the key.
        renamed.classes = vec!["A".into(), "B".into(), "C".into()];
        let err = save(&renamed, &other).unwrap_err().to_string();
        assert!(
            err.contains("`classes`") && err.contains("3 names for a head of 2"),
            "{err}"
        );
    }

    #[test]
    fn the_head_put_back_on_its_base_gives_the_trained_checkpoints_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let initial = built(dir.path(), 64);
        let mut trained = load(&initial).unwrap();
        let moved: [Vec<f32>; 4] = trained
            .weights
            .head
            .values()
            .clone()
            .map(|v| v.iter().map(|x| x + 0.5).collect());
        trained.weights.head = HeadWeights::new(64, moved).unwrap();
        let (whole, head, again) = (
            dir.path().join("trained.safetensors"),
            dir.path().join("head.safetensors"),
            dir.path().join("again.safetensors"),
        );
        save(&trained, &whole).unwrap();
        save_head(&trained, &head).unwrap();
        assert!(std::fs::metadata(&head).unwrap().len() < 200_000);
        save(&with_head(&initial, &head).unwrap(), &again).unwrap();
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&whole).unwrap());
        assert_ne!(
            std::fs::read(&initial).unwrap(),
            std::fs::read(&whole).unwrap()
        );

        // A head of another shape is refused, naming the head file.
        let other = tempfile::tempdir().unwrap();
        let wide = load(&built(other.path(), 128)).unwrap();
        let wide_head = other.path().join("head.safetensors");
        save_head(&wide, &wide_head).unwrap();
        let err = with_head(&initial, &wide_head).unwrap_err().to_string();
        assert!(err.contains("head.safetensors"), "{err}");
        assert!(err.contains("another network"), "{err}");
    }
}
