//! Safe wrapper over `gemm::gemm` for row-major f32 matrices, single-threaded by design.
//!
//! Every call runs with `Parallelism::None`: callers parallelise over independent output
//! tiles, so each output element's reduction order depends only on the shapes, never on the
//! number of threads (bit-identical results on 1 or N threads).

/// A read-only f32 matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst (m x n, row-major) = [dst +] lhs (m x k) * rhs (k x n)`; `accumulate` keeps dst.
pub(crate) fn matmul(dst: &mut [f32], lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(dst.len() >= m * n, "destination too small");
    lhs.check();
    rhs.check();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: all three views were bounds-checked above (last element inside the slice),
    // dst is a unique borrow that does not alias the shared lhs/rhs borrows.
    unsafe { gemm_raw(dst.as_mut_ptr(), n, accumulate, lhs, rhs) }
}

/// `dst = lhs (m x k) * rhs (k x n)` into rows `dst[i * dst_rs ..][..n]`, for callers that
/// run several products into disjoint parts of one buffer at the same time.
///
/// # Safety
/// `dst` must be valid for writes at `i * dst_rs + j` for every `i < m`, `j < n`, and no
/// other thread may read or write those elements during the call.
pub(crate) unsafe fn matmul_to_raw(dst: *mut f32, dst_rs: usize, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(k > 0 && m > 0 && n > 0, "empty product");
    assert!(dst_rs >= n, "destination rows overlap");
    lhs.check();
    rhs.check();
    // SAFETY: the views are bounds-checked above; dst is the caller's promise.
    unsafe { gemm_raw(dst, dst_rs, false, lhs, rhs) }
}

/// `gemm::gemm` on row-major `dst` (row stride `dst_rs`), single-threaded.
///
/// # Safety
/// `lhs` and `rhs` are bounds-checked views; `dst` must be valid for reads (when
/// `accumulate`) and writes at `i * dst_rs + j` for `i < lhs.rows`, `j < rhs.cols`, with no
/// other access to those elements during the call.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_with_transposes_and_accumulation() {
        let a: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 2x3
        let b: Vec<f32> = (0..12).map(|v| (v as f32) * 0.5).collect(); // 3x4
        let mut c = vec![1.0f32; 8];
        matmul(
            &mut c,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 4),
            true,
        );
        // row 0 of a = [0,1,2]; column 0 of b = [0, 2, 4] -> 0 + 2 + 8 = 10, plus 1.
        assert_eq!(c[0], 11.0);
        assert_eq!(c[7], 1.0 + (3.0 * 1.5 + 4.0 * 3.5 + 5.0 * 5.5));
        // (a^T)^T = a
        let at: Vec<f32> = vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]; // 3x2
        let mut d = vec![0.0f32; 8];
        matmul(
            &mut d,
            MatRef::row_major(&at, 3, 2).t(),
            MatRef::row_major(&b, 3, 4),
            false,
        );
        for (x, y) in c.iter().zip(&d) {
            assert_eq!(*x, y + 1.0);
        }
    }
}
