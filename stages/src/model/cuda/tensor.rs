//! GPU buffers that carry their shapes in dfdx's shape types: an activation is
//! `GpuTensor<(usize, Const<C>, Const<H>, Const<W>)>` (NCHW, runtime batch), so the layer
//! chain on the GPU is checked at compile time as on the CPU (see [`super::shape`]).

use cudarc::driver::CudaSlice;
use dfdx::shapes::{Const, Shape};

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
