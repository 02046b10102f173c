//! Fused CPU kernels, with backward passes, for the three element-wise-ish ops of BERT.
//!
//! candle-nn's fast `layer_norm` and `softmax_last_dim` have **no backward pass** (they are
//! applied with `apply_op*_no_bwd`, and `candle_nn::LayerNorm` silently uses the fast path for
//! contiguous inputs, so training through it would leave the LayerNorm weights and everything
//! below them without gradients). candle's `gelu_erf` does have one, but it is built from ten
//! tensor ops over the largest activation of the model. So this module implements the three as
//! custom ops: one pass forward, one pass backward, both over contiguous rows with rayon.
//!
//! On other devices (CUDA) the same functions fall back to compositions of candle ops, which
//! candle differentiates itself.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, D, DType, Layout, Result, Shape, Tensor};
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

fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
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
        let xs = vec_of(x)?;
        let gs = vec_of(gamma)?;
        let dy = vec_of(grad)?;
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
                        row.iter().zip(dyr).zip(&gs).zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
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
                    for (dx, ((&v, &d), &gamma)) in dxr.iter_mut().zip(row.iter().zip(dyr).zip(&gs)) {
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
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dgamma, h, device)?),
            Some(Tensor::from_vec(dbeta, h, device)?),
        ))
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

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "reward-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(storage, "softmax")?, layout, "softmax")?;
        let n = *layout.shape().dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n).zip(x.par_chunks(n)).with_min_len(16).for_each(|(o, row)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|o| *o *= inv);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dx = y · (dy − Σ dy·y)
        let y = vec_of(res)?;
        let dy = vec_of(grad)?;
        let n = res.dim(D::Minus1)?;
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(n).zip(y.par_chunks(n).zip(dy.par_chunks(n))).with_min_len(16).for_each(|(dx, (y, dy))| {
            let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            for (dx, (&y, &d)) in dx.iter_mut().zip(y.iter().zip(dy)) {
                *dx = y * (d - dot);
            }
        });
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}

/// GELU with the exact erf, as HF's `"gelu"`: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 { x.contiguous()?.apply_op1(GeluOp) } else { x.gelu_erf() }
}

struct GeluOp;

fn phi_cdf(x: f32) -> f32 {
    (0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x as f64 * std::f64::consts::FRAC_1_SQRT_2))) as f32
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
                *o = v * phi_cdf(v);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
        let x = vec_of(arg)?;
        let dy = vec_of(grad)?;
        let inv_sqrt_2pi = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(4096).zip(x.par_chunks(4096).zip(dy.par_chunks(4096))).for_each(|(dx, (x, dy))| {
            for (dx, (&v, &d)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                *dx = d * (phi_cdf(v) + v * (-0.5 * v * v).exp() * inv_sqrt_2pi);
            }
        });
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
