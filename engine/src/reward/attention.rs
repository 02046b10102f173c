//! Multi-head attention as one op with one backward pass, for training on the CPU.
//!
//! Written out with candle's ops, attention makes four tensors of shape (B, heads, T, T) per
//! layer going forward (scores, scaled and masked scores, probabilities) and as many
//! gradients coming back, each allocated, zero-filled and summed by candle's backprop. At
//! training sizes (8 pairs, 256 tokens) one of them is 50 MB: above glibc's largest mmap
//! threshold, so each one costs page faults as well. This op never makes them. Per sequence
//! and head it computes `softmax(scale · Q Kᵀ + mask) V` with the T × T matrix in a scratch
//! buffer that stays in cache, and the backward pass recomputes that matrix instead of
//! keeping it (as flash attention does), so no (B, heads, T, T) tensor is ever stored.
//!
//! ```text
//! forward, per sequence b and head h:   P = softmax(scale · Q Kᵀ + mask)      O = P V
//! backward:                             dV = Pᵀ dO      dP = dO Vᵀ
//!                                       dS = scale · P ⊙ (dP − rowsum(P ⊙ dP))
//!                                       dQ = dS K       dK = dSᵀ Q
//! ```
//!
//! The inputs are views shaped (B, heads, T, head_dim) with any strides, so BERT passes its
//! projections reshaped and transposed without copying them; keys and values may have fewer
//! heads than queries (grouped-query attention, each serving `heads / kv_heads` query
//! heads). The output is (B, T, heads · head_dim), the layout the output projection reads.
//! Masks: a per-key bias (0 for tokens, −1e9 for padding, as HF's BERT adds) and/or causal.
//! A sequence's trailing masked keys (right padding) are skipped, not computed: their
//! weight is exactly 0 either way. Each sequence is one rayon task writing its own rows, so
//! results do not depend on scheduling (exact resume relies on that).
//!
//! On other devices or dtypes [`attention`] is the same computation from candle's ops,
//! which is also what the tests compare the fused op against.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::ops;
use crate::kernels::{Gemm, Mat, f32_slice, matmul, softmax_backward_in_place, softmax_in_place, with_storages};

/// Which keys each query sees.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// (B, T) f32 added to every query's scores of sequence b: 0 for tokens, −1e9 for padding.
    pub key_bias: Option<&'a Tensor>,
    /// Query i sees keys 0..=i only.
    pub causal: bool,
}

/// `softmax(scale · q kᵀ + mask) v` per head, for `q` (B, heads, T, head_dim) and `k`, `v`
/// (B, kv_heads, T, head_dim) with `heads` a multiple of `kv_heads`; returns
/// (B, T, heads · head_dim). Differentiable in `q`, `k` and `v`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, scale: f64) -> Result<Tensor> {
    let (b, heads, t, dh) = q.dims4()?;
    let (kb, kv_heads, kt, kdh) = k.dims4()?;
    if (kb, kt, kdh) != (b, t, dh) || v.dims() != k.dims() || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!(
            "attention: queries {:?} do not fit keys {:?} and values {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if let Some(bias) = mask.key_bias
        && bias.dims() != [b, t]
    {
        candle_core::bail!("attention: key bias {:?} for a batch of {b} × {t}", bias.dims());
    }
    let fused = q.device().is_cpu() && [q, k, v].iter().all(|x| x.dtype() == DType::F32);
    if !fused {
        return composed(q, k, v, mask, scale);
    }
    let key_bias = match mask.key_bias {
        Some(bias) => Some(bias.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let op = AttentionOp { heads, kv_heads, head_dim: dh, scale: scale as f32, key_bias, causal: mask.causal };
    q.apply_op3(k, v, op)
}

/// The same computation from candle's ops (which candle differentiates itself).
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, scale: f64) -> Result<Tensor> {
    let (b, heads, t, dh) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let rep = heads / kv_heads;
    let expand = |y: &Tensor| -> Result<Tensor> {
        if rep == 1 {
            return y.contiguous();
        }
        y.unsqueeze(2)?.broadcast_as((b, kv_heads, rep, t, dh))?.contiguous()?.reshape((b, heads, t, dh))
    };
    let mut scores = (q.contiguous()?.matmul(&expand(k)?.t()?)? * scale)?;
    if let Some(bias) = mask.key_bias {
        scores = scores.broadcast_add(&bias.to_dtype(scores.dtype())?.reshape((b, 1, 1, t))?)?;
    }
    if mask.causal {
        let causal: Vec<f32> =
            (0..t).flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })).collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, t), q.device())?.to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&causal)?;
    }
    let probs = ops::softmax_last_dim(&scores)?;
    probs.matmul(&expand(v)?)?.transpose(1, 2)?.contiguous()?.reshape((b, t, heads * dh))
}

/// A key bias at or below this masks the key (HF's BERT adds −1e9 or the dtype's minimum).
const MASKED: f32 = -1e8;

struct AttentionOp {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    /// (B · T) values, see [`Mask::key_bias`].
    key_bias: Option<Vec<f32>>,
    causal: bool,
}

/// Head `h` of sequence `b` of a (B, heads, T, head_dim) view: a T × head_dim matrix.
fn head<'a>(data: &'a [f32], layout: &Layout, b: usize, h: usize) -> Mat<'a> {
    Mat::of_4d(data, layout, b, h).expect("shapes checked by AttentionOp::check")
}

impl AttentionOp {
    /// How many keys of sequence `b` (of `t`) any query can see: all but a trailing run of
    /// masked ones (bias ≤ [`MASKED`]), which get weight exactly 0 and so are skipped. When
    /// every key is masked, all of them (the softmax is then uniform, as with the bias).
    fn visible_keys(&self, b: usize, t: usize) -> usize {
        match &self.key_bias {
            Some(bias) => bias[b * t..(b + 1) * t].iter().rposition(|&x| x > MASKED).map_or(t, |last| last + 1),
            None => t,
        }
    }

    /// `P = softmax(scale · Q Kᵀ + mask)` into `p` (T × n, for the n rows of `k`), for
    /// sequence `b`.
    fn probabilities(&self, p: &mut [f32], q: Mat, k: Mat, b: usize) {
        let (t, n) = (q.rows, k.rows);
        matmul(p, 0, n, q, k.t(), Gemm { alpha: self.scale, ..Gemm::SET });
        let bias = self.key_bias.as_ref().map(|bias| &bias[b * t..b * t + n]);
        for (i, row) in p[..t * n].chunks_mut(n.max(1)).enumerate() {
            let seen = if self.causal { (i + 1).min(n) } else { n };
            softmax_in_place(&mut row[..seen], bias.map(|bias| &bias[..seen]));
            row[seen..].fill(0.0);
        }
    }

    fn check(&self, l1: &Layout, l2: &Layout, l3: &Layout) -> Result<(usize, usize)> {
        let (b, heads, t, dh) = l1.shape().dims4()?;
        let kv = (b, self.kv_heads, t, dh);
        if heads != self.heads || dh != self.head_dim || l2.shape().dims4()? != kv || l3.shape().dims4()? != kv {
            candle_core::bail!("attention: shapes {:?} {:?} {:?} do not match", l1.dims(), l2.dims(), l3.dims());
        }
        if self.key_bias.as_ref().is_some_and(|bias| bias.len() != b * t) {
            candle_core::bail!("attention: key bias does not match a batch of {b} × {t}");
        }
        Ok((b, t))
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "reward-attention"
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
        let (q, k, v) = (f32_slice(s1, "attention")?, f32_slice(s2, "attention")?, f32_slice(s3, "attention")?);
        let (b, t) = self.check(l1, l2, l3)?;
        let (heads, dh, rep) = (self.heads, self.head_dim, self.heads / self.kv_heads);
        let width = heads * dh;
        let mut out = vec![0f32; b * t * width];
        out.par_chunks_mut((t * width).max(1)).enumerate().for_each(|(seq, out)| {
            let n = self.visible_keys(seq, t);
            let mut p = vec![0f32; t * n];
            for h in 0..heads {
                let g = h / rep;
                self.probabilities(&mut p, head(q, l1, seq, h), head(k, l2, seq, g).rows(0, n), seq);
                // O (T × dh) into columns h·dh.. of this sequence's rows.
                matmul(out, h * dh, width, Mat::dense(&p, t, n), head(v, l3, seq, g).rows(0, n), Gemm::SET);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, t, width))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, heads, t, dh) = q.dims4()?;
        let (kv_heads, rep) = (self.kv_heads, self.heads / self.kv_heads);
        let (width, kv_width) = (heads * dh, kv_heads * dh);
        let dout = grad.contiguous()?;
        let mut dq = vec![0f32; b * t * width];
        let mut dk = vec![0f32; b * t * kv_width];
        let mut dv = vec![0f32; b * t * kv_width];
        with_storages(&[q, k, v, &dout], |views| {
            let [(qs, lq), (ks, lk), (vs, lv), (gs, lg)] = *views else {
                candle_core::bail!("attention: four tensors expected")
            };
            let dout = &gs[lg.start_offset()..lg.start_offset() + b * t * width];
            // Per sequence: dq, dk, dv in (T, heads, dh) order, the layout of
            // the forward's output, so each sequence owns one chunk of each.
            let chunk = |n: usize| (t * n).max(1);
            dq.par_chunks_mut(chunk(width))
                .zip(dk.par_chunks_mut(chunk(kv_width)).zip(dv.par_chunks_mut(chunk(kv_width))))
                .enumerate()
                .for_each(|(seq, (dq, (dk, dv)))| {
                    // Keys past `n` get no weight, so no gradient: their
                    // rows of dk and dv stay 0.
                    let n = self.visible_keys(seq, t);
                    let mut p = vec![0f32; t * n];
                    let mut ds = vec![0f32; t * n];
                    let d_o = |h: usize| Mat {
                        data: dout,
                        offset: seq * t * width + h * dh,
                        rows: t,
                        cols: dh,
                        rs: width,
                        cs: 1,
                    };
                    for h in 0..heads {
                        let g = h / rep;
                        let first_of_group = h % rep == 0;
                        let (qh, kh, vh) =
                            (head(qs, lq, seq, h), head(ks, lk, seq, g).rows(0, n), head(vs, lv, seq, g).rows(0, n));
                        self.probabilities(&mut p, qh, kh, seq);
                        let pm = Mat::dense(&p, t, n);
                        matmul(dv, g * dh, kv_width, pm.t(), d_o(h), Gemm { accumulate: !first_of_group, ..Gemm::SET });
                        matmul(&mut ds, 0, n, d_o(h), vh.t(), Gemm::SET);
                        for (ds_row, p_row) in ds.chunks_mut(n.max(1)).zip(p.chunks(n.max(1))) {
                            softmax_backward_in_place(ds_row, p_row, self.scale);
                        }
                        let dsm = Mat::dense(&ds, t, n);
                        matmul(dq, h * dh, width, dsm, kh, Gemm::SET);
                        matmul(dk, g * dh, kv_width, dsm.t(), qh, Gemm { accumulate: !first_of_group, ..Gemm::SET });
                    }
                });
            Ok(())
        })?;
        // Each gradient is stored (B, T, n, dh) and handed back as the (B, n, T, dh) view.
        let device = q.device();
        let back = |data: Vec<f32>, n: usize| Tensor::from_vec(data, (b, t, n, dh), device)?.transpose(1, 2);
        Ok((Some(back(dq, heads)?), Some(back(dk, kv_heads)?), Some(back(dv, kv_heads)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let mut rng = super::super::rng::SplitMix64::new(seed);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// The fused op against [`composed`] on the same inputs: output and the gradients of a
    /// random weighting of it with respect to q, k and v. `views` makes the inputs the way
    /// BERT passes them: (B, T, heads · dh) projections reshaped and transposed, not copied.
    fn compare(b: usize, heads: usize, kv_heads: usize, t: usize, dh: usize, mask: Mask, views: bool) {
        let make = |n: usize, seed: u64| -> Var {
            let x = random((b, t, n, dh), seed);
            Var::from_tensor(&if views { x } else { x.transpose(1, 2).unwrap().contiguous().unwrap() }).unwrap()
        };
        let (q, k, v) = (make(heads, 1), make(kv_heads, 2), make(kv_heads, 3));
        let arrange = |x: &Var| if views { x.as_tensor().transpose(1, 2).unwrap() } else { x.as_tensor().clone() };
        let (qa, ka, va) = (arrange(&q), arrange(&k), arrange(&v));
        let scale = 1.0 / (dh as f64).sqrt();
        let fused = attention(&qa, &ka, &va, mask, scale).unwrap();
        let reference = composed(&qa, &ka, &va, mask, scale).unwrap();
        assert_eq!(fused.dims(), &[b, t, heads * dh]);
        let diff = max_diff(&fused, &reference);
        assert!(diff < 1e-5, "output differs by {diff}");
        let w = random((b, t, heads, dh), 4).reshape((b, t, heads * dh)).unwrap();
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (reference * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let (a, r) = (gf.get(x.as_tensor()).unwrap(), gr.get(x.as_tensor()).unwrap());
            assert_eq!(a.dims(), x.dims());
            let diff = max_diff(a, r);
            assert!(diff < 1e-5, "gradient of {name} differs by {diff}");
        }
    }

    #[test]
    fn fused_attention_with_padding_matches_candle_ops() {
        // Sequence 1 has its last two positions padded (skipped); sequence 0 has a masked key
        // in the middle (kept, with its bias).
        let mut bias = vec![0f32; 2 * 7];
        bias[2] = -1e9;
        bias[12] = -1e9;
        bias[13] = -1e9;
        let bias = Tensor::from_vec(bias, (2, 7), &Device::Cpu).unwrap();
        let mask = Mask { key_bias: Some(&bias), causal: false };
        compare(2, 3, 3, 7, 4, mask, true);
        compare(3, 2, 2, 5, 8, Mask { key_bias: None, causal: false }, false);
    }

    #[test]
    fn fused_causal_grouped_attention_matches_candle_ops() {
        compare(2, 4, 2, 6, 4, Mask { key_bias: None, causal: true }, false);
        compare(1, 3, 1, 5, 2, Mask { key_bias: None, causal: true }, true);
    }

    #[test]
    fn padded_keys_get_no_weight() {
        // Keys 3 and 4 of the only sequence are padding. Their values must not matter at all:
        // huge values there give exactly the output that zeros give.
        let (q, k) = (random((1, 2, 5, 4), 5), random((1, 2, 5, 4), 6));
        let visible = random((1, 2, 5, 4), 7).narrow(2, 0, 3).unwrap();
        let padded = |value: f32| {
            let pad = Tensor::full(value, (1, 2, 2, 4), &Device::Cpu).unwrap();
            Tensor::cat(&[&visible, &pad], 2).unwrap()
        };
        let bias = Tensor::new(&[[0f32, 0.0, 0.0, -1e9, -1e9]], &Device::Cpu).unwrap();
        let mask = Mask { key_bias: Some(&bias), causal: false };
        let huge = attention(&q, &k, &padded(1e6), mask, 0.5).unwrap();
        let zeros = attention(&q, &k, &padded(0.0), mask, 0.5).unwrap();
        assert_eq!(max_diff(&huge, &zeros), 0.0);
        // Causal: query 0 sees key 0 only, so its output is value 0 exactly.
        let causal = attention(&q, &k, &padded(0.0), Mask { key_bias: None, causal: true }, 0.5).unwrap();
        let first = causal.narrow(1, 0, 1).unwrap().reshape(8).unwrap();
        let v0 = padded(0.0).narrow(2, 0, 1).unwrap().reshape(8).unwrap();
        assert!(max_diff(&first, &v0) < 1e-6);
    }
}
