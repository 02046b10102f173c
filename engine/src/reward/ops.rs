//! Fused CPU kernels, with backward passes, for the three element-wise-ish ops of BERT.
//!
//! candle-nn's fast `layer_norm` and `softmax_last_dim` have **no backward pass** (they are
//! applied with `apply_op*_no_bwd`, and `candle_nn::LayerNorm` silently uses the fast path for
//! contiguous inputs, so training through it would leave the LayerNorm weights and everything
//! below them without gradients). candle's `gelu_erf` does have one, but it is built from ten
//! tensor ops over the largest activation of the model. So this module implements the three as
//! custom ops: one pass forward, one pass backward, both over contiguous rows with rayon.
//! [`attention_probs`] folds attention's scaling and padding mask into its softmax, so the
//! largest tensor of attention is read once each way instead of three times.
//!
//! On other devices (CUDA) the same functions fall back to compositions of candle ops, which
//! candle differentiates itself.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn contiguous<'a>(data: &'a [f32], layout: &Layout, what: &str) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input has to be contiguous"),
    }
}

fn f32_slice<'a>(storage: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(data) => Ok(data),
        other => candle_core::bail!("{what}: only f32 is supported, found {:?}", other.dtype()),
    }
}

/// Runs `f` on the f32 values of `t` in row-major order: borrowed from the tensor's storage
/// when it is a contiguous CPU f32 tensor (the usual case: backward passes get the tensors
/// the forward made), copied otherwise.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[start..end]));
        }
    }
    let copied = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&copied))
}

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · gamma + beta`.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op3(gamma, beta, LayerNormOp { eps })
    } else {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(gamma)?.broadcast_add(beta)
    }
}

struct LayerNormOp {
    eps: f64,
}

/// Mean and 1/std of one row, two-pass in f64 (as exact as PyTorch's f32 kernel or better).
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "reward-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(s1, "layer norm")?, l1, "layer norm")?;
        let gamma = contiguous(f32_slice(s2, "layer norm")?, l2, "layer norm gamma")?;
        let beta = contiguous(f32_slice(s3, "layer norm")?, l3, "layer norm beta")?;
        let h = gamma.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h).zip(x.par_chunks(h)).for_each(|(o, row)| {
            let (mean, rstd) = row_stats(row, self.eps);
            for (o, (&v, (&g, &b))) in o.iter_mut().zip(row.iter().zip(gamma.iter().zip(beta))) {
                *o = (v - mean) * rstd * g + b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gs = gamma.flatten_all()?.to_vec1::<f32>()?;
        let (dx, dgamma, dbeta) = with_values(x, |xs| with_values(grad, |dy| self.backward(xs, &gs, dy)))??;
        let device = x.device();
        let h = gs.len();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dgamma, h, device)?),
            Some(Tensor::from_vec(dbeta, h, device)?),
        ))
    }
}

impl LayerNormOp {
    /// dx, dgamma and dbeta of rows `xs` (each `gs.len()` wide) given the output gradient `dy`.
    fn backward(&self, xs: &[f32], gs: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let h = gs.len();
        let mut dx = vec![0f32; xs.len()];
        // Per row: dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · gamma. The rows'
        // contributions to dgamma (dy · x̂) and dbeta (dy) are summed per fixed block of rows,
        // then the blocks in order, so the result does not depend on thread scheduling.
        const ROWS: usize = 32;
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(h * ROWS)
            .zip(xs.par_chunks(h * ROWS).zip(dy.par_chunks(h * ROWS)))
            .map(|(dx_block, (x_block, dy_block))| {
                let mut dgamma = vec![0f32; h];
                let mut dbeta = vec![0f32; h];
                for (dxr, (row, dyr)) in dx_block.chunks_mut(h).zip(x_block.chunks(h).zip(dy_block.chunks(h))) {
                    let (mean, rstd) = row_stats(row, self.eps);
                    let mut sum_g = 0f64;
                    let mut sum_gx = 0f64;
                    for (((&v, &d), &gamma), (dg, db)) in
                        row.iter().zip(dyr).zip(gs).zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
                    {
                        let xhat = (v - mean) * rstd;
                        let g = d * gamma;
                        sum_g += g as f64;
                        sum_gx += (g * xhat) as f64;
                        *dg += d * xhat;
                        *db += d;
                    }
                    let mean_g = (sum_g / h as f64) as f32;
                    let mean_gx = (sum_gx / h as f64) as f32;
                    for (dx, ((&v, &d), &gamma)) in dxr.iter_mut().zip(row.iter().zip(dyr).zip(gs)) {
                        let xhat = (v - mean) * rstd;
                        *dx = rstd * (d * gamma - mean_g - xhat * mean_gx);
                    }
                }
                (dgamma, dbeta)
            })
            .collect();
        let mut dgamma = vec![0f32; h];
        let mut dbeta = vec![0f32; h];
        for (g, b) in partial {
            dgamma.iter_mut().zip(&g).for_each(|(a, x)| *a += x);
            dbeta.iter_mut().zip(&b).for_each(|(a, x)| *a += x);
        }
        (dx, dgamma, dbeta)
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(SoftmaxOp)
    } else {
        let max = x.max_keepdim(D::Minus1)?;
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }
}

/// One row of softmax, in place in `out`, of `scale · row + bias`.
fn softmax_row(out: &mut [f32], row: &[f32], bias: &[f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for (o, (&v, &b)) in out.iter_mut().zip(row.iter().zip(bias)) {
        *o = v * scale + b;
        max = max.max(*o);
    }
    let mut sum = 0f32;
    for o in out.iter_mut() {
        *o = (*o - max).exp();
        sum += *o;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// The gradient of one softmax row with output `y`: `scale · y · (dy − Σ dy·y)`.
fn softmax_row_backward(dx: &mut [f32], y: &[f32], dy: &[f32], scale: f32) {
    let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
    for (dx, (&y, &d)) in dx.iter_mut().zip(y.iter().zip(dy)) {
        *dx = scale * y * (d - dot);
    }
}

/// The input gradient of a (scaled) softmax over the last dimension with output `res`.
fn softmax_backward(res: &Tensor, grad: &Tensor, scale: f32) -> Result<Tensor> {
    let n = res.dim(D::Minus1)?;
    let dx = with_values(res, |y| {
        with_values(grad, |dy| {
            let mut dx = vec![0f32; y.len()];
            dx.par_chunks_mut(n)
                .zip(y.par_chunks(n).zip(dy.par_chunks(n)))
                .with_min_len(16)
                .for_each(|(dx, (y, dy))| softmax_row_backward(dx, y, dy, scale));
            dx
        })
    })??;
    Tensor::from_vec(dx, res.shape(), res.device())
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "reward-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(storage, "softmax")?, layout, "softmax")?;
        let n = *layout.shape().dims().last().unwrap_or(&1);
        let zeros = vec![0f32; n];
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(16)
            .for_each(|(o, row)| softmax_row(o, row, &zeros, 1.0));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        softmax_backward(res, grad, 1.0).map(Some)
    }
}

/// Attention probabilities: softmax over the last dimension of `scale · scores + bias`, for
/// `scores` (B, H, Tq, Tk) and a per-key `bias` (B, Tk) added to every row of batch b (0 for
/// tokens, −1e9 for padding). One pass forward and one backward over attention's largest
/// tensor, where scaling, masking and softmax as separate ops make three of each (and
/// candle's backprop allocates and sums a gradient for each). `bias` gets no gradient.
pub fn attention_probs(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, _, tk) = scores.dims4()?;
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        scores.contiguous()?.apply_op2(&bias.contiguous()?, AttentionSoftmaxOp { scale: scale as f32 })
    } else {
        softmax_last_dim(&(scores * scale)?.broadcast_add(&bias.reshape((b, 1, 1, tk))?)?)
    }
}

struct AttentionSoftmaxOp {
    scale: f32,
}

impl CustomOp2 for AttentionSoftmaxOp {
    fn name(&self) -> &'static str {
        "reward-attention-softmax"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let scores = contiguous(f32_slice(s1, "attention softmax")?, l1, "attention scores")?;
        let bias = contiguous(f32_slice(s2, "attention softmax")?, l2, "attention bias")?;
        let (b, h, tq, tk) = l1.shape().dims4()?;
        if bias.len() != b * tk {
            candle_core::bail!("attention bias has {} values for a batch of {b} × {tk} keys", bias.len());
        }
        let rows_per_batch = h * tq;
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(tk).zip(scores.par_chunks(tk)).enumerate().with_min_len(16).for_each(|(r, (o, row))| {
            let batch = r / rows_per_batch;
            softmax_row(o, row, &bias[batch * tk..(batch + 1) * tk], self.scale);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(softmax_backward(res, grad, self.scale)?), None))
    }
}

/// GELU with the exact erf, as HF's `"gelu"`: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 { x.contiguous()?.apply_op1(GeluOp) } else { x.gelu_erf() }
}

struct GeluOp;

/// Φ(x) and the standard normal density φ(x), sharing one `exp(−x²/2)`.
///
/// erf is Abramowitz & Stegun's formula 7.1.26 (absolute error ≤ 1.5e-7), in f32; with f32
/// rounding Φ is within 4e-7 of libm's f64 `erf` over −8…8 (tested). libm's `erf`, used
/// before, took about a tenth of a training step (perf).
#[inline]
fn phi_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_72, 1.421_413_8, -1.453_152, 1.061_405_4];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let gauss = (-0.5 * x * x).exp(); // = exp(−z²)
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = (1.0 - poly * gauss).copysign(x);
    (0.5 * (1.0 + erf), gauss * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2))
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "reward-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(storage, "gelu")?, layout, "gelu")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(4096).zip(x.par_chunks(4096)).for_each(|(o, x)| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v * phi_cdf_pdf(v).0;
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
        let dx = with_values(arg, |x| {
            with_values(grad, |dy| {
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(4096).zip(x.par_chunks(4096).zip(dy.par_chunks(4096))).for_each(|(dx, (x, dy))| {
                    for (dx, (&v, &d)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                        let (cdf, pdf) = phi_cdf_pdf(v);
                        *dx = d * (cdf + v * pdf);
                    }
                });
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Compares our op's value and gradients with candle's composed version (which candle
    /// differentiates itself) on random inputs.
    fn check(f: impl Fn(&Tensor) -> Result<Tensor>, g: impl Fn(&Tensor) -> Result<Tensor>, shape: (usize, usize)) {
        let mut rng = super::super::rng::SplitMix64::new(11);
        let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.normal() as f32 * 2.0).collect();
        let weights: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.normal() as f32).collect();
        let w = Tensor::from_vec(weights, shape, &Device::Cpu).unwrap();
        let x1 = Var::from_tensor(&Tensor::from_vec(data.clone(), shape, &Device::Cpu).unwrap()).unwrap();
        let x2 = Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap();
        let y1 = f(x1.as_tensor()).unwrap();
        let y2 = g(x2.as_tensor()).unwrap();
        let diff = (&y1 - &y2).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g1 = (y1 * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (y2 * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let d1 = g1.get(x1.as_tensor()).unwrap();
        let d2 = g2.get(x2.as_tensor()).unwrap();
        let diff = (d1 - d2).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "gradient differs by {diff}");
    }

    #[test]
    fn softmax_matches_candle() {
        check(softmax_last_dim, |x| candle_nn::ops::softmax(x, D::Minus1), (7, 13));
    }

    #[test]
    fn attention_probs_match_scale_mask_and_softmax_composed() {
        // (B=2, H=3, Tq=4, Tk=5); batch 1 has its last two keys masked.
        let mut bias = vec![0f32; 10];
        bias[8] = -1e9;
        bias[9] = -1e9;
        let bias = Tensor::from_vec(bias, (2, 5), &Device::Cpu).unwrap();
        let composed =
            |x: &Tensor| candle_nn::ops::softmax(&(x * 0.35)?.broadcast_add(&bias.reshape((2, 1, 1, 5))?)?, D::Minus1);
        let fused = |x: &Tensor| attention_probs(&x.reshape((2, 3, 4, 5))?, &bias, 0.35)?.reshape((24, 5));
        check(fused, |x| composed(&x.reshape((2, 3, 4, 5))?)?.reshape((24, 5)), (24, 5));
        // Masked keys get exactly zero probability.
        let x = Tensor::ones((2, 3, 4, 5), DType::F32, &Device::Cpu).unwrap();
        let p = attention_probs(&x, &bias, 0.35).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for row in p.chunks(5).skip(12) {
            assert_eq!(&row[3..], &[0.0, 0.0]);
            assert!((row[0] - 1.0 / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn fast_erf_is_within_its_bound_of_libm() {
        let mut worst = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4; // −8 … 8
            let (cdf, pdf) = phi_cdf_pdf(x);
            let exact = 0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x as f64 * std::f64::consts::FRAC_1_SQRT_2));
            worst = worst.max((cdf as f64 - exact).abs());
            let density = (-0.5 * (x as f64).powi(2)).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - density).abs() < 1e-7, "density at {x}");
        }
        assert!(worst < 4e-7, "Φ is off by {worst}");
    }

    #[test]
    fn gelu_matches_candle() {
        check(gelu, |x| x.gelu_erf(), (5, 9));
    }

    #[test]
    fn layer_norm_matches_composed_ops_with_parameter_gradients() {
        let gamma =
            Var::from_tensor(&Tensor::new(&[1.5f32, -0.5, 2.0, 0.25, 1.0, 0.75], &Device::Cpu).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::new(&[0.1f32, 0.2, -0.3, 0.0, 0.5, -1.0], &Device::Cpu).unwrap()).unwrap();
        let composed = |x: &Tensor| {
            let mean = x.mean_keepdim(D::Minus1)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            xc.broadcast_div(&(var + 1e-12)?.sqrt()?)?.broadcast_mul(gamma.as_tensor())?.broadcast_add(beta.as_tensor())
        };
        check(|x| layer_norm(x, gamma.as_tensor(), beta.as_tensor(), 1e-12), composed, (4, 6));
        // Parameter gradients: the same loss through both paths.
        let x =
            Tensor::new(&[[0.3f32, -1.2, 2.2, 0.9, -0.4, 1.1], [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1f32, 2., 3., 4., 5., 6.], [-1., 0.5, 0.25, 2., -3., 1.]], &Device::Cpu).unwrap();
        let a = (layer_norm(&x, gamma.as_tensor(), beta.as_tensor(), 1e-12).unwrap() * &w).unwrap().sum_all().unwrap();
        let b = (composed(&x).unwrap() * &w).unwrap().sum_all().unwrap();
        let (ga, gb) = (a.backward().unwrap(), b.backward().unwrap());
        for v in [&gamma, &beta] {
            let d = (ga.get(v.as_tensor()).unwrap() - gb.get(v.as_tensor()).unwrap()).unwrap();
            let diff = d.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "parameter gradient differs by {diff}");
        }
    }
}
