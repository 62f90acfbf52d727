//! Compile-time shape checks of the GPU layer chain, the same rule as the CPU backend's:
//! the caller names every side length as a const parameter (`S0 -> S1 -> .. -> S5` after the
//! five max-pools, and the head's pooling window `K`), and each step asserts its own sizes
//! in an inline `const` block, evaluated when the instantiation is built. The GPU buffers
//! carry these sizes in their types (`Nchw<C, H, W>`, see `cuda::tensor`), and the one place
//! that maps a runtime size and pooling to them is `model::geometry::with_geometry!`, shared
//! by both backends.
//!
//! A chain that is right builds:
//!
//! ```
//! use stages::model::cuda::shape::Chain;
//! Chain::<237, 118, 59, 29, 14, 7, 4>::check();
//! Chain::<32, 16, 8, 4, 2, 1, 1>::check();
//! ```
//!
//! A wrong pooled size does not (237 pools to 118, floor):
//!
//! ```compile_fail
//! use stages::model::cuda::shape::Chain;
//! Chain::<237, 119, 59, 29, 14, 7, 4>::check();
//! ```
//!
//! nor does a head pooling that leaves more than 1 x 1:
//!
//! ```compile_fail
//! use stages::model::cuda::shape::Chain;
//! Chain::<224, 112, 56, 28, 14, 7, 3>::check();
//! ```

/// Max-pool 2x2, stride 2, floor, from side `H` to side `OH`.
pub struct MaxPool2x2<const H: usize, const OH: usize>;

impl<const H: usize, const OH: usize> MaxPool2x2<H, OH> {
    /// Fails to build unless `OH = H / 2`.
    pub const CHECK: () = assert!(OH == H / 2, "max-pool 2x2: the output side must be H / 2");
}

/// Average pool `K x K`, stride `K`, floor, from side `H` to 1 x 1.
pub struct AvgPoolToOne<const H: usize, const K: usize>;

impl<const H: usize, const K: usize> AvgPoolToOne<H, K> {
    /// Fails to build unless the window fits and leaves exactly one value per channel.
    pub const CHECK: () = assert!(
        K >= 1 && K <= H && H / K == 1,
        "the head's pooling must leave a 1 x 1 map"
    );
}

/// The whole base for input side `S0`: five max-pools, then the head's pooling window `K`.
pub struct Chain<
    const S0: usize,
    const S1: usize,
    const S2: usize,
    const S3: usize,
    const S4: usize,
    const S5: usize,
    const K: usize,
>;

impl<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    > Chain<S0, S1, S2, S3, S4, S5, K>
{
    /// Builds only for a consistent chain; the GPU network calls it when it is built.
    #[allow(clippy::let_unit_value)]
    pub fn check() {
        let () = MaxPool2x2::<S0, S1>::CHECK;
        let () = MaxPool2x2::<S1, S2>::CHECK;
        let () = MaxPool2x2::<S2, S3>::CHECK;
        let () = MaxPool2x2::<S3, S4>::CHECK;
        let () = MaxPool2x2::<S4, S5>::CHECK;
        let () = AvgPoolToOne::<S5, K>::CHECK;
    }

    /// The side lengths, for comparison with the runtime plan.
    pub const SIDES: [usize; 6] = [S0, S1, S2, S3, S4, S5];
}

#[cfg(test)]
mod tests {
    use super::Chain;
    use crate::model::cuda::plan::LayerPlan;
    use crate::model::size::{ImageSize, Pooling};
    use crate::model::spec::ConvAlgorithm;
    use crate::model::{ModelError, NetworkSpec};

    fn sides<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    >() -> Result<([usize; 6], usize), ModelError> {
        Chain::<S0, S1, S2, S3, S4, S5, K>::check();
        Ok((Chain::<S0, S1, S2, S3, S4, S5, K>::SIDES, K))
    }

    #[test]
    fn the_shared_geometry_gives_checked_chains_equal_to_the_runtime_plan() {
        for size in ImageSize::SUPPORTED {
            for pooling in [Pooling::Avg4, Pooling::Global] {
                let Ok(spec) = NetworkSpec::new(size, pooling, ConvAlgorithm::Direct) else {
                    continue;
                };
                let (chain, k) = crate::model::geometry::with_geometry!(spec, sides())
                    .expect("a supported network");
                assert_eq!(chain.to_vec(), LayerPlan::new(&spec).sides(), "{spec:?}");
                assert_eq!(k, pooling.window(size.base_out()));
            }
        }
    }
}
