//! The normalize stage: uint8 images to the float32 input a model expects.
//!
//! Layout: input and output are N x H x W x 3, row-major (NHWC), as written by the load stage.
//! The output's channel order is RGB, except in `caffe` mode, which is BGR like Keras'
//! `vgg16.preprocess_input`. Every value is computed by the same f32 operations in the same
//! order for each element, so the output is bit-identical run to run and for any thread count.

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView4, Axis, Zip};
use serde::{Deserialize, Serialize};

use super::memory_budget::{self, Bytes};

/// How pixel values become model inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NormalizeMode {
    /// `x / 255`, range 0..1 (the seed's).
    #[default]
    Scale,
    /// torchvision's ImageNet statistics: `(x / 255 - mean[c]) / std[c]`, RGB.
    Imagenet,
    /// Keras' VGG16 `caffe` mode: channels reversed to BGR, then `x - mean[c]` on 0..255.
    Caffe,
}

/// Parameters of the normalize stage (`mode = "scale" | "imagenet" | "caffe"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    #[serde(default)]
    pub mode: NormalizeMode,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Keras' caffe means, in BGR order.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// Why normalize failed; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: ndarray_npy::ReadNpyError,
    },
    #[error("{path} has shape {shape:?}, expected N x H x W x 3")]
    Shape { path: PathBuf, shape: Vec<usize> },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: ndarray_npy::WriteNpyError,
    },
    #[error("normalizing {path} needs {needed} of memory (the images and their float32 copy), but only {available} is available; lower the load stage's image_size or load fewer images")]
    Memory {
        path: PathBuf,
        needed: Bytes,
        available: Bytes,
    },
}

/// What was written, for the run record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NormalizeReport {
    pub mode: NormalizeMode,
    /// N, H, W, C of the f32 output.
    pub shape: [usize; 4],
}

/// Normalises N x H x W x 3 uint8 pixels to f32 (see the module docs for the layout).
pub fn normalize(images: ArrayView4<u8>, mode: NormalizeMode) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros(images.raw_dim());
    // Channel-last: each innermost lane is one pixel's 3 channels.
    Zip::from(out.lanes_mut(Axis(3)))
        .and(images.lanes(Axis(3)))
        .par_for_each(|mut o, x| match mode {
            NormalizeMode::Scale => {
                for c in 0..3 {
                    o[c] = f32::from(x[c]) / 255.0;
                }
            }
            NormalizeMode::Imagenet => {
                for c in 0..3 {
                    o[c] = (f32::from(x[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                }
            }
            NormalizeMode::Caffe => {
                for c in 0..3 {
                    o[c] = f32::from(x[2 - c]) - CAFFE_MEAN_BGR[c];
                }
            }
        });
    out
}

/// Reads `in_images` (uint8 N x H x W x 3 npy), normalises it and writes f32 `out` (npy),
/// after checking that the memory available holds both.
pub fn normalize_file(
    in_images: &Path,
    mode: NormalizeMode,
    out: &Path,
) -> Result<NormalizeReport, NormalizeError> {
    // The input read whole (its file is its bytes plus a small header) and four bytes of
    // output per input byte: refused here rather than aborted by the allocator later.
    let len = std::fs::metadata(in_images).map_or(0, |m| m.len());
    memory_budget::check(len.saturating_mul(5)).map_err(|short| NormalizeError::Memory {
        path: in_images.to_path_buf(),
        needed: short.needed,
        available: short.available,
    })?;
    let images: ndarray::ArrayD<u8> =
        ndarray_npy::read_npy(in_images).map_err(|source| NormalizeError::Read {
            path: in_images.to_path_buf(),
            source,
        })?;
    let shape = images.shape().to_vec();
    let images = match images.into_dimensionality::<ndarray::Ix4>() {
        Ok(a) if a.dim().3 == 3 => a,
        _ => {
            return Err(NormalizeError::Shape {
                path: in_images.to_path_buf(),
                shape,
            })
        }
    };
    let result = normalize(images.view(), mode);
    let (n, h, w, c) = result.dim();
    ndarray_npy::write_npy(out, &result).map_err(|source| NormalizeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(NormalizeReport {
        mode,
        shape: [n, h, w, c],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn sample() -> Array4<u8> {
        Array4::from_shape_vec((1, 1, 2, 3), vec![0, 128, 255, 10, 20, 30]).unwrap()
    }

    #[test]
    fn scale_divides_by_255() {
        let out = normalize(sample().view(), NormalizeMode::Scale);
        assert_eq!(out[[0, 0, 0, 0]], 0.0);
        assert_eq!(out[[0, 0, 0, 1]], 128.0 / 255.0);
        assert_eq!(out[[0, 0, 0, 2]], 1.0);
        assert_eq!(out[[0, 0, 1, 2]], 30.0 / 255.0);
    }

    #[test]
    fn imagenet_uses_torchvision_statistics() {
        let out = normalize(sample().view(), NormalizeMode::Imagenet);
        // (0/255 - 0.485) / 0.229 = -2.117904; (255/255 - 0.406) / 0.225 = 2.64
        assert!((out[[0, 0, 0, 0]] - (-2.117_904)).abs() < 1e-5);
        assert!((out[[0, 0, 0, 2]] - 2.64).abs() < 1e-5);
        assert!((out[[0, 0, 0, 1]] - ((128.0 / 255.0 - 0.456) / 0.224)).abs() < 1e-6);
    }

    #[test]
    fn caffe_reverses_channels_and_subtracts_bgr_means() {
        let out = normalize(sample().view(), NormalizeMode::Caffe);
        // Pixel (R, G, B) = (0, 128, 255) -> (B - 103.939, G - 116.779, R - 123.68).
        assert_eq!(out[[0, 0, 0, 0]], 255.0 - 103.939);
        assert_eq!(out[[0, 0, 0, 1]], 128.0 - 116.779);
        assert_eq!(out[[0, 0, 0, 2]], 0.0 - 123.68);
        assert_eq!(out[[0, 0, 1, 0]], 30.0 - 103.939);
    }

    #[test]
    fn file_round_trip_is_bit_identical_across_runs_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let images = Array4::from_shape_fn((3, 17, 19, 3), |(n, y, x, c)| {
            ((n * 31 + y * 7 + x * 3 + c * 101) % 256) as u8
        });
        let input = dir.path().join("images.npy");
        ndarray_npy::write_npy(&input, &images).unwrap();
        let mut outputs = Vec::new();
        for threads in [1, 2, 1] {
            let out = dir.path().join(format!("out{}.npy", outputs.len()));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let report = pool
                .install(|| normalize_file(&input, NormalizeMode::Imagenet, &out))
                .unwrap();
            assert_eq!(report.shape, [3, 17, 19, 3]);
            outputs.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(outputs[0], outputs[1]);
        assert_eq!(outputs[0], outputs[2]);
        let back: Array4<f32> = ndarray_npy::read_npy(dir.path().join("out0.npy")).unwrap();
        assert_eq!(back, normalize(images.view(), NormalizeMode::Imagenet));
    }

    #[test]
    fn config_from_toml() {
        let cfg: NormalizeConfig = toml::from_str("mode = \"caffe\"").unwrap();
        assert_eq!(cfg.mode, NormalizeMode::Caffe);
        let cfg: NormalizeConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.mode, NormalizeMode::Scale);
        assert!(toml::from_str::<NormalizeConfig>("mode = \"zscore\"").is_err());
        let err = toml::from_str::<NormalizeConfig>("mod = \"scale\"").unwrap_err();
        assert!(err.to_string().contains("mod"), "{err}");
    }

    #[test]
    fn images_too_large_for_memory_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("images.npy");
        // A sparse 2 TB file: nothing on disk, nothing read; 10 TB needed to normalize it.
        std::fs::File::create(&input)
            .unwrap()
            .set_len(2_000_000_000_000)
            .unwrap();
        let err =
            normalize_file(&input, NormalizeMode::Scale, &dir.path().join("o.npy")).unwrap_err();
        assert!(
            matches!(&err, NormalizeError::Memory { needed, .. } if needed.0 == 10_000_000_000_000),
            "{err}"
        );
        assert!(
            err.to_string().contains("images.npy needs 10.0 TB"),
            "{err}"
        );
        assert!(!dir.path().join("o.npy").exists());
    }

    #[test]
    fn wrong_shape_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("bad.npy");
        ndarray_npy::write_npy(&input, &ndarray::Array2::<u8>::zeros((2, 2))).unwrap();
        let err =
            normalize_file(&input, NormalizeMode::Scale, &dir.path().join("o.npy")).unwrap_err();
        assert!(err.to_string().contains("bad.npy"), "{err}");
    }
}
