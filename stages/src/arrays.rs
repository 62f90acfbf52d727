//! Reading and writing the `.npy` arrays that stages pass to each other, with errors that
//! name the file.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path} has shape {shape:?}, expected {expected}")]
    Shape {
        path: PathBuf,
        shape: Vec<usize>,
        expected: String,
    },
}

/// An f32 array: its shape and values in row-major order.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), ArrayError> {
    let a: ArrayD<f32> = ndarray_npy::read_npy(path).map_err(|e| ArrayError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let shape = a.shape().to_vec();
    Ok((shape, a.into_iter().collect()))
}

pub fn write_f32(path: &Path, shape: &[usize], values: Vec<f32>) -> Result<(), ArrayError> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| ArrayError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    ndarray_npy::write_npy(path, &a).map_err(|e| ArrayError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A u8 array: its shape and values.
pub fn read_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), ArrayError> {
    let a: ArrayD<u8> = ndarray_npy::read_npy(path).map_err(|e| ArrayError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let shape = a.shape().to_vec();
    Ok((shape, a.into_iter().collect()))
}

/// A 1-D index array as written by the split stage (u64).
pub fn read_index(path: &Path) -> Result<Vec<usize>, ArrayError> {
    let a: ArrayD<u64> = ndarray_npy::read_npy(path).map_err(|e| ArrayError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if a.ndim() != 1 {
        return Err(ArrayError::Shape {
            path: path.to_path_buf(),
            shape: a.shape().to_vec(),
            expected: "a 1-D index list".into(),
        });
    }
    Ok(a.iter().map(|&i| i as usize).collect())
}

/// Labels: N or N x 1 u8.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, ArrayError> {
    let (shape, values) = read_u8(path)?;
    match shape.as_slice() {
        [_] | [_, 1] => Ok(values),
        _ => Err(ArrayError::Shape {
            path: path.to_path_buf(),
            shape,
            expected: "N or N x 1 labels".into(),
        }),
    }
}
