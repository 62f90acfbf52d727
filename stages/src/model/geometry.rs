//! The geometry table: the one place that maps a runtime network and head to the
//! compile-time instantiations every backend builds (the CPU's dfdx modules, the GPU's typed
//! buffers): input size and pooling to the side lengths `S0 -> S1 -> .. -> S5` and the
//! pooling window `K`, and the head's width to `U`.
//!
//! Every shape along the chain is checked when these instantiations are built (each max-pool
//! asserts `S(i+1) = S(i) / 2`, the average pool `S5 / K = 1`), so a wrong row here does not
//! compile; `size::ImageSize::chain` gives the same numbers at run time (tested below).

/// Calls `$run::<S0, S1, S2, S3, S4, S5, K>($args..)` for `$spec` (a
/// [`NetworkSpec`](crate::model::NetworkSpec)); `$run` returns `Result<_, ModelError>`.
macro_rules! with_geometry {
    ($spec:expr, $run:ident ( $($arg:expr),* $(,)? )) => {{
        use $crate::model::size::{ImageSize, Pooling};
        match ($spec.size(), $spec.pooling()) {
            (ImageSize::S237, Pooling::Avg4) => $run::<237, 118, 59, 29, 14, 7, 4>($($arg),*),
            (ImageSize::S237, Pooling::Global) => $run::<237, 118, 59, 29, 14, 7, 7>($($arg),*),
            (ImageSize::S224, Pooling::Avg4) => $run::<224, 112, 56, 28, 14, 7, 4>($($arg),*),
            (ImageSize::S224, Pooling::Global) => $run::<224, 112, 56, 28, 14, 7, 7>($($arg),*),
            (ImageSize::S32, Pooling::Global) => $run::<32, 16, 8, 4, 2, 1, 1>($($arg),*),
            // `NetworkSpec::new` refuses it; kept as an error rather than a panic.
            (size @ ImageSize::S32, Pooling::Avg4) => {
                Err($crate::model::ModelError::PoolingTooLarge {
                    size: size.pixels(),
                    base_out: size.base_out(),
                })
            }
        }
    }};
}

/// Calls `$run::<$consts.., U>($args..)` (or `$run::<U>($args..)`) for the head width `$units` (one of
/// [`SUPPORTED_UNITS`](crate::model::spec::SUPPORTED_UNITS)); `$run` returns
/// `Result<_, ModelError>`.
macro_rules! with_units {
    ($units:expr, $run:ident $(:: < $($c:ident),* >)? ( $($arg:expr),* $(,)? )) => {
        match $units {
            16 => $run::<$($($c,)*)? 16>($($arg),*),
            32 => $run::<$($($c,)*)? 32>($($arg),*),
            64 => $run::<$($($c,)*)? 64>($($arg),*),
            128 => $run::<$($($c,)*)? 128>($($arg),*),
            256 => $run::<$($($c,)*)? 256>($($arg),*),
            512 => $run::<$($($c,)*)? 512>($($arg),*),
            // `HeadSpec::new` refuses other widths; kept as an error rather than a panic.
            units => Err($crate::model::ModelError::UnsupportedUnits {
                units,
                supported: $crate::model::spec::SUPPORTED_UNITS
                    .map(|u| u.to_string())
                    .join(", "),
            }),
        }
    };
}

pub(crate) use {with_geometry, with_units};

#[cfg(test)]
mod tests {
    use crate::model::size::{ImageSize, Pooling};
    use crate::model::spec::{ConvAlgorithm, SUPPORTED_UNITS};
    use crate::model::{ModelError, NetworkSpec};

    fn chain<
        const S0: usize,
        const S1: usize,
        const S2: usize,
        const S3: usize,
        const S4: usize,
        const S5: usize,
        const K: usize,
    >() -> Result<([usize; 6], usize), ModelError> {
        Ok(([S0, S1, S2, S3, S4, S5], K))
    }

    fn width<const U: usize>() -> Result<usize, ModelError> {
        Ok(U)
    }

    #[test]
    fn every_supported_network_has_an_instantiation_matching_its_runtime_chain() {
        for size in ImageSize::SUPPORTED {
            for pooling in [Pooling::Avg4, Pooling::Global] {
                let Ok(spec) = NetworkSpec::new(size, pooling, ConvAlgorithm::Direct) else {
                    continue;
                };
                let (sides, k) = with_geometry!(spec, chain()).unwrap();
                assert_eq!(sides, size.chain(), "{size:?} {pooling:?}");
                assert_eq!(k, pooling.window(size.base_out()), "{size:?} {pooling:?}");
                assert_eq!(sides[5] / k, 1, "the pooled map is 1 x 1");
            }
        }
        for units in SUPPORTED_UNITS {
            assert_eq!(with_units!(units, width()).unwrap(), units);
        }
        assert!(with_units!(65usize, width()).is_err());
    }
}
