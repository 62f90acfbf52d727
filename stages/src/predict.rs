//! Predicting new images with a trained checkpoint, preprocessed exactly as in training.
//!
//! Each image goes through [`load_image`] (the load stage's decode, EXIF orientation and
//! Pillow-BICUBIC resize) and [`normalize`] (the normalize stage's arithmetic), so a file the
//! load stage read gives the same model input, and the same probability, as it did there.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, Axis};
use rayon::prelude::*;

#[cfg(test)]
use crate::data::load_image;
use crate::data::normalize::{normalize, NormalizeMode};
use crate::data::{load_image_with, DecodeError, DecodeOptions};
use crate::model::inference::{class_probabilities, pooled_features, ClassProbabilities};
use crate::model::{checkpoint, Backend, ModelError};
use crate::progress::Progress;

/// Images decoded and normalised at a time: bounds memory for any number of files (a
/// 237 x 237 batch is about 21 MB of f32) while giving the model several of its own
/// batches per step.
pub const PREDICT_BATCH: usize = 32;

/// Why prediction failed; each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// An image could not be read or decoded (the message names it).
    #[error(transparent)]
    Image(#[from] DecodeError),
    /// The checkpoint could not be loaded (the message names it).
    #[error(transparent)]
    Checkpoint(ModelError),
    /// The run's load stage resized to another size than the model takes.
    #[error("{path} takes {model}x{model} images, but the preprocessing resizes to {size}x{size}")]
    SizeMismatch {
        path: PathBuf,
        model: usize,
        size: u32,
    },
    /// The forward pass failed.
    #[error("{path}: prediction failed: {source}")]
    Model { path: PathBuf, source: ModelError },
}

/// Every class's probability for each of `images`, in order, by the model in `checkpoint`
/// run on `backend`, after resizing to `image_size` and normalising with `mode` (for a
/// two-class model the row `[1 - p, p]`, `p` the probability of class 1 as the evaluate
/// stage computes it).
///
/// All or nothing: an image that cannot be decoded stops everything with an error naming it.
/// Images are read as strictly as the load stage reads them by default (no devices, FIFOs or
/// huge files, no decompression bombs, no truncated files); [`predict_with`] takes the
/// options of a load stage that allowed truncated images. Reports one unit of progress per
/// image.
pub fn predict(
    backend: &dyn Backend,
    checkpoint: &Path,
    image_size: u32,
    mode: NormalizeMode,
    images: &[PathBuf],
    progress: &dyn Progress,
) -> Result<ClassProbabilities, PredictError> {
    predict_with(
        backend,
        checkpoint,
        image_size,
        mode,
        DecodeOptions::default(),
        images,
        progress,
    )
}

/// [`predict`], reading images with `options` (those of the run's load stage).
pub fn predict_with(
    backend: &dyn Backend,
    checkpoint: &Path,
    image_size: u32,
    mode: NormalizeMode,
    options: DecodeOptions,
    images: &[PathBuf],
    progress: &dyn Progress,
) -> Result<ClassProbabilities, PredictError> {
    let each = predict_each(
        backend, checkpoint, image_size, mode, options, images, progress,
    )?;
    let classes = each.classes.len();
    let mut values = Vec::with_capacity(images.len() * classes);
    for result in each.results {
        values.extend(result?);
    }
    Ok(ClassProbabilities { classes, values })
}

/// What [`predict_each`] found: the model's classes and each image's probabilities.
#[derive(Debug)]
pub struct EachPrediction {
    /// The model's class names, class 0 first.
    pub classes: Vec<String>,
    /// Per image, in order: every class's probability (class 0 first), or why the image
    /// could not be read.
    pub results: Vec<Result<Vec<f32>, DecodeError>>,
}

/// [`predict_with`], going on past images that cannot be read: one result per image, in
/// order, a [`DecodeError`] (naming the file) for each bad one. A bad file at the end of a
/// long folder costs only itself. The checkpoint and the forward pass still fail everything.
pub fn predict_each(
    backend: &dyn Backend,
    checkpoint: &Path,
    image_size: u32,
    mode: NormalizeMode,
    options: DecodeOptions,
    images: &[PathBuf],
    progress: &dyn Progress,
) -> Result<EachPrediction, PredictError> {
    let model = checkpoint::load(checkpoint).map_err(PredictError::Checkpoint)?;
    // Checked here, not left to the forward pass, whose length error would not say why.
    if model.spec.size().pixels() != image_size as usize {
        return Err(PredictError::SizeMismatch {
            path: checkpoint.to_path_buf(),
            model: model.spec.size().pixels(),
            size: image_size,
        });
    }
    let model_err = |source| PredictError::Model {
        path: checkpoint.to_path_buf(),
        source,
    };
    let extractor = backend
        .feature_extractor(model.spec, &model.weights.base)
        .map_err(model_err)?;
    progress.start("predicting", images.len() as u64);
    let mut results = Vec::with_capacity(images.len());
    for chunk in images.chunks(PREDICT_BATCH) {
        let attempts: Vec<Result<Array3<u8>, DecodeError>> = chunk
            .par_iter()
            .map(|path| load_image_with(path, image_size, options))
            .collect();
        let decoded: Vec<&Array3<u8>> = attempts.iter().filter_map(|r| r.as_ref().ok()).collect();
        if decoded.is_empty() {
            results.extend(attempts.into_iter().map(|r| r.map(|_| Vec::new())));
            progress.advance(chunk.len() as u64);
            continue;
        }
        let batch = stack(&decoded, image_size as usize);
        let inputs = normalize(batch.view(), mode);
        // `normalize` returns a fresh standard-layout array, so this slice always exists;
        // the fallback copy only keeps the code free of a panic path.
        let flat = match inputs.as_slice() {
            Some(s) => s.to_vec(),
            None => inputs.iter().copied().collect(),
        };
        let n = decoded.len();
        let features = pooled_features(
            extractor.as_ref(),
            &model.spec,
            &flat,
            n,
            &crate::progress::NoProgress,
        )
        .map_err(model_err)?;
        let probabilities =
            class_probabilities(backend, model.head, &model.weights.head, &features, n)
                .map_err(model_err)?;
        let mut next = 0;
        for attempt in attempts {
            results.push(attempt.map(|_| {
                next += 1;
                probabilities.row(next - 1).to_vec()
            }));
        }
        progress.advance(chunk.len() as u64);
    }
    Ok(EachPrediction {
        classes: model.classes,
        results,
    })
}

/// N x size x size x 3 from N images that `load_image` made `size x size x 3`.
fn stack(images: &[&Array3<u8>], size: usize) -> Array4<u8> {
    let mut batch = Array4::<u8>::zeros((images.len(), size, size, 3));
    for (mut slot, image) in batch.axis_iter_mut(Axis(0)).zip(images) {
        slot.assign(*image);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{build_model, inference, CpuBackend, ModelConfig};
    use crate::progress::NoProgress;

    const SMALL: &str = r#"
image_size = 32
weights = "random-he"
seed = 3
[head]
units = 64
dropout = 0.2
pooling = "global"
"#;

    /// A 32 x 32 checkpoint in `dir`, and three images of different sizes and colour types.
    fn fixture(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
        let cfg: ModelConfig = toml::from_str(SMALL).unwrap();
        let report = build_model(&cfg, dir).unwrap();
        let rgb = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
        });
        let gray = image::GrayImage::from_fn(32, 32, |x, y| image::Luma([((x * y) % 256) as u8]));
        let big = image::RgbImage::from_fn(64, 80, |x, y| {
            image::Rgb([(x * 4) as u8, 255 - (y * 3) as u8, 128])
        });
        let paths = vec![dir.join("a.png"), dir.join("b.png"), dir.join("c.jpg")];
        rgb.save(&paths[0]).unwrap();
        gray.save(&paths[1]).unwrap();
        big.save(&paths[2]).unwrap();
        (report.checkpoint, paths)
    }

    #[test]
    fn matches_load_normalize_and_the_model_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, paths) = fixture(dir.path());
        for mode in [NormalizeMode::Scale, NormalizeMode::Caffe] {
            let got = predict(&CpuBackend, &ckpt, 32, mode, &paths, &NoProgress).unwrap();
            let decoded: Vec<_> = paths.iter().map(|p| load_image(p, 32).unwrap()).collect();
            let refs: Vec<&Array3<u8>> = decoded.iter().collect();
            let inputs = normalize(stack(&refs, 32).view(), mode);
            let model = checkpoint::load(&ckpt).unwrap();
            let want = inference::predict(
                &CpuBackend,
                &model,
                inputs.as_slice().unwrap(),
                paths.len(),
                &NoProgress,
            )
            .unwrap();
            assert_eq!(got.len(), 3);
            let bits = |v: &[f32]| v.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.values), bits(&want.values), "{mode:?}");
            let got = got.positive().unwrap();
            assert!(got.iter().all(|p| *p > 0.0 && *p < 1.0), "{got:?}");
        }
    }

    #[test]
    fn batching_does_not_change_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, paths) = fixture(dir.path());
        // More than one PREDICT_BATCH, so the last chunk is partial.
        let many: Vec<PathBuf> = paths
            .iter()
            .cycle()
            .take(PREDICT_BATCH + 5)
            .cloned()
            .collect();
        let all = predict(
            &CpuBackend,
            &ckpt,
            32,
            NormalizeMode::Scale,
            &many,
            &NoProgress,
        )
        .unwrap();
        let one = predict(
            &CpuBackend,
            &ckpt,
            32,
            NormalizeMode::Scale,
            &paths,
            &NoProgress,
        )
        .unwrap();
        let (all, one) = (all.positive().unwrap(), one.positive().unwrap());
        for (i, p) in all.iter().enumerate() {
            assert_eq!(p.to_bits(), one[i % 3].to_bits(), "image {i}");
        }
        assert!(predict(
            &CpuBackend,
            &ckpt,
            32,
            NormalizeMode::Scale,
            &[],
            &NoProgress
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn bad_files_cost_only_themselves_when_predicting_each() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, paths) = fixture(dir.path());
        let bad = dir.path().join("half.png");
        std::fs::write(&bad, b"\x89PNG not really").unwrap();
        // The bad file between good ones, and a chunk made only of a bad file.
        let mut mixed = vec![
            paths[0].clone(),
            bad.clone(),
            paths[1].clone(),
            paths[2].clone(),
        ];
        mixed.extend(std::iter::repeat_n(paths[0].clone(), PREDICT_BATCH - 4));
        mixed.push(bad.clone());
        let scale = NormalizeMode::Scale;
        let opts = DecodeOptions::default();
        let got = predict_each(&CpuBackend, &ckpt, 32, scale, opts, &mixed, &NoProgress)
            .unwrap()
            .results;
        let good = predict(&CpuBackend, &ckpt, 32, scale, &paths, &NoProgress)
            .unwrap()
            .positive()
            .unwrap();
        assert_eq!(got.len(), mixed.len());
        let p = |i: usize| got[i].as_ref().map(|p| p[1].to_bits()).ok();
        assert_eq!(p(0), Some(good[0].to_bits()));
        assert_eq!(p(2), Some(good[1].to_bits()));
        assert_eq!(p(3), Some(good[2].to_bits()));
        for i in [1, mixed.len() - 1] {
            let err = got[i].as_ref().expect_err("bad file");
            assert!(err.to_string().contains("half.png"), "{err}");
        }
        // All or nothing: the same list fails as a whole through `predict_with`.
        let err = predict_with(&CpuBackend, &ckpt, 32, scale, opts, &mixed, &NoProgress);
        assert!(err.unwrap_err().to_string().contains("half.png"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, mut paths) = fixture(dir.path());
        let bad = dir.path().join("notes.png");
        std::fs::write(&bad, b"not an image").unwrap();
        paths.push(bad);
        let err = predict(
            &CpuBackend,
            &ckpt,
            32,
            NormalizeMode::Scale,
            &paths,
            &NoProgress,
        )
        .unwrap_err();
        assert!(matches!(err, PredictError::Image(_)), "{err:?}");
        assert!(err.to_string().contains("notes.png"), "{err}");

        let missing = dir.path().join("gone.jpg");
        let err = predict(
            &CpuBackend,
            &ckpt,
            32,
            NormalizeMode::Scale,
            &[missing],
            &NoProgress,
        )
        .unwrap_err();
        assert!(err.to_string().contains("gone.jpg"), "{err}");

        let err = predict(
            &CpuBackend,
            &ckpt,
            224,
            NormalizeMode::Scale,
            &paths[..1],
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} takes 32x32 images, but the preprocessing resizes to 224x224",
                ckpt.display()
            )
        );

        let err = predict(
            &CpuBackend,
            &dir.path().join("none.safetensors"),
            32,
            NormalizeMode::Scale,
            &paths[..1],
            &NoProgress,
        )
        .unwrap_err();
        assert!(err.to_string().contains("none.safetensors"), "{err}");
    }
}
