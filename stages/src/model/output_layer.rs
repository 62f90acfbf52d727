//! The last dense layer of a C-class head (`C >= 3`), on host values: `z = W h + b` with `W`
//! `[C, U]` (PyTorch `Linear` layout), its backward pass and its Adam update.
//!
//! Why by hand: dfdx 0.13 keeps parameters only in tensors of compile-time shape (its
//! `TensorOptions` cannot be made for a runtime shape), and the head's width `U` is already a
//! compile-time dispatch (`geometry::with_units!`); one over `C` too would multiply the
//! instantiations. The hidden layer (and, fine-tuning, the base) stay in dfdx: the step hands
//! dfdx the gradient at the hidden layer's output that this layer's backward pass computes
//! (see `host_step`). The Adam update is dfdx's CPU kernel's arithmetic, in the same order
//! (tested bit for bit against dfdx's `Adam` below), so the whole head moves as one optimiser.

use super::spec::AdamSettings;

/// Dense `U -> C` with its Adam state.
#[derive(Clone, Debug)]
pub(crate) struct OutputLayer {
    units: usize,
    outputs: usize,
    /// `[outputs, units]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// The last backward pass's gradients, in the parameters' layouts.
    grad_weight: Vec<f32>,
    grad_bias: Vec<f32>,
    adam: AdamState,
}

/// Adam's moments of both tensors and its step count.
#[derive(Clone, Debug)]
struct AdamState {
    t: i32,
    m_weight: Vec<f32>,
    v_weight: Vec<f32>,
    m_bias: Vec<f32>,
    v_bias: Vec<f32>,
}

impl OutputLayer {
    /// The layer holding `weight` (`[outputs, units]`) and `bias` (`[outputs]`); Adam starts
    /// from zero moments, as dfdx's does.
    pub(crate) fn new(units: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let outputs = bias.len();
        debug_assert_eq!(weight.len(), units * outputs);
        Self {
            units,
            outputs,
            grad_weight: vec![0.0; weight.len()],
            grad_bias: vec![0.0; outputs],
            adam: AdamState {
                t: 0,
                m_weight: vec![0.0; weight.len()],
                v_weight: vec![0.0; weight.len()],
                m_bias: vec![0.0; outputs],
                v_bias: vec![0.0; outputs],
            },
            weight,
            bias,
        }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    pub(crate) fn weight(&self) -> &[f32] {
        &self.weight
    }

    pub(crate) fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The logits `[n, C]` of `hidden` (`[n, U]`): each a sum in `f64`, in a fixed order,
    /// rounded once (the same bits whatever the thread count).
    pub(crate) fn forward(&self, hidden: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(hidden.len() / self.units.max(1) * self.outputs);
        for row in hidden.chunks_exact(self.units) {
            for (w, b) in self.weight.chunks_exact(self.units).zip(&self.bias) {
                let dot: f64 = w
                    .iter()
                    .zip(row)
                    .map(|(a, x)| f64::from(*a) * f64::from(*x))
                    .sum();
                out.push((f64::from(*b) + dot) as f32);
            }
        }
        out
    }

    /// From d(loss)/d(logits) (`[n, C]`, `f64`), keeps the parameters' gradients for
    /// [`OutputLayer::update`] and returns d(loss)/d(hidden) (`[n, U]`): `dW = dz^T h`,
    /// `db = sum_i dz_i`, `dh = dz W`, each summed in `f64` over a fixed order.
    pub(crate) fn backward(&mut self, hidden: &[f32], d_logits: &[f64]) -> Vec<f32> {
        let (u, c) = (self.units, self.outputs);
        let n = hidden.len() / u;
        for k in 0..c {
            let mut db = 0.0f64;
            for i in 0..n {
                db += d_logits[i * c + k];
            }
            self.grad_bias[k] = db as f32;
            for j in 0..u {
                let mut dw = 0.0f64;
                for i in 0..n {
                    dw += d_logits[i * c + k] * f64::from(hidden[i * u + j]);
                }
                self.grad_weight[k * u + j] = dw as f32;
            }
        }
        let mut d_hidden = Vec::with_capacity(n * u);
        for i in 0..n {
            let dz = &d_logits[i * c..(i + 1) * c];
            for j in 0..u {
                let dh: f64 = dz
                    .iter()
                    .enumerate()
                    .map(|(k, g)| g * f64::from(self.weight[k * u + j]))
                    .sum();
                d_hidden.push(dh as f32);
            }
        }
        d_hidden
    }

    /// One Adam step with the gradients of the last [`OutputLayer::backward`].
    pub(crate) fn update(&mut self, settings: &AdamSettings) {
        self.adam.t += 1;
        let t = self.adam.t;
        adam_kernel(
            t,
            settings,
            &mut self.weight,
            &mut self.adam.m_weight,
            &mut self.adam.v_weight,
            &self.grad_weight,
        );
        adam_kernel(
            t,
            settings,
            &mut self.bias,
            &mut self.adam.m_bias,
            &mut self.adam.v_bias,
            &self.grad_bias,
        );
    }
}

/// dfdx 0.13's CPU Adam kernel (`tensor_ops/adam/cpu_kernel.rs`, no weight decay), operation
/// for operation in `f32`, so the last layer rounds as the layers dfdx updates do.
fn adam_kernel(
    t: i32,
    settings: &AdamSettings,
    param: &mut [f32],
    moment1: &mut [f32],
    moment2: &mut [f32],
    grad: &[f32],
) {
    let betas = [settings.beta1 as f32, settings.beta2 as f32];
    let eps = settings.epsilon as f32;
    let lr = settings.learning_rate as f32;
    for ((p, &g), (m, v)) in param
        .iter_mut()
        .zip(grad)
        .zip(moment1.iter_mut().zip(moment2.iter_mut()))
    {
        *m = *m * betas[0] + g * (1.0 - betas[0]);
        *v = *v * betas[1] + g.powi(2) * (1.0 - betas[1]);
        let m_hat = *m * (1.0 - betas[0].powi(t)).recip();
        let v_hat = *v * (1.0 - betas[1].powi(t)).recip();
        *p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::optim::{Adam, AdamConfig, Optimizer};
    use dfdx::prelude::*;

    #[test]
    fn the_adam_update_is_dfdx_adams_bit_for_bit() {
        let dev = Cpu::default();
        let start = [0.3f32, -1.2, 0.05, 2.0, -0.7];
        let grads_by_step = [
            [0.1f32, -0.4, 2.5, -0.001, 0.0],
            [-0.2, 0.3, 1.0, 0.5, 1e-6],
            [0.7, -0.9, -2.0, 0.25, -3.0],
        ];
        let settings = AdamSettings {
            learning_rate: 3e-3,
            ..AdamSettings::default()
        };
        let mut param: Tensor<Rank1<5>, f32, Cpu> = dev.tensor(start);
        let mut opt = Adam::new(
            &param,
            AdamConfig {
                lr: settings.learning_rate,
                betas: [settings.beta1, settings.beta2],
                eps: settings.epsilon,
                weight_decay: None,
            },
        );
        let mut layer = OutputLayer::new(5, start.to_vec(), vec![0.0]);
        for g in grads_by_step {
            // A loss whose gradient at `param` is `g`: sum(param * g).
            let grads = param.alloc_grads();
            let loss = (param.trace(grads) * dev.tensor(g)).sum();
            let grads = loss.backward();
            opt.update(&mut param, &grads).unwrap();
            layer.grad_weight = g.to_vec();
            layer.grad_bias = vec![0.0];
            layer.update(&settings);
        }
        let ours: Vec<u32> = layer.weight.iter().map(|v| v.to_bits()).collect();
        let dfdx: Vec<u32> = param.as_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(ours, dfdx);
        assert_ne!(layer.weight, start.to_vec(), "the steps moved the weights");
    }

    #[test]
    fn forward_and_backward_match_an_f64_reference_and_finite_differences() {
        let (u, c, n) = (4, 3, 5);
        let weight: Vec<f32> = (0..c * u)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let bias = vec![0.1, -0.2, 0.3];
        let hidden: Vec<f32> = (0..n * u).map(|i| ((i * 5 % 13) as f32) / 9.0).collect();
        let mut layer = OutputLayer::new(u, weight.clone(), bias.clone());
        let z = layer.forward(&hidden);
        // Naive f64 reference.
        for i in 0..n {
            for k in 0..c {
                let mut want = bias[k] as f64;
                for j in 0..u {
                    want += weight[k * u + j] as f64 * hidden[i * u + j] as f64;
                }
                assert!((z[i * c + k] as f64 - want).abs() < 1e-6, "{i} {k}");
            }
        }
        // A loss L = sum(z * r) for fixed r: dL/dz = r, so the gradients are checkable.
        let r: Vec<f64> = (0..n * c)
            .map(|i| ((i * 3 % 7) as f64 - 3.0) / 4.0)
            .collect();
        let loss = |w: &[f64], b: &[f64], h: &[f64]| -> f64 {
            let mut total = 0.0;
            for i in 0..n {
                for k in 0..c {
                    let mut zk = b[k];
                    for j in 0..u {
                        zk += w[k * u + j] * h[i * u + j];
                    }
                    total += zk * r[i * c + k];
                }
            }
            total
        };
        let d_hidden = layer.backward(&hidden, &r);
        let w64: Vec<f64> = weight.iter().map(|v| *v as f64).collect();
        let b64: Vec<f64> = bias.iter().map(|v| *v as f64).collect();
        let h64: Vec<f64> = hidden.iter().map(|v| *v as f64).collect();
        let eps = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
        for idx in 0..w64.len() {
            let g = fd(&|d| {
                let mut w = w64.clone();
                w[idx] += d;
                loss(&w, &b64, &h64)
            });
            assert!(
                (g - layer.grad_weight[idx] as f64).abs() < 1e-5,
                "dW[{idx}]"
            );
        }
        for idx in 0..b64.len() {
            let g = fd(&|d| {
                let mut b = b64.clone();
                b[idx] += d;
                loss(&w64, &b, &h64)
            });
            assert!((g - layer.grad_bias[idx] as f64).abs() < 1e-5, "db[{idx}]");
        }
        for idx in 0..h64.len() {
            let g = fd(&|d| {
                let mut h = h64.clone();
                h[idx] += d;
                loss(&w64, &b64, &h)
            });
            assert!((g - d_hidden[idx] as f64).abs() < 1e-5, "dh[{idx}]");
        }
    }
}
