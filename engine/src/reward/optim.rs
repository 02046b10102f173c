//! AdamW, the learning-rate schedule and gradient clipping, written out so that every bit of
//! optimizer state (the moments `m` and `v` and the step count) can be checkpointed and
//! restored exactly.
//!
//! AdamW is PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments):
//!
//! ```text
//! t ← t + 1
//! p ← p · (1 − lr · wd)                         (only for weight matrices and embeddings)
//! m ← β₁ m + (1 − β₁) g          v ← β₂ v + (1 − β₂) g²
//! p ← p − lr · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! Biases and LayerNorm parameters get no weight decay, as in HF's example trainers.
//! The state lives in host memory as `f32` vectors; the update is one fused pass per
//! parameter, split over rayon threads in fixed chunks (so it is deterministic).

use candle_core::{Tensor, backprop::GradStore};
use rayon::prelude::*;

use super::bert::Params;

/// Hyper-parameters of [`AdamW`] (PyTorch's defaults except the weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// The optimizer and its state, one entry per parameter of a [`Params`] in its order.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far (t above).
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    decay: Vec<bool>,
}

/// Whether a parameter gets weight decay: weights yes, biases and LayerNorm no.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

const CHUNK: usize = 1 << 14;

impl AdamW {
    pub fn new(params: &Params, config: AdamWConfig) -> AdamW {
        let sizes: Vec<usize> = params.vars().iter().map(|v| v.elem_count()).collect();
        AdamW {
            config,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            decay: params.names().iter().map(|n| decays(n)).collect(),
        }
    }

    /// One update of every parameter with learning rate `lr` and gradients `grads` (same order).
    pub fn update(&mut self, params: &Params, grads: &[Vec<f32>], lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        // 1 − β in f64 first: 1 − 0.999 in f32 arithmetic would be off by 1e-5 relative.
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let (one_minus_b1, one_minus_b2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        for (i, var) in params.vars().iter().enumerate() {
            let mut p = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let shrink = if self.decay[i] { (1.0 - lr * c.weight_decay) as f32 } else { 1.0 };
            let g = &grads[i];
            p.par_chunks_mut(CHUNK)
                .zip(self.m[i].par_chunks_mut(CHUNK))
                .zip(self.v[i].par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|((p, m), (v, g))| {
                    for ((p, m), (v, &g)) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut().zip(g)) {
                        *m = b1 * *m + one_minus_b1 * g;
                        *v = b2 * *v + one_minus_b2 * g * g;
                        *p = *p * shrink - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                    }
                });
            var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

/// Sums gradients over micro-batches (gradient accumulation), one host vector per parameter.
#[derive(Debug)]
pub struct GradAccumulator {
    pub grads: Vec<Vec<f32>>,
}

impl GradAccumulator {
    pub fn new(params: &Params) -> GradAccumulator {
        GradAccumulator { grads: params.vars().iter().map(|v| vec![0.0; v.elem_count()]).collect() }
    }

    /// Adds one backward pass's gradients; parameters it did not reach count as zero.
    pub fn add(&mut self, params: &Params, store: &GradStore) -> candle_core::Result<()> {
        for (i, var) in params.vars().iter().enumerate() {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                self.grads[i].par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(a, g)| {
                    a.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                });
            }
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.grads.iter_mut().for_each(|g| g.iter_mut().for_each(|x| *x = 0.0));
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm
/// before clipping. The sum is taken in f64, in parameter order, so it is deterministic.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = grads.iter().map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sum::<f64>().sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        let f = factor as f32;
        grads.iter_mut().for_each(|g| g.iter_mut().for_each(|x| *x *= f));
    }
    norm
}

/// How the learning rate moves after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Straight down to 0 at the last step (HF's `get_linear_schedule_with_warmup`).
    #[default]
    Linear,
    /// Half a cosine down to 0 at the last step.
    Cosine,
    /// Stays at the peak.
    Constant,
}

impl std::str::FromStr for Decay {
    type Err = String;
    fn from_str(s: &str) -> Result<Decay, String> {
        match s {
            "linear" => Ok(Decay::Linear),
            "cosine" => Ok(Decay::Cosine),
            "constant" => Ok(Decay::Constant),
            other => Err(format!("unknown decay {other:?}; expected linear, cosine or constant")),
        }
    }
}

/// The learning rate of update number `step` (0-based) of `total`: linear warm-up over the
/// first `warmup` updates, `peak · (step + 1) / warmup` (so the first update is not wasted at
/// 0), then `decay` from the peak to 0 over the remaining ones.
pub fn learning_rate(peak: f64, warmup: u64, total: u64, step: u64, decay: Decay) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    match decay {
        Decay::Linear => peak * (1.0 - progress),
        Decay::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Decay::Constant => peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays() {
        // 4 warm-up steps to 1e-3, then 10 more to 0.
        let lr = |s, d| learning_rate(1e-3, 4, 14, s, d);
        assert!((lr(0, Decay::Linear) - 2.5e-4).abs() < 1e-12);
        assert!((lr(3, Decay::Linear) - 1e-3).abs() < 1e-12);
        assert!((lr(4, Decay::Linear) - 1e-3).abs() < 1e-12);
        assert!((lr(9, Decay::Linear) - 5e-4).abs() < 1e-12);
        assert!((lr(9, Decay::Cosine) - 5e-4).abs() < 1e-12); // cos(π/2) = 0: halfway
        assert!((lr(6, Decay::Cosine) - 1e-3 * 0.5 * (1.0 + (0.2 * std::f64::consts::PI).cos())).abs() < 1e-12);
        assert_eq!(lr(14, Decay::Linear), 0.0);
        assert_eq!(lr(12, Decay::Constant), 1e-3);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![vec![3.0f32], vec![4.0]];
        let norm = clip_global_norm(&mut g, 1.0);
        assert_eq!(norm, 5.0);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        let mut small = vec![vec![0.3f32, 0.4]];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, vec![vec![0.3f32, 0.4]]);
    }

    #[test]
    fn adamw_matches_hand_computed_steps() {
        let mut params = Params::new();
        params.insert("w.weight", &Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        params.insert("w.bias", &Tensor::new(&[0.5f32], &Device::Cpu).unwrap()).unwrap();
        let config = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut opt = AdamW::new(&params, config);
        // Step 1 with g = (0.5, −1), 2 on the bias and lr 0.1: m̂ = g, v̂ = g², so each
        // parameter moves by lr · sign(g) (up to ε); the weights first shrink by 1 − lr · wd.
        opt.update(&params, &[vec![0.5, -1.0], vec![2.0]], 0.1).unwrap();
        let w = params.get("w.weight").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        let b = params.get("w.bias").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        assert!((w[0] - (1.0 * 0.99 - 0.1)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (-2.0 * 0.99 + 0.1)).abs() < 1e-6, "{w:?}");
        assert!((b[0] - (0.5 - 0.1)).abs() < 1e-6, "{b:?}");
        // Step 2 with g = 0 on w[0]: m = 0.9·0.05 = 0.045, m̂ = 0.045 / 0.19;
        // v = 0.999·0.00025, v̂ = v / (1 − 0.999²) ⇒ update = lr · m̂ / sqrt(v̂).
        opt.update(&params, &[vec![0.0, -1.0], vec![2.0]], 0.1).unwrap();
        let w = params.get("w.weight").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        let m_hat = 0.045 / (1.0 - 0.81);
        let v_hat = 0.999 * 0.00025 / (1.0 - 0.999f64 * 0.999);
        let expected = (0.89 * 0.99) - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((w[0] as f64 - expected).abs() < 1e-6, "{} vs {expected}", w[0]);
        assert_eq!(opt.step, 2);
    }
}
