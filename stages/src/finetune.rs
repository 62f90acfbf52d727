//! Fine-tuning the whole network (`freeze_base = false`): the same Keras `fit` semantics as
//! [`crate::train`], but every batch runs through the VGG16 base with its tape, so the
//! project's conv and pool backward passes update the base too. Slow on a CPU (a training
//! step is about 1.5 s per 237 x 237 image on two cores), but exact and available.

use std::time::Instant;

use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::data::split::shuffle;
use crate::metrics::{EpochRecord, History};
use crate::model::head::{with_head, HEAD_INPUTS};
use crate::model::layers::{AvgPool, Flatten};
use crate::model::size::{ImageSize, Pooling};
use crate::model::vgg16::Vgg16Base;
use crate::model::Vgg16Model;
use crate::progress::Progress;
use crate::train::{loss_and_accuracy, validation_split, TrainConfig, TrainError};

/// Images per gradient step are the config's batch size; this bounds the activations kept
/// for the backward pass when predicting the validation rows.
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
    let data = Images {
        images,
        labels,
        side: model.size.pixels(),
        dev: &dev,
    };
    let features = &mut model.features;
    macro_rules! run {
        ($s0:literal, $s1:literal, $s2:literal, $s3:literal, $s4:literal, $s5:literal, $k:literal) => {
            with_head!(&mut model.head, h => {
                let mut net = (
                    Vgg16Base::<$s1, $s2, $s3, $s4, $s5, f32, Cpu> { features: features.clone() },
                    AvgPool::<$k, 1, 1>,
                    Flatten::<HEAD_INPUTS>,
                    h.clone(),
                );
                let history = fit::<$s0, _>(&mut net, &data, train_rows, cfg, progress)?;
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

struct Images<'a> {
    images: &'a [f32],
    labels: &'a [u8],
    side: usize,
    dev: &'a Cpu,
}

impl Images<'_> {
    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let len = self.side * self.side * 3;
        let mut x = Vec::with_capacity(rows.len() * len);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(&self.images[r * len..(r + 1) * len]);
            y.push(f32::from(self.labels[r]));
        }
        (x, y)
    }
}

fn fit<const S0: usize, M>(
    net: &mut M,
    data: &Images,
    train_rows: &[usize],
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<History, TrainError>
where
    M: TensorCollection<f32, Cpu>
        + ModuleMut<
            Tensor<(usize, Const<S0>, Const<S0>, Const<3>), f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Tensor<(usize, Const<1>), f32, Cpu, OwnedTape<f32, Cpu>>,
            Error = CpuError,
        > + Module<
            Tensor<(usize, Const<S0>, Const<S0>, Const<3>), f32, Cpu>,
            Output = Tensor<(usize, Const<1>), f32, Cpu>,
            Error = CpuError,
        >,
{
    let (fit_rows, val_rows) = validation_split(train_rows, cfg.validation_fraction);
    if fit_rows.is_empty() {
        return Err(TrainError::Config(
            "no training rows left after the validation split".into(),
        ));
    }
    let mut opt = Adam::new(
        net,
        AdamConfig {
            lr: cfg.learning_rate,
            betas: [cfg.beta1, cfg.beta2],
            eps: cfg.epsilon,
            weight_decay: None,
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut grads = net.alloc_grads();
    let mut history = History::default();
    let shape = |n: usize| (n, Const::<S0>, Const::<S0>, Const::<3>);
    progress.start(
        "fine-tuning epochs (whole network)",
        (cfg.epochs * fit_rows.len()) as u64,
    );
    for epoch in 1..=cfg.epochs {
        let clock = Instant::now();
        let mut order = fit_rows.clone();
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0.0f64, 0usize);
        for (b, rows) in order.chunks(cfg.batch_size).enumerate() {
            let (x, y) = data.gather(rows);
            let n = rows.len();
            let xs = data.dev.try_tensor_from_vec(x, shape(n))?;
            let ys = data.dev.try_tensor_from_vec(y.clone(), (n, Const::<1>))?;
            let logits = net.try_forward_mut(xs.traced(grads))?;
            let mut batch_logits = vec![0.0; n];
            logits.copy_into(&mut batch_logits);
            let loss = binary_cross_entropy_with_logits_loss(logits, ys);
            let value = loss.array();
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    batch: b + 1,
                    value,
                });
            }
            grads = loss.backward();
            opt.update(net, &grads)
                .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
            net.zero_grads(&mut grads);
            let (_, acc) = loss_and_accuracy(&batch_logits, &y);
            loss_sum += f64::from(value) * n as f64;
            right += acc * n as f64;
            seen += n;
            progress.advance(n as u64);
        }
        let (val_loss, val_accuracy) = if val_rows.is_empty() {
            (None, None)
        } else {
            let mut logits = Vec::with_capacity(val_rows.len());
            let mut targets = Vec::with_capacity(val_rows.len());
            for rows in val_rows.chunks(EVAL_BATCH) {
                let (x, y) = data.gather(rows);
                let xs = data.dev.try_tensor_from_vec(x, shape(rows.len()))?;
                let out = net.try_forward(xs)?;
                let mut part = vec![0.0; rows.len()];
                out.copy_into(&mut part);
                logits.extend(part);
                targets.extend(y);
            }
            let (l, a) = loss_and_accuracy(&logits, &targets);
            (Some(l), Some(a))
        };
        let record = EpochRecord {
            epoch: epoch as u32,
            loss: loss_sum / seen as f64,
            accuracy: right / seen as f64,
            val_loss,
            val_accuracy,
            seconds: clock.elapsed().as_secs_f64(),
        };
        progress.message(&format!(
            "epoch {epoch}/{}: loss {:.4}, accuracy {:.3}",
            cfg.epochs, record.loss, record.accuracy
        ));
        history.push(record);
    }
    Ok(history)
}
