//! Rows of the seed's ready arrays (`X.npy` + `Y.npy`).

use std::path::Path;
use std::sync::Arc;

use ndarray::{Array4, ArrayD};

use super::{Item, LoadConfig, LoadError, Planned};
use crate::data::memory_budget::{self, Bytes};

/// Reads an npy source into rows (each resized when the load produces it, if its images are
/// not `image_size` square). The array must fit in the memory available.
pub(super) fn rows(
    cfg: &LoadConfig,
    images: &Path,
    images_rel: &str,
    labels: &Path,
) -> Result<Vec<Planned>, LoadError> {
    let len = std::fs::metadata(images)
        .map_err(|source| LoadError::ReadNpy {
            path: images.to_path_buf(),
            source: source.into(),
        })?
        .len();
    memory_budget::check(len).map_err(|short| LoadError::NpyMemory {
        path: images.to_path_buf(),
        needed: Bytes(len),
        available: short.available,
    })?;
    let x: Array4<u8> = ndarray_npy::read_npy(images).map_err(|source| LoadError::ReadNpy {
        path: images.to_path_buf(),
        source,
    })?;
    let (n, h, w, c) = x.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(LoadError::NpyShape {
            path: images.to_path_buf(),
            shape: x.shape().to_vec(),
            expected: "N x H x W x 3".to_owned(),
        });
    }
    let y = read_label_values(labels)?;
    if y.len() != n {
        return Err(LoadError::NpyShape {
            path: labels.to_path_buf(),
            shape: vec![y.len()],
            expected: format!(
                "{n} labels (N or N x 1), one per image of {}",
                images.display()
            ),
        });
    }
    let x = Arc::new(x);
    y.into_iter()
        .enumerate()
        .map(|(row, value)| {
            let ok = value.fract() == 0.0 && value >= 0.0 && (value as usize) < cfg.classes.len();
            if !ok {
                return Err(LoadError::NpyLabel {
                    path: labels.to_path_buf(),
                    row,
                    value,
                    classes: cfg.classes.len(),
                });
            }
            Ok(Planned {
                item: Item::Npy {
                    rel: format!("{images_rel}#{row}"),
                    images: Arc::clone(&x),
                    row,
                },
                label: value as u8,
                group: None,
            })
        })
        .collect()
}

/// Reads `Y.npy` of any common numeric dtype, shape N or N x 1, as f64 values.
fn read_label_values(path: &Path) -> Result<Vec<f64>, LoadError> {
    fn try_read<T: ndarray_npy::ReadableElement + Copy>(
        path: &Path,
        to_f64: fn(T) -> f64,
    ) -> Result<ArrayD<f64>, ndarray_npy::ReadNpyError> {
        let a: ArrayD<T> = ndarray_npy::read_npy(path)?;
        Ok(a.mapv(to_f64))
    }
    type Attempt = fn(&Path) -> Result<ArrayD<f64>, ndarray_npy::ReadNpyError>;
    let attempts: [Attempt; 8] = [
        |p| try_read::<u8>(p, f64::from),
        |p| try_read::<i64>(p, |v| v as f64),
        |p| try_read::<i32>(p, f64::from),
        |p| try_read::<u64>(p, |v| v as f64),
        |p| try_read::<f64>(p, |v| v),
        |p| try_read::<f32>(p, f64::from),
        |p| try_read::<i8>(p, f64::from),
        |p| try_read::<bool>(p, |v| f64::from(u8::from(v))),
    ];
    let mut last = None;
    for attempt in attempts {
        match attempt(path) {
            Ok(a) => {
                let shape = a.shape().to_vec();
                return match shape.as_slice() {
                    [_] | [_, 1] => Ok(a.iter().copied().collect()),
                    _ => Err(LoadError::NpyShape {
                        path: path.to_path_buf(),
                        shape,
                        expected: "N or N x 1".to_owned(),
                    }),
                };
            }
            Err(ndarray_npy::ReadNpyError::WrongDescriptor(d)) => {
                last = Some(ndarray_npy::ReadNpyError::WrongDescriptor(d))
            }
            Err(e) => {
                return Err(LoadError::ReadNpy {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
    }
    Err(LoadError::ReadNpy {
        path: path.to_path_buf(),
        source: last.unwrap_or(ndarray_npy::ReadNpyError::MissingData),
    })
}
