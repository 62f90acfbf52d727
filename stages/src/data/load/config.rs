//! The load stage's parameters, as they appear under `[stages.<name>]` in an experiment file.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::validate::{self, ConfigError};

/// The largest `image_size` the load stage accepts.
pub const MAX_IMAGE_SIZE: u32 = 16384;
/// At most this many classes (labels are stored as one byte).
pub const MAX_CLASSES: usize = 256;

/// Parameters of the load stage.
///
/// ```toml
/// classes = ["NORMAL", "COVID"]   # label i = classes[i]; default as shown
/// image_size = 237
/// on_bad_image = "error"          # or "skip"; default "error"
/// allow_truncated_images = false  # default false: a JPEG cut short is a bad image
/// allow_outside_data_root = false # default false: no symbolic link may lead out of the root
///
/// [[sources]]
/// type = "cohen"
/// path = "covid-chestxray-dataset"
/// label = "COVID"
/// filters = { finding = "COVID-19", modality = "X-ray", view = ["PA", "AP"] }
/// exclude_extensions = [".gz"]
///
/// [[sources]]
/// type = "folder"
/// path = "chest_xray/train/NORMAL"
/// label = "NORMAL"
/// limit = 100
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Class names; an image's label is the index of its class in this list.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    /// Side of the square every image is resized to.
    pub image_size: u32,
    /// What to do with an image that cannot be read or decoded.
    #[serde(default)]
    pub on_bad_image: OnBadImage,
    /// Load JPEGs cut short (the missing part gray) instead of treating them as bad images.
    #[serde(default)]
    pub allow_truncated_images: bool,
    /// Follow symbolic links (to files or folders) that lead out of the data root. Without
    /// it every file read must resolve to a path inside the data root.
    #[serde(default)]
    pub allow_outside_data_root: bool,
    /// Where the images come from, loaded in this order.
    pub sources: Vec<Source>,
}

impl LoadConfig {
    /// Checks what the types alone cannot, naming the parameter at fault: the experiment's
    /// check calls this (so the problem gets its line and column before anything runs) and
    /// the stage calls it again before it reads anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            return Err(ConfigError::new(
                "image_size",
                format!(
                    "must be between 1 and {MAX_IMAGE_SIZE}, not {}",
                    self.image_size
                ),
            ));
        }
        let mut distinct = self.classes.clone();
        distinct.sort();
        distinct.dedup();
        if self.classes.is_empty()
            || self.classes.len() > MAX_CLASSES
            || distinct.len() != self.classes.len()
            || self.classes.iter().any(String::is_empty)
        {
            return Err(ConfigError::new(
                "classes",
                format!(
                    "must hold 1 to {MAX_CLASSES} distinct, non-empty names, not {:?}",
                    self.classes
                ),
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::new(
                "sources",
                "must hold at least one source: add a [[stages.NAME.sources]] table",
            ));
        }
        for source in &self.sources {
            source.validate()?;
        }
        Ok(())
    }
}

impl Source {
    /// Paths stay under the data root; a synthetic source gives exactly one count.
    fn validate(&self) -> Result<(), ConfigError> {
        let paths: Vec<&str> = match self {
            Source::Cohen(s) => vec![&s.path, &s.metadata, &s.images_dir],
            Source::Folder(s) => vec![&s.path],
            Source::Npy(s) => vec![&s.images, &s.labels],
            Source::Synthetic(s) => {
                if s.count.is_some() == s.count_per_class.is_some() {
                    return Err(ConfigError::new(
                        "sources",
                        format!(
                            "must give exactly one of `count` and `count_per_class` in the \
                             synthetic source (seed {})",
                            s.seed
                        ),
                    ));
                }
                Vec::new()
            }
        };
        for path in paths {
            validate::data_path("sources", path)?;
        }
        Ok(())
    }
}

fn default_classes() -> Vec<String> {
    vec!["NORMAL".to_owned(), "COVID".to_owned()]
}

/// Policy for unreadable, corrupt or missing images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadImage {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Leave the image out; list it in `skipped.csv` and the report.
    Skip,
}

/// One declared origin of images, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    /// A `metadata.csv` plus an images folder, rows selected by column filters.
    Cohen(CohenSource),
    /// Every image of one folder, all of one class.
    Folder(FolderSource),
    /// Ready arrays: `X.npy` (N x H x W x 3, uint8) and `Y.npy` (N or N x 1 class indices).
    Npy(NpySource),
    /// Seeded synthetic chest-X-ray-like images of two classes.
    Synthetic(SyntheticSource),
}

/// A Cohen-style collection (`metadata.csv` + `images/`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohenSource {
    /// Folder of the collection, relative to the data root.
    pub path: String,
    /// Class of every selected image.
    pub label: String,
    /// The CSV file inside `path`.
    #[serde(default = "default_metadata")]
    pub metadata: String,
    /// The folder inside `path` holding the files named by `filename_column`.
    #[serde(default = "default_images_dir")]
    pub images_dir: String,
    /// The column holding each row's file name.
    #[serde(default = "default_filename_column")]
    pub filename_column: String,
    /// `column = "value"` (exact match) or `column = ["a", "b"]` (any of them); all must hold.
    #[serde(default)]
    pub filters: BTreeMap<String, FilterValue>,
    /// File name endings to leave out, compared case-insensitively (e.g. `".gz"`).
    #[serde(default)]
    pub exclude_extensions: Vec<String>,
}

fn default_metadata() -> String {
    "metadata.csv".to_owned()
}
fn default_images_dir() -> String {
    "images".to_owned()
}
fn default_filename_column() -> String {
    "filename".to_owned()
}

/// The accepted value(s) of one filtered column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FilterValue {
    /// The cell must equal this text.
    One(String),
    /// The cell must equal one of these.
    AnyOf(Vec<String>),
}

impl FilterValue {
    /// Whether a cell passes this filter.
    pub fn accepts(&self, cell: &str) -> bool {
        match self {
            FilterValue::One(v) => v == cell,
            FilterValue::AnyOf(vs) => vs.iter().any(|v| v == cell),
        }
    }
}

/// A folder of images of one class (e.g. Kermany's `chest_xray/train/NORMAL`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSource {
    /// The folder, relative to the data root.
    pub path: String,
    /// Class of every image in it.
    pub label: String,
    /// Keep only the first `limit` files in sorted file-name order.
    #[serde(default)]
    pub limit: Option<usize>,
    /// File name endings that count as images, case-insensitive.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
}

fn default_extensions() -> Vec<String> {
    [".jpg", ".jpeg", ".png"].map(str::to_owned).to_vec()
}

/// Arrays in the seed's format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpySource {
    /// `X.npy`: uint8, N x H x W x 3 (resized to `image_size` when H or W differ).
    pub images: String,
    /// `Y.npy`: N or N x 1 integer class indices into `classes` (any integer or float dtype
    /// holding whole numbers).
    pub labels: String,
}

/// Generated images for the quickstart and for tests that must run without real data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Images per class (give this or `count`).
    #[serde(default)]
    pub count_per_class: Option<usize>,
    /// Images in all (give this or `count_per_class`); the negative class gets the odd one.
    #[serde(default)]
    pub count: Option<usize>,
    /// Seed of the generator; the same seed gives the same bytes.
    pub seed: u64,
    /// `[negative, positive]` classes; default the first two of `classes`.
    #[serde(default)]
    pub labels: Option<[String; 2]>,
}
