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
//!
//! # Where the state lives
//!
//! The moments and the accumulated gradients are [`Buffers`], one `f32` buffer per parameter,
//! kept next to the parameters ([`Storage::for_device`]):
//!
//! - on the CPU, **host vectors**: the update is one fused pass per parameter, split over rayon
//!   threads in fixed chunks (so it is deterministic);
//! - on a GPU, **tensors on the parameters' device**: the same formulas as candle ops, so a
//!   training step never copies parameters, gradients or moments to the host and back.
//!
//! The two give the same numbers up to f32 rounding (a test runs both on the CPU);
//! checkpoints hold the moments as CPU tensors either way, so a run can resume on another device.

use candle_core::{DType, Device, Shape, Tensor, backprop::GradStore};
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

/// How [`Buffers`] are kept; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Host `Vec<f32>`s, updated by fused rayon loops (the CPU's choice).
    Host,
    /// Tensors on the parameters' device, updated by candle ops (a GPU's choice).
    Tensors,
}

impl Storage {
    /// Host vectors for the CPU, tensors anywhere else.
    pub fn for_device(device: &Device) -> Storage {
        if device.is_cpu() { Storage::Host } else { Storage::Tensors }
    }

    /// The storage for `params`' device (host vectors when there are no parameters).
    pub fn for_params(params: &Params) -> Storage {
        params.vars().first().map_or(Storage::Host, |v| Storage::for_device(v.device()))
    }
}

/// One `f32` buffer per parameter of a [`Params`], in its order.
#[derive(Clone, Debug)]
pub enum Buffers {
    Host(Vec<Vec<f32>>),
    /// Each tensor has its parameter's shape and device.
    Tensors(Vec<Tensor>),
}

impl Buffers {
    /// Zeros shaped like `params`.
    pub fn zeros(params: &Params, storage: Storage) -> candle_core::Result<Buffers> {
        Ok(match storage {
            Storage::Host => Buffers::Host(params.vars().iter().map(|v| vec![0.0; v.elem_count()]).collect()),
            Storage::Tensors => Buffers::Tensors(
                params
                    .vars()
                    .iter()
                    .map(|v| Tensor::zeros(v.shape(), DType::F32, v.device()))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Buffer `i` as a CPU tensor of `shape` (for checkpoints).
    pub fn to_cpu_tensor(&self, i: usize, shape: &Shape) -> candle_core::Result<Tensor> {
        match self {
            Buffers::Host(b) => Tensor::from_slice(&b[i], shape, &Device::Cpu),
            Buffers::Tensors(b) => b[i].to_device(&Device::Cpu)?.reshape(shape),
        }
    }

    /// Replaces buffer `i` with `values` (any device; same element count), e.g. from a checkpoint.
    pub fn set(&mut self, i: usize, values: &Tensor) -> candle_core::Result<()> {
        match self {
            Buffers::Host(b) => {
                let new = values.flatten_all()?.to_vec1::<f32>()?;
                if new.len() != b[i].len() {
                    candle_core::bail!("buffer {i} holds {} values, got {}", b[i].len(), new.len());
                }
                b[i] = new;
            }
            Buffers::Tensors(b) => {
                b[i] = values.to_dtype(DType::F32)?.to_device(b[i].device())?.reshape(b[i].shape())?;
            }
        }
        Ok(())
    }

    /// Buffer `i` as host values (copied from the device for tensors).
    pub fn to_vec(&self, i: usize) -> candle_core::Result<Vec<f32>> {
        match self {
            Buffers::Host(b) => Ok(b[i].clone()),
            Buffers::Tensors(b) => b[i].flatten_all()?.to_vec1::<f32>(),
        }
    }
}

/// The optimizer and its state, one entry per parameter of a [`Params`] in its order.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far (t above).
    pub step: u64,
    pub m: Buffers,
    pub v: Buffers,
    decay: Vec<bool>,
}

/// Whether a parameter gets weight decay: weights yes, biases and LayerNorm no.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

const CHUNK: usize = 1 << 14;

impl AdamW {
    /// An optimizer with zero moments kept next to `params` ([`Storage::for_params`]).
    pub fn new(params: &Params, config: AdamWConfig) -> candle_core::Result<AdamW> {
        AdamW::with_storage(params, config, Storage::for_params(params))
    }

    pub fn with_storage(params: &Params, config: AdamWConfig, storage: Storage) -> candle_core::Result<AdamW> {
        Ok(AdamW {
            config,
            step: 0,
            m: Buffers::zeros(params, storage)?,
            v: Buffers::zeros(params, storage)?,
            decay: params.names().iter().map(|n| decays(n)).collect(),
        })
    }

    /// One update of every parameter with learning rate `lr` and gradients `grads` (same
    /// order; the same kind of [`Buffers`] as the moments).
    pub fn update(&mut self, params: &Params, grads: &Buffers, lr: f64) -> candle_core::Result<()> {
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
        match (&mut self.m, &mut self.v, grads) {
            (Buffers::Host(ms), Buffers::Host(vs), Buffers::Host(grads)) => {
                for (i, var) in params.vars().iter().enumerate() {
                    let mut p = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    let shrink = if self.decay[i] { (1.0 - lr * c.weight_decay) as f32 } else { 1.0 };
                    let g = &grads[i];
                    p.par_chunks_mut(CHUNK)
                        .zip(ms[i].par_chunks_mut(CHUNK))
                        .zip(vs[i].par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
                        .for_each(|((p, m), (v, g))| {
                            for ((p, m), (v, &g)) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut().zip(g)) {
                                *m = b1 * *m + one_minus_b1 * g;
                                *v = b2 * *v + one_minus_b2 * g * g;
                                *p = *p * shrink - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                            }
                        });
                    var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
                }
            }
            (Buffers::Tensors(ms), Buffers::Tensors(vs), Buffers::Tensors(grads)) => {
                for (i, var) in params.vars().iter().enumerate() {
                    let shrink = if self.decay[i] { (1.0 - lr * c.weight_decay) as f32 } else { 1.0 };
                    let g = &grads[i];
                    ms[i] = (ms[i].affine(b1 as f64, 0.0)? + g.affine(one_minus_b1 as f64, 0.0)?)?;
                    vs[i] = (vs[i].affine(b2 as f64, 0.0)? + g.sqr()?.affine(one_minus_b2 as f64, 0.0)?)?;
                    let denom = vs[i].sqrt()?.affine(1.0 / bc2_sqrt as f64, eps as f64)?;
                    let step = ms[i].affine(step_size as f64, 0.0)?.div(&denom)?;
                    let p = (var.as_tensor().affine(shrink as f64, 0.0)? - step)?;
                    var.set(&p)?;
                }
            }
            _ => candle_core::bail!("AdamW: the gradients are not stored like the moments (host vs tensors)"),
        }
        Ok(())
    }
}

/// Sums gradients over micro-batches (gradient accumulation), one buffer per parameter kept
/// next to the parameters (see the [module docs](self)).
#[derive(Debug)]
pub struct GradAccumulator {
    pub grads: Buffers,
}

impl GradAccumulator {
    pub fn new(params: &Params) -> candle_core::Result<GradAccumulator> {
        GradAccumulator::with_storage(params, Storage::for_params(params))
    }

    pub fn with_storage(params: &Params, storage: Storage) -> candle_core::Result<GradAccumulator> {
        Ok(GradAccumulator { grads: Buffers::zeros(params, storage)? })
    }

    /// Adds one backward pass's gradients; parameters it did not reach count as zero.
    pub fn add(&mut self, params: &Params, store: &GradStore) -> candle_core::Result<()> {
        for (i, var) in params.vars().iter().enumerate() {
            if let Some(g) = store.get(var.as_tensor()) {
                match &mut self.grads {
                    Buffers::Host(grads) => {
                        let g = g.flatten_all()?.to_vec1::<f32>()?;
                        grads[i].par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(a, g)| {
                            a.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                        });
                    }
                    Buffers::Tensors(grads) => grads[i] = (&grads[i] + g)?,
                }
            }
        }
        Ok(())
    }

    pub fn clear(&mut self) -> candle_core::Result<()> {
        match &mut self.grads {
            Buffers::Host(grads) => grads.iter_mut().for_each(|g| g.iter_mut().for_each(|x| *x = 0.0)),
            Buffers::Tensors(grads) => {
                for g in grads.iter_mut() {
                    *g = g.zeros_like()?;
                }
            }
        }
        Ok(())
    }

    /// [`clip_global_norm`] of the accumulated gradients, wherever they live. On tensors the
    /// squares are summed in f64 on the device and only the norm comes back to the host.
    pub fn clip(&mut self, max_norm: f64) -> candle_core::Result<f64> {
        match &mut self.grads {
            Buffers::Host(grads) => Ok(clip_global_norm(grads, max_norm)),
            Buffers::Tensors(grads) => {
                if grads.is_empty() {
                    return Ok(0.0);
                }
                let squares =
                    grads.iter().map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all()).collect::<Result<Vec<_>, _>>()?;
                let norm = Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f64>()?.sqrt();
                if let Some(f) = clip_factor(norm, max_norm) {
                    for g in grads.iter_mut() {
                        *g = g.affine(f as f64, 0.0)?;
                    }
                }
                Ok(norm)
            }
        }
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm
/// before clipping. The sum is taken in f64, in parameter order, so it is deterministic.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = grads.iter().map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sum::<f64>().sqrt();
    if let Some(f) = clip_factor(norm, max_norm) {
        grads.iter_mut().for_each(|g| g.iter_mut().for_each(|x| *x *= f));
    }
    norm
}

/// The factor that scales gradients of global norm `norm` down to `max_norm`, or `None`
/// when they are already within it.
fn clip_factor(norm: f64, max_norm: f64) -> Option<f32> {
    let factor = max_norm / (norm + 1e-6);
    (factor < 1.0).then_some(factor as f32)
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
        let mut opt = AdamW::new(&params, config).unwrap();
        // Step 1 with g = (0.5, −1), 2 on the bias and lr 0.1: m̂ = g, v̂ = g², so each
        // parameter moves by lr · sign(g) (up to ε); the weights first shrink by 1 − lr · wd.
        opt.update(&params, &Buffers::Host(vec![vec![0.5, -1.0], vec![2.0]]), 0.1).unwrap();
        let w = params.get("w.weight").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        let b = params.get("w.bias").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        assert!((w[0] - (1.0 * 0.99 - 0.1)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (-2.0 * 0.99 + 0.1)).abs() < 1e-6, "{w:?}");
        assert!((b[0] - (0.5 - 0.1)).abs() < 1e-6, "{b:?}");
        // Step 2 with g = 0 on w[0]: m = 0.9·0.05 = 0.045, m̂ = 0.045 / 0.19;
        // v = 0.999·0.00025, v̂ = v / (1 − 0.999²) ⇒ update = lr · m̂ / sqrt(v̂).
        opt.update(&params, &Buffers::Host(vec![vec![0.0, -1.0], vec![2.0]]), 0.1).unwrap();
        let w = params.get("w.weight").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        let m_hat = 0.045 / (1.0 - 0.81);
        let v_hat = 0.999 * 0.00025 / (1.0 - 0.999f64 * 0.999);
        let expected = (0.89 * 0.99) - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((w[0] as f64 - expected).abs() < 1e-6, "{} vs {expected}", w[0]);
        assert_eq!(opt.step, 2);
    }

    fn two_params() -> Params {
        let mut params = Params::new();
        let w = Tensor::new(&[[0.3f32, -1.2, 0.7], [2.0, 0.1, -0.4]], &Device::Cpu).unwrap();
        params.insert("w.weight", &w).unwrap();
        params.insert("w.bias", &Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap()).unwrap();
        params
    }

    /// Two micro-batches of `loss = k · Σ (x Wᵀ + b)²` into `acc`.
    fn accumulate(params: &Params, acc: &mut GradAccumulator, step: usize) {
        let x = Tensor::new(&[[1.0f32, -2.0, 0.5], [0.25, 3.0, -1.0]], &Device::Cpu).unwrap();
        acc.clear().unwrap();
        for micro in 0..2 {
            let w = params.get("w.weight").unwrap().as_tensor().clone();
            let b = params.get("w.bias").unwrap().as_tensor().clone();
            let y = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            let loss = (y.sqr().unwrap().sum_all().unwrap() * (1 + micro + step) as f64).unwrap();
            acc.add(params, &loss.backward().unwrap()).unwrap();
        }
    }

    #[test]
    fn tensor_state_matches_host_state() {
        // The GPU path (moments and gradients as tensors, updated by candle ops) run on the
        // CPU next to the host path: same clipping norms, parameters and moments up to rounding.
        let (host, tensors) = (two_params(), two_params());
        let config = AdamWConfig { weight_decay: 0.1, ..Default::default() };
        let mut host_opt = AdamW::with_storage(&host, config, Storage::Host).unwrap();
        let mut tensor_opt = AdamW::with_storage(&tensors, config, Storage::Tensors).unwrap();
        assert!(matches!(tensor_opt.m, Buffers::Tensors(_)) && matches!(host_opt.m, Buffers::Host(_)));
        let mut host_acc = GradAccumulator::with_storage(&host, Storage::Host).unwrap();
        let mut tensor_acc = GradAccumulator::with_storage(&tensors, Storage::Tensors).unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + x.abs()));
        for step in 0..6 {
            accumulate(&host, &mut host_acc, step);
            accumulate(&tensors, &mut tensor_acc, step);
            for i in 0..2 {
                assert!(close(&host_acc.grads.to_vec(i).unwrap(), &tensor_acc.grads.to_vec(i).unwrap()));
            }
            let (a, b) = (host_acc.clip(1.0).unwrap(), tensor_acc.clip(1.0).unwrap());
            assert!(a > 1.0 && (a - b).abs() <= 1e-6 * a, "norms {a} vs {b}");
            host_opt.update(&host, &host_acc.grads, 0.05).unwrap();
            tensor_opt.update(&tensors, &tensor_acc.grads, 0.05).unwrap();
        }
        for (i, (h, t)) in host.vars().iter().zip(tensors.vars()).enumerate() {
            let (h, t) =
                (h.flatten_all().unwrap().to_vec1::<f32>().unwrap(), t.flatten_all().unwrap().to_vec1().unwrap());
            assert!(close(&h, &t), "parameter {i}: {h:?} vs {t:?}");
            assert_ne!(h, two_params().vars()[i].flatten_all().unwrap().to_vec1::<f32>().unwrap());
            assert!(close(&host_opt.m.to_vec(i).unwrap(), &tensor_opt.m.to_vec(i).unwrap()));
            assert!(close(&host_opt.v.to_vec(i).unwrap(), &tensor_opt.v.to_vec(i).unwrap()));
        }
        // Checkpoint round trip: CPU tensors out, either storage back in.
        let shape = tensors.vars()[0].shape().clone();
        let m0 = tensor_opt.m.to_cpu_tensor(0, &shape).unwrap();
        host_opt.m.set(0, &m0).unwrap();
        assert_eq!(host_opt.m.to_vec(0).unwrap(), tensor_opt.m.to_vec(0).unwrap());
        assert!(host_opt.m.set(1, &m0).is_err(), "6 values into a buffer of 2");
        // Mixed storage is refused.
        assert!(tensor_opt.update(&tensors, &host_acc.grads, 0.05).is_err());
    }
}
