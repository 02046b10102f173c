//! Fused CPU kernels, with backward passes, for the three element-wise-ish ops of BERT.
//!
//! candle-nn's fast `layer_norm` and `softmax_last_dim` have **no backward pass** (they are
//! applied with `apply_op*_no_bwd`, and `candle_nn::LayerNorm` silently uses the fast path for
//! contiguous inputs, so training through it would leave the LayerNorm weights and everything
//! below them without gradients). candle's `gelu_erf` does have one, but it is built from ten
//! tensor ops over the largest activation of the model. So this module implements the three as
//! custom ops: one pass forward, one pass backward, both over contiguous rows with rayon.
//! Attention as a whole is one op too, in [`super::attention`], which shares the softmax rows.
//!
//! On other devices (CUDA) the same functions fall back to compositions of candle ops, which
//! candle differentiates itself.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, D, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{
    Gemm, Mat, exp_nonpositive, f32_slice, matmul, softmax_backward_in_place, softmax_in_place, with_storages,
};

fn contiguous<'a>(data: &'a [f32], layout: &Layout, what: &str) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input has to be contiguous"),
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

/// A linear layer, `x · wᵀ + b` for `x` (N, in), `w` (out, in) and `b` (out): one product
/// into a destination that already holds the bias, and one backward pass for all three
/// (dx = dy · w, dw = dyᵀ · x, db = column sums of dy). Built from candle's ops, the bias
/// is a broadcast add forward and a strided sum over rows backward, both slower than the
/// product they follow.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let fused = x.device().is_cpu() && [x, w, b].iter().all(|t| t.dtype() == DType::F32);
    if fused && x.rank() == 2 { x.apply_op3(w, b, LinearOp) } else { x.broadcast_matmul(&w.t()?)?.broadcast_add(b) }
}

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "reward-linear"
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
        let x = Mat::of_2d(f32_slice(s1, "linear")?, l1)?;
        let w = Mat::of_2d(f32_slice(s2, "linear")?, l2)?;
        let bias = contiguous(f32_slice(s3, "linear")?, l3, "linear bias")?;
        if w.cols != x.cols || bias.len() != w.rows {
            candle_core::bail!("linear: input {:?}, weight {:?}, bias {:?}", l1.dims(), l2.dims(), l3.dims());
        }
        let (n, out) = (x.rows, w.rows);
        let mut y = Vec::with_capacity(n * out);
        for _ in 0..n {
            y.extend_from_slice(bias);
        }
        matmul(&mut y, 0, out, x, w.t(), Gemm { accumulate: true, threaded: true, ..Gemm::SET });
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, inp) = x.dims2()?;
        let out = w.dim(0)?;
        let threaded = Gemm { threaded: true, ..Gemm::SET };
        let mut dx = vec![0f32; n * inp];
        let mut dw = vec![0f32; out * inp];
        let db = with_storages(&[x, w, grad], |views| {
            let [(xs, lx), (ws, lw), (gs, lg)] = *views else { candle_core::bail!("linear: three tensors expected") };
            let (x, w, dy) = (Mat::of_2d(xs, lx)?, Mat::of_2d(ws, lw)?, Mat::of_2d(gs, lg)?);
            matmul(&mut dx, 0, inp, dy, w, threaded);
            matmul(&mut dw, 0, inp, dy.t(), x, threaded);
            Ok(column_sums(dy))
        })?;
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (n, inp), device)?),
            Some(Tensor::from_vec(dw, (out, inp), device)?),
            Some(Tensor::from_vec(db, out, device)?),
        ))
    }
}

/// The sum of each column of `m`: per fixed block of rows in parallel, then the blocks in
/// order, so the result does not depend on thread scheduling.
fn column_sums(m: Mat) -> Vec<f32> {
    const ROWS: usize = 64;
    let blocks = m.rows.div_ceil(ROWS);
    let partial: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|block| {
            let mut sums = vec![0f32; m.cols];
            for i in block * ROWS..((block + 1) * ROWS).min(m.rows) {
                let row = m.offset + i * m.rs;
                sums.iter_mut().enumerate().for_each(|(j, s)| *s += m.data[row + j * m.cs]);
            }
            sums
        })
        .collect();
    let mut sums = vec![0f32; m.cols];
    for p in partial {
        sums.iter_mut().zip(&p).for_each(|(s, v)| *s += v);
    }
    sums
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

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "reward-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(storage, "softmax")?, layout, "softmax")?;
        let n = (*layout.shape().dims().last().unwrap_or(&1)).max(1);
        let mut out = x.to_vec();
        out.par_chunks_mut(n).with_min_len(16).for_each(|row| softmax_in_place(row, None));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = res.dim(D::Minus1)?.max(1);
        let dx = with_values(res, |y| {
            with_values(grad, |dy| {
                let mut dx = dy.to_vec();
                dx.par_chunks_mut(n)
                    .zip(y.par_chunks(n))
                    .with_min_len(16)
                    .for_each(|(dx, y)| softmax_backward_in_place(dx, y, 1.0));
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
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
    let gauss = exp_nonpositive(-0.5 * x * x); // = exp(−z²)
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
    fn linear_matches_composed_ops_with_all_gradients() {
        let mut rng = super::super::rng::SplitMix64::new(5);
        let mut random = |shape: &[usize]| {
            let n = shape.iter().product::<usize>();
            let data: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
        };
        let (w, b) = (random(&[3, 7]), random(&[3]));
        let weights = random(&[5, 3]);
        // A contiguous input, and the same values as a transposed view (strided rows).
        let x = random(&[5, 7]);
        let xt = Var::from_tensor(&x.as_tensor().t().unwrap().contiguous().unwrap()).unwrap();
        for input in [x.as_tensor().clone(), xt.as_tensor().t().unwrap()] {
            let fused = linear(&input, w.as_tensor(), b.as_tensor()).unwrap();
            let composed = input.matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
            let diff = (&fused - &composed).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "forward differs by {diff}");
            let gf = (fused * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (composed * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &xt, &w, &b] {
                let (a, c) = (gf.get(v.as_tensor()), gc.get(v.as_tensor()));
                assert_eq!(a.is_some(), c.is_some(), "a gradient is missing");
                let (Some(a), Some(c)) = (a, c) else { continue };
                let diff = (a - c).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "gradient differs");
            }
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
