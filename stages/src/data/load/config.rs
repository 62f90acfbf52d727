//! The load stage's parameters, as they appear under `[stages.<name>]` in an experiment file.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::validate::{self, ConfigError};

/// The largest `image_size` the load stage accepts.
pub const MAX_IMAGE_SIZE: u32 = 16384;
/// At most this many classes (labels are stored as one byte).
pub const MAX_CLASSES: usize = 256;
/// The synthetic source has this many distinct visual cues, so it draws at most this many
/// classes (see `synthetic.rs`).
pub const MAX_SYNTHETIC_CLASSES: usize = 8;
/// The columns `index.csv` always has: a source's `group_by` cannot be one of them.
pub const INDEX_COLUMNS: [&str; 7] = ["row", "path", "label", "class", "blake3", "width", "height"];

/// Parameters of the load stage.
///
/// ```toml
/// classes = ["NORMAL", "COVID"]   # label i = classes[i]; default as shown
/// image_size = 237
/// on_bad_image = "error"          # or "skip"; default "error"
/// allow_truncated_images = false  # default false: a JPEG cut short is a bad image
/// allow_outside_data_root = false # default false: no symbolic link may lead out of the root
/// allow_empty_classes = false     # default false: every class needs at least one image
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
///
/// A source may say which group (patient) each image belongs to, for a grouped split:
/// `group_by = "patientid"` names a `metadata.csv` column (cohen), or, with
/// `group_pattern = "IM-(\\d+)-"`, the column that the first capture group of a regex on the
/// file name fills (folder); a synthetic source gives `group_size` consecutive images of a class
/// one group. `index.csv` then gains that column; every source that declares one names the same.
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
    /// Let a declared class have no image. An evaluation set may lack a class the model
    /// knows (model2's external set has no PNEUMONIA image) while its labels must still be
    /// the model's; without it an empty class is an error (most often a misspelt `label`).
    #[serde(default)]
    pub allow_empty_classes: bool,
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
            source.validate(&self.classes)?;
        }
        self.check_group_columns()
    }

    /// The `index.csv` column of the sources' groups: the `group_by` of every source that
    /// declares one (they must agree; [`LoadConfig::validate`] checks), or `None`.
    pub fn group_column(&self) -> Option<&str> {
        self.sources.iter().find_map(Source::group_by)
    }

    /// Every declared `group_by` names the same new column.
    fn check_group_columns(&self) -> Result<(), ConfigError> {
        let mut names = self.sources.iter().filter_map(Source::group_by);
        let Some(first) = names.next() else {
            return Ok(());
        };
        if let Some(other) = names.find(|n| *n != first) {
            return Err(ConfigError::new(
                "sources",
                format!(
                    "declare group_by = {first:?} and group_by = {other:?}: every source that \
                     declares group_by must name the same column of index.csv"
                ),
            ));
        }
        if first.is_empty() || INDEX_COLUMNS.contains(&first) {
            return Err(ConfigError::new(
                "sources",
                format!(
                    "declare group_by = {first:?}, which cannot name index.csv's new column: \
                     give a non-empty name other than {}",
                    INDEX_COLUMNS.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

impl Source {
    /// Paths stay under the data root; a synthetic source gives exactly one count, one per
    /// class it draws; a folder's `group_pattern` is a regex with a capture group.
    fn validate(&self, classes: &[String]) -> Result<(), ConfigError> {
        let paths: Vec<&str> = match self {
            Source::Cohen(s) => vec![&s.path, &s.metadata, &s.images_dir],
            Source::Folder(s) => {
                s.pattern()?;
                vec![&s.path]
            }
            Source::Npy(s) => vec![&s.images, &s.labels],
            Source::Synthetic(s) => {
                s.validate(classes)?;
                Vec::new()
            }
        };
        for path in paths {
            validate::data_path("sources", path)?;
        }
        Ok(())
    }

    /// The `index.csv` column this source's groups go in, if it declares them.
    pub fn group_by(&self) -> Option<&str> {
        match self {
            Source::Cohen(s) => s.group_by.as_deref(),
            Source::Folder(s) => s.group_by.as_deref(),
            Source::Npy(_) => None,
            Source::Synthetic(s) => s.group_by.as_deref(),
        }
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
    /// A column whose value is each image's group (`"patientid"`); `index.csv` gains a
    /// column of that name holding it.
    #[serde(default)]
    pub group_by: Option<String>,
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
    /// The name of the groups' `index.csv` column (give it with `group_pattern`).
    #[serde(default)]
    pub group_by: Option<String>,
    /// A regex searched for in each file name; its first capture group is the file's group
    /// (`"IM-(\\d+)-"` gives Kermany's patient). A file it does not match is an error.
    #[serde(default)]
    pub group_pattern: Option<String>,
}

impl FolderSource {
    /// The compiled `group_pattern`, checked to come with `group_by` and to capture.
    pub fn pattern(&self) -> Result<Option<regex::Regex>, ConfigError> {
        let at = || format!("in the folder source {:?}", self.path);
        let pattern = match (&self.group_by, &self.group_pattern) {
            (None, None) => return Ok(None),
            (Some(_), Some(p)) => p,
            (Some(g), None) => {
                return Err(ConfigError::new(
                    "sources",
                    format!(
                        "{}: group_by = {g:?} needs group_pattern, a regex on the file name \
                         whose first capture group is the group (\"IM-(\\\\d+)-\")",
                        at()
                    ),
                ))
            }
            (None, Some(p)) => {
                return Err(ConfigError::new(
                    "sources",
                    format!(
                        "{}: group_pattern = {p:?} needs group_by, the name of its index.csv \
                         column",
                        at()
                    ),
                ))
            }
        };
        let re = regex::Regex::new(pattern).map_err(|e| {
            let e = e.to_string().replace('\n', " ");
            ConfigError::new(
                "sources",
                format!(
                    "{}: group_pattern {pattern:?} is not a valid regex: {e}",
                    at()
                ),
            )
        })?;
        if re.captures_len() < 2 {
            return Err(ConfigError::new(
                "sources",
                format!(
                    "{}: group_pattern {pattern:?} has no capture group: put the part of the \
                     file name that names the group in parentheses",
                    at()
                ),
            ));
        }
        Ok(Some(re))
    }
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
///
/// It draws the classes `labels` (default: every class of `classes`), the i-th with the i-th
/// visual cue: healthy lungs, diffuse opacities, then (three classes or more) one dense
/// consolidation per class at its own place.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Images per class, one number for all or one per drawn class (give this or `count`).
    #[serde(default)]
    pub count_per_class: Option<SyntheticCounts>,
    /// Images in all (give this or `count_per_class`), shared as evenly as can be; the first
    /// classes get the odd ones.
    #[serde(default)]
    pub count: Option<usize>,
    /// Seed of the generator; the same seed gives the same bytes.
    pub seed: u64,
    /// The classes drawn, in cue order (`[negative, positive, ...]`); default `classes`.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// The name of the groups' `index.csv` column (each image its own group unless
    /// `group_size` says otherwise).
    #[serde(default)]
    pub group_by: Option<String>,
    /// Consecutive images of one class share a group, this many to a group (the last of a
    /// class may be smaller). Needs `group_by`.
    #[serde(default)]
    pub group_size: Option<usize>,
}

/// `count_per_class`: one count for every class, or one per drawn class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SyntheticCounts {
    Each(usize),
    PerClass(Vec<usize>),
}

impl SyntheticSource {
    /// How many classes it draws, given the experiment's.
    pub fn drawn(&self, classes: &[String]) -> usize {
        self.labels.as_ref().map_or(classes.len(), Vec::len)
    }

    /// Images of each drawn class, in cue order.
    pub fn counts(&self, classes: &[String]) -> Vec<usize> {
        let c = self.drawn(classes).max(1);
        match (&self.count_per_class, self.count) {
            (Some(SyntheticCounts::Each(k)), _) => vec![*k; c],
            (Some(SyntheticCounts::PerClass(v)), _) => v.clone(),
            // Two classes: the negative gets the odd one, as before.
            (None, Some(n)) => (0..c).map(|i| n / c + usize::from(i < n % c)).collect(),
            (None, None) => Vec::new(),
        }
    }

    fn validate(&self, classes: &[String]) -> Result<(), ConfigError> {
        let bad = |why: String| {
            Err(ConfigError::new(
                "sources",
                format!("{why} in the synthetic source (seed {})", self.seed),
            ))
        };
        if self.count.is_some() == self.count_per_class.is_some() {
            return bad("must give exactly one of `count` and `count_per_class`".into());
        }
        let drawn = self.drawn(classes);
        if !(2..=MAX_SYNTHETIC_CLASSES).contains(&drawn) {
            return bad(format!(
                "must draw 2 to {MAX_SYNTHETIC_CLASSES} classes, not {drawn} ({:?}): set \
                 `labels` or `classes`",
                self.labels.as_deref().unwrap_or(classes)
            ));
        }
        if let Some(labels) = &self.labels {
            let mut distinct = labels.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() != labels.len() {
                return bad(format!("`labels` {labels:?} must be distinct"));
            }
        }
        if let Some(SyntheticCounts::PerClass(v)) = &self.count_per_class {
            if v.len() != drawn {
                return bad(format!(
                    "`count_per_class` {v:?} must give one count for each of the {drawn} \
                     classes drawn"
                ));
            }
        }
        match (&self.group_by, self.group_size) {
            (None, Some(k)) => bad(format!(
                "`group_size = {k}` needs `group_by`, the name of its index.csv column"
            )),
            (_, Some(0)) => bad("`group_size` must be at least 1, not 0".into()),
            _ => Ok(()),
        }
    }
}
