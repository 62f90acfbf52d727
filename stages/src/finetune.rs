//! Fine-tuning the whole network (`freeze_base = false`): the same Keras `fit` semantics as
//! [`crate::train`], but every batch runs through the VGG16 base with its tape, so the
//! project's conv and pool backward passes update the base too. Slow on a CPU (a training
//! step is about 1.5 s per 237 x 237 image on two cores), but exact and available.

use dfdx::prelude::*;

use crate::metrics::History;
use crate::model::head::{with_head, HEAD_INPUTS};
use crate::model::layers::{AvgPool, Flatten};
use crate::model::size::{ImageSize, Pooling};
use crate::model::vgg16::Vgg16Base;
use crate::model::Vgg16Model;
use crate::progress::Progress;
use crate::train::{fit, Rows, TrainConfig, TrainError};

/// Validation images per forward pass: bounds the activations (about 60 MB per 237 x 237
/// image); images per gradient step are the config's batch size.
const EVAL_BATCH: usize = 8;

/// Trains base and head together on `images` (`[n, side, side, 3]` NHWC f32, all rows).
pub fn fine_tune(
    model: &mut Vgg16Model,
    images: &[f32],
    labels: &[u8],
    train_rows: &[usize],
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<History, TrainError> {
    let dev = Cpu::seed_from_u64(cfg.seed);
    let side = model.size.pixels();
    let conv = model.conv;
    let features = &mut model.features;
    macro_rules! run {
        ($s0:literal, $s1:literal, $s2:literal, $s3:literal, $s4:literal, $s5:literal, $k:literal) => {
            with_head!(&mut model.head, h => {
                let mut net = (
                    Vgg16Base::<$s1, $s2, $s3, $s4, $s5, f32, Cpu> { features: features.clone(), conv },
                    AvgPool::<$k, 1, 1>,
                    Flatten::<HEAD_INPUTS>,
                    h.clone(),
                );
                let data = Rows {
                    values: images,
                    width: side * side * 3,
                    labels,
                    dev: &dev,
                    shape: |n| (n, Const::<$s0>, Const::<$s0>, Const::<3>),
                    eval_batch: EVAL_BATCH,
                };
                let history = fit(
                    &mut net,
                    &data,
                    train_rows,
                    cfg,
                    "fine-tuning epochs (whole network)",
                    progress,
                )?;
                *features = net.0.features;
                *h = net.3;
                Ok(history)
            })
        };
    }
    match (model.size, model.pooling) {
        (ImageSize::S237, Pooling::Avg4) => run!(237, 118, 59, 29, 14, 7, 4),
        (ImageSize::S237, Pooling::Global) => run!(237, 118, 59, 29, 14, 7, 7),
        (ImageSize::S224, Pooling::Avg4) => run!(224, 112, 56, 28, 14, 7, 4),
        (ImageSize::S224, Pooling::Global) => run!(224, 112, 56, 28, 14, 7, 7),
        (ImageSize::S32, Pooling::Global) => run!(32, 16, 8, 4, 2, 1, 1),
        (ImageSize::S32, Pooling::Avg4) => Err(TrainError::Config(
            "avg4 pooling does not fit 32 x 32 inputs".into(),
        )),
    }
}
