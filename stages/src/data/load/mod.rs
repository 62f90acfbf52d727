//! The load stage: image files (or ready arrays, or synthetic images) to `images.npy` +
//! `labels.npy`, with an index of where every row came from.
//!
//! Files written into the caller's output directory:
//! - `images.npy`: uint8, N x S x S x 3 (RGB, row-major, S = `image_size`);
//! - `labels.npy`: uint8, N x 1, the index of each image's class in `classes`;
//! - `index.csv`: `row,path,label,class,blake3,width,height` per image (path relative to the
//!   data root; blake3 of the source file's bytes; width and height of the source after EXIF
//!   orientation). Rows from `npy` sources are named `X.npy#row` and hash the row's pixels;
//!   synthetic rows are named `synthetic:seed=S#i` and hash the generated pixels. When a
//!   source declares `group_by = "NAME"`, a last column `NAME` holds each row's group (empty
//!   for rows of sources that declare none: each its own group); otherwise the seven columns
//!   only. Equal values from different sources are one group (a split keeps them together);
//! - `skipped.csv`: `path,reason`, always written (header only when nothing was skipped).
//!
//! Row order is the order of `sources`, then each source's own order (CSV row order for
//! Cohen, sorted file names for folders), independent of the number of threads.
//!
//! Bad input is refused before it costs anything: every path read must resolve inside the
//! data root ([`confine`]), a stray quote in `metadata.csv` is an error ([`stray_quote`]),
//! `images.npy` must fit in the memory available before it is allocated, and each image is
//! checked for a decompression bomb or truncation before it is decoded.

mod config;
mod confine;
mod npy;
mod output;
mod sources;
mod stray_quote;
mod synthetic;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::Array4;
use rayon::prelude::*;
use serde::Serialize;

use super::decode::{decode_resize, DecodeError, DecodeOptions};
use super::image_file::read_image_file;
use super::memory_budget::{self, Bytes};
use super::resize::resize_u8;
use crate::progress::Progress;
pub use config::{
    CohenSource, FilterValue, FolderSource, LoadConfig, NpySource, OnBadImage, Source,
    SyntheticCounts, SyntheticSource, INDEX_COLUMNS, MAX_SYNTHETIC_CLASSES,
};
use confine::Confinement;
use sources::SelectedFile;

/// Everything that can stop the load stage; every variant names the file, key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("image_size must be between 1 and 16384, got {0}")]
    ImageSize(u32),
    #[error(transparent)]
    Invalid(#[from] crate::validate::ConfigError),
    #[error("label {label:?} is not one of the classes {classes:?}")]
    UnknownLabel { label: String, classes: Vec<String> },
    #[error("path {path:?} must be relative to the data root and must not contain `..`")]
    BadPath { path: String },
    #[error("folder {path} does not exist")]
    MissingDir { path: PathBuf },
    #[error("file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("cannot list folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{link} leads to {target}, outside the data root {root}: refused (allow_outside_data_root = true in the load stage follows such links)")]
    OutsideDataRoot {
        /// The path that was to be read.
        path: PathBuf,
        /// The symbolic link on the way to it that leads out (`path` itself, or a folder).
        link: PathBuf,
        /// Where the link resolves to.
        target: PathBuf,
        root: PathBuf,
    },
    #[error("cannot read CSV {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path} line {line}: {why}")]
    StrayQuote {
        path: PathBuf,
        line: u64,
        why: String,
    },
    #[error("CSV {path} has no column {column:?}")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{file}: the file name does not match group_pattern {pattern:?} of the folder source {folder:?}, so it has no group; change the pattern or move the file out")]
    GroupPattern {
        file: String,
        pattern: String,
        folder: String,
    },
    #[error("{csv} line {line} selects {path}, which does not exist")]
    MissingImage {
        csv: PathBuf,
        line: u64,
        path: PathBuf,
    },
    #[error("source {source_desc} selects no images")]
    EmptySource { source_desc: String },
    #[error("class {class:?} has no images after loading (allow_empty_classes = true in the load stage accepts that, e.g. for an evaluation set without that class)")]
    EmptyClass { class: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("cannot read {path}: {source}")]
    ReadNpy {
        path: PathBuf,
        source: ndarray_npy::ReadNpyError,
    },
    #[error("{path} has shape {shape:?}, expected {expected}")]
    NpyShape {
        path: PathBuf,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("{path} row {row} has label {value}, not a class index below {classes}")]
    NpyLabel {
        path: PathBuf,
        row: usize,
        value: f64,
        classes: usize,
    },
    #[error("cannot write {path}: {source}")]
    WriteNpy {
        path: PathBuf,
        source: ndarray_npy::WriteNpyError,
    },
    #[error("cannot write {path}: {source}")]
    WriteCsv { path: PathBuf, source: csv::Error },
    #[error("cannot create output folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image_size {size}: {images} images of {size} x {size} x 3 bytes need {needed} of memory (images.npy, and one image in progress per thread), but only {available} is available; lower image_size or load fewer images")]
    Memory {
        size: u32,
        images: usize,
        needed: Bytes,
        available: Bytes,
    },
    #[error("image_size {size}: cannot allocate {bytes} for the {images} images of images.npy: out of memory; lower image_size or load fewer images")]
    Alloc {
        size: u32,
        images: usize,
        bytes: Bytes,
    },
    #[error(
        "{path} is {needed} and needs as much memory to read, but only {available} is available"
    )]
    NpyMemory {
        path: PathBuf,
        needed: Bytes,
        available: Bytes,
    },
}

/// What a load did, for the run record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Rows written.
    pub images: usize,
    /// Side of every image.
    pub image_size: u32,
    /// Rows per class, in `classes` order.
    pub class_counts: Vec<ClassCount>,
    /// Images left out under `on_bad_image = "skip"`.
    pub skipped: Vec<Skipped>,
    /// Groups of paths whose files have identical bytes (not an error, but worth knowing).
    pub duplicates: Vec<Vec<String>>,
    /// Images turned upright by their EXIF orientation.
    pub reoriented: usize,
    /// Bytes of image files read.
    pub bytes_read: u64,
    /// Distinct groups, when a source declares `group_by` (a row with an empty group counts
    /// as one of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
}

/// Rows of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub class: String,
    pub label: u8,
    pub count: usize,
}

/// One image left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// One planned output row.
enum Item {
    File(SelectedFile),
    /// Row `row` of the array read from an npy source (shared by all its rows).
    Npy {
        rel: String,
        images: Arc<Array4<u8>>,
        row: usize,
    },
    Synthetic {
        seed: u64,
        index: u64,
        /// The class's place among the source's drawn classes: which visual cue it gets.
        cue: usize,
    },
}

struct Planned {
    item: Item,
    label: u8,
    /// The row's group, when its source declares `group_by`.
    group: Option<String>,
}

/// The outcome of listing every source: rows to produce, files read, rows already lost.
struct Plan {
    rows: Vec<Planned>,
    inputs: Vec<PathBuf>,
    skipped: Vec<Skipped>,
}

/// One produced row (its pixels are written straight into `images.npy`'s buffer).
struct Row {
    path: String,
    label: u8,
    digest: blake3::Hash,
    width: u32,
    height: u32,
    reoriented: bool,
    bytes: u64,
    from_file: bool,
    group: Option<String>,
}

fn label_of(cfg: &LoadConfig, label: &str) -> Result<u8, LoadError> {
    cfg.classes
        .iter()
        .position(|c| c == label)
        .map(|i| i as u8) // LoadConfig::validate bounds classes to 256
        .ok_or_else(|| LoadError::UnknownLabel {
            label: label.to_owned(),
            classes: cfg.classes.clone(),
        })
}

/// Lists every source. `read_arrays` loads npy sources' pixels (the load needs them,
/// `input_files` only their paths). Every path is checked against the data root before it is
/// opened.
fn plan(cfg: &LoadConfig, data_root: &Path, read_arrays: bool) -> Result<Plan, LoadError> {
    cfg.validate()?;
    let confine = Confinement::new(data_root, cfg.allow_outside_data_root);
    let mut plan = Plan {
        rows: Vec::new(),
        inputs: Vec::new(),
        skipped: Vec::new(),
    };
    for source in &cfg.sources {
        match source {
            Source::Cohen(src) => {
                let label = label_of(cfg, &src.label)?;
                let sel = sources::select_cohen(src, data_root, &confine)?;
                if let Some((file, line)) = sel.missing.first() {
                    if cfg.on_bad_image == OnBadImage::Error {
                        return Err(LoadError::MissingImage {
                            csv: sel.metadata,
                            line: *line,
                            path: file.abs.clone(),
                        });
                    }
                }
                for (file, line) in sel.missing {
                    plan.skipped.push(Skipped {
                        path: file.rel,
                        reason: format!("missing file (metadata line {line})"),
                    });
                }
                if sel.files.is_empty() {
                    return Err(LoadError::EmptySource {
                        source_desc: format!("cohen {}", src.path),
                    });
                }
                plan.inputs.push(sel.metadata);
                for file in sel.files {
                    plan.inputs.push(file.abs.clone());
                    plan.rows.push(Planned {
                        group: file.group.clone(),
                        item: Item::File(file),
                        label,
                    });
                }
            }
            Source::Folder(src) => {
                let label = label_of(cfg, &src.label)?;
                let files = sources::select_folder(src, data_root, &confine)?;
                if files.is_empty() {
                    return Err(LoadError::EmptySource {
                        source_desc: format!("folder {}", src.path),
                    });
                }
                for file in files {
                    plan.inputs.push(file.abs.clone());
                    plan.rows.push(Planned {
                        group: file.group.clone(),
                        item: Item::File(file),
                        label,
                    });
                }
            }
            Source::Npy(src) => {
                let images_rel = sources::relative(&[&src.images])?;
                let labels_rel = sources::relative(&[&src.labels])?;
                let images = data_root.join(&images_rel);
                let labels = data_root.join(&labels_rel);
                for path in [&images, &labels] {
                    confine.check(path)?;
                    if !path.is_file() {
                        return Err(LoadError::MissingFile { path: path.clone() });
                    }
                }
                plan.inputs.push(images.clone());
                plan.inputs.push(labels.clone());
                if read_arrays {
                    plan.rows
                        .extend(npy::rows(cfg, &images, &images_rel, &labels)?);
                }
            }
            Source::Synthetic(src) => plan.rows.extend(synthetic_rows(cfg, src)?),
        }
    }
    plan.inputs.sort();
    plan.inputs.dedup();
    Ok(plan)
}

/// The rows of a synthetic source: each drawn class's images in turn, the i-th drawn class
/// with cue i, indices running on across classes; with `group_by`, `group_size` consecutive
/// images of a class to a group.
fn synthetic_rows(cfg: &LoadConfig, src: &SyntheticSource) -> Result<Vec<Planned>, LoadError> {
    let labels: Vec<u8> = match &src.labels {
        Some(names) => names
            .iter()
            .map(|n| label_of(cfg, n))
            .collect::<Result<_, _>>()?,
        // validate() bounds the classes drawn to MAX_SYNTHETIC_CLASSES.
        None => (0..cfg.classes.len()).map(|i| i as u8).collect(),
    };
    let counts = src.counts(&cfg.classes);
    if counts.iter().sum::<usize>() == 0 {
        return Err(LoadError::EmptySource {
            source_desc: format!("synthetic seed {}", src.seed),
        });
    }
    let group_size = src.group_size.unwrap_or(1);
    let mut rows = Vec::new();
    let mut index = 0u64;
    for (cue, (&label, &count)) in labels.iter().zip(&counts).enumerate() {
        for i in 0..count {
            let group = src
                .group_by
                .as_ref()
                .map(|_| format!("synthetic-{}-{}-{}", src.seed, cue, i / group_size));
            rows.push(Planned {
                item: Item::Synthetic {
                    seed: src.seed,
                    index,
                    cue,
                },
                label,
                group,
            });
            index += 1;
        }
    }
    Ok(rows)
}

/// Every file [`load`] will read with this config, sorted and deduplicated, without decoding
/// anything: `metadata.csv` files, the selected images, npy files. The engine hashes their
/// bytes for the stage's cache key, so an unselected file never appears here.
///
/// Under `on_bad_image = "skip"` a metadata row whose file is missing is left out (adding the
/// file later adds it here); under `"error"` it is an error, as in [`load`].
pub fn input_files(cfg: &LoadConfig, data_root: &Path) -> Result<Vec<PathBuf>, LoadError> {
    Ok(plan(cfg, data_root, false)?.inputs)
}

/// Runs the load stage: decodes and resizes every selected image in parallel and writes
/// `images.npy`, `labels.npy`, `index.csv` and `skipped.csv` into `out_dir` (created if
/// needed). Reports progress as phase `"decode"`, one unit per image.
///
/// `images.npy`'s buffer is allocated once, after checking that it fits in the memory
/// available, and each image is resized straight into its row.
pub fn load(
    cfg: &LoadConfig,
    data_root: &Path,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<LoadReport, LoadError> {
    let plan = plan(cfg, data_root, true)?;
    let size = cfg.image_size;
    let options = DecodeOptions {
        allow_truncated: cfg.allow_truncated_images,
    };
    let mut pixels = allocate_images(plan.rows.len(), size)?;
    let row_len = row_bytes(size);
    progress.start("decode", plan.rows.len() as u64);
    // Each task reads, decodes and shrinks one image into its row of `pixels` and keeps only
    // the small result, so at most one full-resolution image per thread is alive at a time.
    let results: Vec<Result<Row, DecodeError>> = pixels
        .par_chunks_mut(row_len)
        .zip(plan.rows.into_par_iter())
        .map(|(slot, planned)| {
            let row = produce(planned, size, options, slot);
            progress.advance(1);
            row
        })
        .collect();

    let mut rows = Vec::with_capacity(results.len());
    let mut skipped = plan.skipped;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(row) => {
                // Close the gaps left by skipped images, keeping row order.
                let kept = rows.len();
                if kept != i {
                    pixels.copy_within(i * row_len..(i + 1) * row_len, kept * row_len);
                }
                rows.push(row);
            }
            Err(e) if cfg.on_bad_image == OnBadImage::Skip => skipped.push(Skipped {
                path: error_path(&e, data_root),
                reason: error_reason(&e),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    pixels.truncate(rows.len() * row_len);
    if !skipped.is_empty() {
        progress.message(&format!("skipped {} bad images", skipped.len()));
    }

    let mut class_counts: Vec<ClassCount> = cfg
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| ClassCount {
            class: class.clone(),
            label: i as u8,
            count: 0,
        })
        .collect();
    for row in &rows {
        class_counts[usize::from(row.label)].count += 1;
    }
    if let Some(empty) = class_counts
        .iter()
        .find(|c| c.count == 0 && !cfg.allow_empty_classes)
    {
        return Err(LoadError::EmptyClass {
            class: empty.class.clone(),
        });
    }

    let mut by_digest: BTreeMap<[u8; 32], Vec<String>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.from_file) {
        by_digest
            .entry(*row.digest.as_bytes())
            .or_default()
            .push(row.path.clone());
    }
    let mut duplicates: Vec<Vec<String>> =
        by_digest.into_values().filter(|v| v.len() > 1).collect();
    duplicates.sort();

    let report = LoadReport {
        images: rows.len(),
        image_size: size,
        class_counts,
        duplicates,
        reoriented: rows.iter().filter(|r| r.reoriented).count(),
        bytes_read: rows.iter().map(|r| r.bytes).sum(),
        groups: cfg.group_column().map(|_| count_groups(&rows)),
        skipped,
    };
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    output::write_all(
        out_dir,
        &output::Tables {
            classes: &cfg.classes,
            group_column: cfg.group_column(),
            rows: &rows,
            skipped: &report.skipped,
        },
        size,
        labels,
        pixels,
    )?;
    Ok(report)
}

/// Distinct non-empty groups, plus one for each row without a group.
fn count_groups(rows: &[Row]) -> usize {
    let mut named = std::collections::BTreeSet::new();
    let mut own = 0;
    for row in rows {
        match row.group.as_deref() {
            Some(g) if !g.is_empty() => {
                named.insert(g);
            }
            _ => own += 1,
        }
    }
    named.len() + own
}

/// Bytes of one `size x size x 3` row.
fn row_bytes(size: u32) -> usize {
    // validate() bounds size to 16384: at most 805 MB, which fits any 64-bit usize.
    (size as usize).pow(2) * 3
}

/// The zeroed `images.npy` buffer for `images` rows, after checking that it and one image in
/// progress per thread fit in the memory available; never aborts for want of memory.
fn allocate_images(images: usize, size: u32) -> Result<Vec<u8>, LoadError> {
    let row = row_bytes(size) as u64;
    let buffer = row.saturating_mul(images as u64);
    let in_progress = row.saturating_mul(rayon::current_num_threads() as u64);
    memory_budget::check(buffer.saturating_add(in_progress)).map_err(|short| {
        LoadError::Memory {
            size,
            images,
            needed: short.needed,
            available: short.available,
        }
    })?;
    let alloc_err = || LoadError::Alloc {
        size,
        images,
        bytes: Bytes(buffer),
    };
    let len = usize::try_from(buffer).map_err(|_| alloc_err())?;
    memory_budget::try_zeroed(len).map_err(|_| alloc_err())
}

/// Produces one row into `slot` (`size x size x 3` bytes): reads and decodes a file, or
/// takes or generates pixels.
fn produce(
    planned: Planned,
    size: u32,
    options: DecodeOptions,
    slot: &mut [u8],
) -> Result<Row, DecodeError> {
    let label = planned.label;
    let group = planned.group;
    let s = size as usize;
    match planned.item {
        Item::File(file) => {
            let bytes = read_image_file(&file.abs)?;
            let digest = blake3::hash(&bytes);
            let decoded = decode_resize(&bytes, size, &file.abs, options)?;
            slot.copy_from_slice(&decoded.pixels);
            Ok(Row {
                path: file.rel,
                label,
                digest,
                width: decoded.width,
                height: decoded.height,
                reoriented: decoded.reoriented,
                bytes: bytes.len() as u64,
                from_file: true,
                group,
            })
        }
        Item::Npy { rel, images, row } => {
            let (_, h, w, _) = images.dim();
            let raw: Vec<u8> = images
                .index_axis(ndarray::Axis(0), row)
                .iter()
                .copied()
                .collect();
            if (h, w) == (s, s) {
                slot.copy_from_slice(&raw);
            } else {
                slot.copy_from_slice(&resize_u8(&raw, w, h, 3, s, s));
            }
            Ok(Row {
                path: rel,
                label,
                digest: blake3::hash(slot),
                width: w as u32,
                height: h as u32,
                reoriented: false,
                bytes: 0,
                from_file: false,
                group,
            })
        }
        Item::Synthetic { seed, index, cue } => {
            let pixels = synthetic::generate(seed, index, cue, size);
            slot.copy_from_slice(&pixels);
            Ok(Row {
                path: format!("synthetic:seed={seed}#{index}"),
                label,
                digest: blake3::hash(&pixels),
                width: size,
                height: size,
                reoriented: false,
                bytes: 0,
                from_file: false,
                group,
            })
        }
    }
}

fn error_path(e: &DecodeError, data_root: &Path) -> String {
    let path = match e {
        DecodeError::Read { path, .. }
        | DecodeError::NotAFile { path, .. }
        | DecodeError::FileTooLarge { path, .. }
        | DecodeError::Decode { path, .. }
        | DecodeError::TooManyPixels { path, .. }
        | DecodeError::TooManyBytes { path, .. }
        | DecodeError::Truncated { path, .. }
        | DecodeError::Empty { path }
        | DecodeError::Size { path, .. } => path,
    };
    let rel = path.strip_prefix(data_root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn error_reason(e: &DecodeError) -> String {
    match e {
        DecodeError::Read { source, .. } => format!("unreadable: {source}"),
        DecodeError::NotAFile { kind, .. } => format!("not a regular file: {kind}"),
        DecodeError::FileTooLarge { bytes, limit, .. } => {
            format!("file too large: {bytes}, over the limit of {limit}")
        }
        DecodeError::Decode { source, .. } => format!("cannot decode: {source}"),
        DecodeError::TooManyPixels { width, height, .. } => format!(
            "possible decompression bomb: claims {width} x {height} pixels, over the limit of {}",
            super::decode::MAX_IMAGE_PIXELS
        ),
        DecodeError::TooManyBytes {
            width,
            height,
            bytes,
            ..
        } => format!(
            "possible decompression bomb: claims {width} x {height} pixels, {bytes} decoded, over the limit of {}",
            Bytes(super::decode::MAX_DECODED_BYTES)
        ),
        DecodeError::Truncated { detail, .. } => format!("truncated: {detail}"),
        DecodeError::Empty { .. } => "zero width or height".to_owned(),
        DecodeError::Size { size, .. } => format!("cannot make {size}x{size}x3 array"),
    }
}
