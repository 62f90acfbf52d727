//! Writing the load stage's arrays and CSV files.

use std::path::Path;

use ndarray::{Array2, Array4};

use super::{LoadError, Row, Skipped};

/// What the CSV files are written from.
pub(super) struct Tables<'a> {
    /// Class names, indexed by label.
    pub classes: &'a [String],
    /// The groups' column of `index.csv`, when a source declares `group_by`.
    pub group_column: Option<&'a str>,
    pub rows: &'a [Row],
    pub skipped: &'a [Skipped],
}

/// Writes `images.npy` (from `pixels`, the rows' images one after another), `labels.npy`,
/// `index.csv` and `skipped.csv` into `out_dir`.
pub(super) fn write_all(
    out_dir: &Path,
    tables: &Tables,
    size: u32,
    labels: Vec<u8>,
    pixels: Vec<u8>,
) -> Result<(), LoadError> {
    std::fs::create_dir_all(out_dir).map_err(|source| LoadError::OutDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    write_index(&out_dir.join("index.csv"), tables)?;
    write_skipped(&out_dir.join("skipped.csv"), tables.skipped)?;
    let rows = tables.rows;

    let n = rows.len();
    let s = size as usize;
    let labels = Array2::from_shape_vec((n, 1), labels);
    // Takes the buffer as it is: no copy of the largest allocation of the stage.
    let images = Array4::from_shape_vec((n, s, s, 3), pixels);
    let (Ok(labels), Ok(images)) = (labels, images) else {
        return Err(LoadError::ImageSize(size));
    };
    write_npy(&out_dir.join("labels.npy"), &labels)?;
    write_npy(&out_dir.join("images.npy"), &images)
}

fn write_npy<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    array: &ndarray::Array<A, D>,
) -> Result<(), LoadError> {
    ndarray_npy::write_npy(path, array).map_err(|source| LoadError::WriteNpy {
        path: path.to_path_buf(),
        source,
    })
}

/// `index.csv`: the fixed columns, then the groups' column when there is one (empty for a
/// row whose source declares no group: a group of its own).
fn write_index(path: &Path, tables: &Tables) -> Result<(), LoadError> {
    let err = |source| LoadError::WriteCsv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let mut header = super::INDEX_COLUMNS.to_vec();
    header.extend(tables.group_column);
    w.write_record(&header).map_err(err)?;
    for (i, r) in tables.rows.iter().enumerate() {
        let class = tables
            .classes
            .get(usize::from(r.label))
            .map_or("", String::as_str);
        let (row, label, digest) = (i.to_string(), r.label.to_string(), r.digest.to_hex());
        let (width, height) = (r.width.to_string(), r.height.to_string());
        let mut record = vec![
            row.as_str(),
            &r.path,
            &label,
            class,
            digest.as_str(),
            &width,
            &height,
        ];
        if tables.group_column.is_some() {
            record.push(r.group.as_deref().unwrap_or(""));
        }
        w.write_record(&record).map_err(err)?;
    }
    w.flush().map_err(|e| err(e.into()))
}

fn write_skipped(path: &Path, skipped: &[Skipped]) -> Result<(), LoadError> {
    let err = |source| LoadError::WriteCsv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(["path", "reason"]).map_err(err)?;
    for s in skipped {
        w.write_record([&s.path, &s.reason]).map_err(err)?;
    }
    w.flush().map_err(|e| err(e.into()))
}
