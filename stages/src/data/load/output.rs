//! Writing the load stage's arrays and CSV files.

use std::path::Path;

use ndarray::{Array2, Array4};

use super::{LoadError, Row, Skipped};

/// Writes `images.npy` (from `pixels`, the rows' images one after another), `labels.npy`,
/// `index.csv` and `skipped.csv` into `out_dir`.
pub(super) fn write_all(
    out_dir: &Path,
    classes: &[String],
    size: u32,
    rows: &[Row],
    labels: Vec<u8>,
    pixels: Vec<u8>,
    skipped: &[Skipped],
) -> Result<(), LoadError> {
    std::fs::create_dir_all(out_dir).map_err(|source| LoadError::OutDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    write_index(&out_dir.join("index.csv"), classes, rows)?;
    write_skipped(&out_dir.join("skipped.csv"), skipped)?;

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

fn write_index(path: &Path, classes: &[String], rows: &[Row]) -> Result<(), LoadError> {
    let err = |source| LoadError::WriteCsv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(["row", "path", "label", "class", "blake3", "width", "height"])
        .map_err(err)?;
    for (i, r) in rows.iter().enumerate() {
        let class = classes.get(usize::from(r.label)).map_or("", String::as_str);
        w.write_record([
            &i.to_string(),
            &r.path,
            &r.label.to_string(),
            class,
            r.digest.to_hex().as_str(),
            &r.width.to_string(),
            &r.height.to_string(),
        ])
        .map_err(err)?;
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
