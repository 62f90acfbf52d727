//! GPU buffers that carry their shapes in dfdx's shape types: an activation is
//! `GpuTensor<(usize, Const<C>, Const<H>, Const<W>)>` (NCHW, runtime batch), so the layer
//! chain on the GPU is checked at compile time as on the CPU (see [`super::shape`]).
//! The network's layer loop, driven by the layer table, holds [`Activation`]s instead: the
//! same buffers with their channels and side known at run time and checked on creation.

use cudarc::driver::CudaSlice;
use dfdx::shapes::{Const, Shape};

use crate::model::ModelError;

/// A device buffer of f32 holding a tensor of shape `S`.
pub struct GpuTensor<S: Shape> {
    pub(crate) data: CudaSlice<f32>,
    pub(crate) shape: S,
}

/// An NCHW map of `C` channels, `H x W`, for a runtime batch.
pub type Nchw<const C: usize, const H: usize, const W: usize> =
    GpuTensor<(usize, Const<C>, Const<H>, Const<W>)>;

/// A square NCHW map.
pub type Map<const C: usize, const H: usize> = Nchw<C, H, H>;

/// Rows of `F` values (the pooled features), for a runtime batch.
pub type Rows<const F: usize> = GpuTensor<(usize, Const<F>)>;

impl<S: Shape> GpuTensor<S> {
    /// Values held (`shape.num_elements()`).
    pub fn len(&self) -> usize {
        self.shape.num_elements()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shape(&self) -> &S {
        &self.shape
    }
}

impl<const C: usize, const H: usize, const W: usize> Nchw<C, H, W> {
    /// Images in the batch.
    pub fn batch(&self) -> usize {
        self.shape.0
    }
}

impl<const F: usize> Rows<F> {
    pub fn batch(&self) -> usize {
        self.shape.0
    }
}

/// An NCHW map of square side, its batch, channels and side known at run time (the layer
/// loop's activations; pooled rows are maps of side 1).
pub type Activation = GpuTensor<(usize, usize, usize, usize)>;

impl Activation {
    /// `data` as `n` maps of `channels x side x side`, if its length says so.
    pub fn new(
        data: CudaSlice<f32>,
        n: usize,
        channels: usize,
        side: usize,
    ) -> Result<Self, ModelError> {
        let expected = n * channels * side * side;
        if data.len() != expected {
            return Err(ModelError::InputLength {
                what: "GPU map",
                got: data.len(),
                expected,
                detail: format!("{n} x {channels} x {side} x {side}"),
            });
        }
        Ok(GpuTensor {
            data,
            shape: (n, channels, side, side),
        })
    }

    pub fn batch(&self) -> usize {
        self.shape.0
    }

    pub fn channels(&self) -> usize {
        self.shape.1
    }

    pub fn side(&self) -> usize {
        self.shape.2
    }
}
