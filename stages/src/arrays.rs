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
/// The values of `a` in row-major order. Arrays read from `.npy` files in C order (all of
/// ours) hand over their buffer as it is; iterating element by element instead took about a
/// second per 46 million values.
fn into_row_major_vec<T: Clone>(a: ArrayD<T>) -> Vec<T> {
    let n = a.len();
    if a.is_standard_layout() {
        // Contiguous in row-major order, from the offset on.
        let (mut values, offset) = a.into_raw_vec_and_offset();
        let start = offset.unwrap_or(0);
        values.truncate(start + n);
        values.drain(..start);
        return values;
    }
    a.iter().cloned().collect()
}

pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), ArrayError> {
    let a: ArrayD<f32> = ndarray_npy::read_npy(path).map_err(|e| ArrayError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let shape = a.shape().to_vec();
    Ok((shape, into_row_major_vec(a)))
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
    Ok((shape, into_row_major_vec(a)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn arrays_read_back_in_row_major_order_whatever_the_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let c_order = dir.path().join("c.npy");
        write_f32(&c_order, &[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(
            read_f32(&c_order).unwrap(),
            (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        );
        // A transposed view is written in Fortran order; it must still read row by row.
        let m = Array2::from_shape_vec((3, 2), vec![0u8, 1, 2, 3, 4, 5]).unwrap();
        let f_order = dir.path().join("f.npy");
        ndarray_npy::write_npy(&f_order, &m.t()).unwrap();
        assert_eq!(
            read_u8(&f_order).unwrap(),
            (vec![2, 3], vec![0, 2, 4, 1, 3, 5])
        );
    }
}
