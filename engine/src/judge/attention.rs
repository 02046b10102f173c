//! The judge's attention on the CPU, as one kernel: each branch's queries against the cached
//! blocks and the branch's own keys, without the masked products.
//!
//! [`super::model::CandleJudge::forward_branches`] runs many questions (branches) in one
//! pass. Written with candle's ops, every branch's queries are multiplied with every other
//! branch's keys too and masked away afterwards (for 25 questions, 24/25 of that product and
//! of the softmax's exps are thrown away), and the scores of the cache blocks and of the
//! new tokens are concatenated, then cut apart again for the values. Here each (branch,
//! head) is one task on rayon's pool:
//!
//! ```text
//! S = scale · Q_branch [K_cache₁ … K_cacheₘ  K_branch]ᵀ      (causal within K_branch)
//! O_branch = softmax(S) [V_cache₁ … V_cacheₘ  V_branch]
//! ```
//!
//! with the products on the `gemm` crate (which candle's CPU matmul uses) over the tensors'
//! own storage. Grouped-query attention: query head h reads key/value head h / (heads /
//! kv_heads). On other devices or dtypes [`attention`] answers `None` and the caller uses
//! candle's ops.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::kernels::{Gemm, Mat, matmul, softmax_in_place, with_storages};

/// Attention of queries `q` (1, heads, n, head_dim) over the cached blocks `past` (each
/// `(k, v)` of shape (1, kv_heads, len, head_dim)) and the new keys and values `k`, `v`
/// (1, kv_heads, n, head_dim). The n new positions are consecutive branches of lengths
/// `lens`: each sees every cached position and the positions of its own branch up to
/// itself. Returns (1, n, heads · head_dim), or `None` where this kernel does not apply
/// (not the CPU, not f32).
pub(super) fn attention(
    q: &Tensor,
    past: &[(Tensor, Tensor)],
    k: &Tensor,
    v: &Tensor,
    lens: &[usize],
    scale: f32,
) -> Result<Option<Tensor>> {
    let tensors: Vec<&Tensor> = [q, k, v].into_iter().chain(past.iter().flat_map(|(k, v)| [k, v])).collect();
    if !tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32) {
        return Ok(None);
    }
    let (_, heads, n, dh) = q.dims4()?;
    let (_, kv_heads, kn, kdh) = k.dims4()?;
    if kn != n || kdh != dh || v.dims() != k.dims() || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!("judge attention: q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims());
    }
    if lens.iter().sum::<usize>() != n {
        candle_core::bail!("judge attention: branches of {lens:?} tokens for {n} positions");
    }
    for (pk, pv) in past {
        let (_, pkv, _, pdh) = pk.dims4()?;
        if pkv != kv_heads || pdh != dh || pv.dims() != pk.dims() {
            candle_core::bail!("judge attention: a cached block {:?} does not fit k {:?}", pk.dims(), k.dims());
        }
    }
    let starts: Vec<usize> = lens.iter().scan(0, |at, &len| Some(std::mem::replace(at, *at + len))).collect();
    let cached: usize = past.iter().map(|(k, _)| k.dim(2)).sum::<Result<usize>>()?;
    let rep = heads / kv_heads;
    // One task per (branch, head): its output rows, (len × head_dim).
    let tasks: Vec<(usize, usize)> = (0..lens.len()).flat_map(|b| (0..heads).map(move |h| (b, h))).collect();
    let parts: Vec<Vec<f32>> = with_storages(&tensors, |views| {
        // Head h of tensor i, in the order of `tensors`: 0 q, 1 k, 2 v, then 3 + 2j and 4 + 2j
        // for cache block j's keys and values.
        let matrix = |i: usize, h: usize| Mat::of_4d(views[i].0, views[i].1, 0, h);
        tasks
            .par_iter()
            .map(|&(b, h)| -> Result<Vec<f32>> {
                let (start, len, g) = (starts[b], lens[b], h / rep);
                let width = cached + len;
                let qm = matrix(0, h)?.rows(start, len);
                // Scores against the cache blocks, then the branch's own keys, side by side.
                let mut s = vec![0f32; len * width];
                let mut col = 0;
                for block in 0..past.len() {
                    let km = matrix(3 + 2 * block, g)?;
                    matmul(&mut s, col, width, qm, km.t(), Gemm { alpha: scale, ..Gemm::SET });
                    col += km.rows;
                }
                matmul(
                    &mut s,
                    cached,
                    width,
                    qm,
                    matrix(1, g)?.rows(start, len).t(),
                    Gemm { alpha: scale, ..Gemm::SET },
                );
                for (i, row) in s.chunks_mut(width).enumerate() {
                    let seen = cached + i + 1;
                    softmax_in_place(&mut row[..seen], None);
                    row[seen..].fill(0.0);
                }
                // The weighted values, block by block.
                let sm = Mat::dense(&s, len, width);
                let mut out = vec![0f32; len * dh];
                let mut col = 0;
                for block in 0..past.len() {
                    let vm = matrix(4 + 2 * block, g)?;
                    let how = Gemm { accumulate: col > 0, ..Gemm::SET };
                    matmul(&mut out, 0, dh, sm.cols(col, vm.rows), vm, how);
                    col += vm.rows;
                }
                let vm = matrix(2, g)?.rows(start, len);
                matmul(&mut out, 0, dh, sm.cols(cached, len), vm, Gemm { accumulate: cached > 0, ..Gemm::SET });
                Ok(out)
            })
            .collect::<Result<_>>()
    })?;

    let width = heads * dh;
    let mut y = vec![0f32; n * width];
    for (&(b, h), part) in tasks.iter().zip(&parts) {
        for (i, row) in part.chunks(dh.max(1)).enumerate() {
            let at = (starts[b] + i) * width + h * dh;
            y[at..at + dh].copy_from_slice(row);
        }
    }
    Tensor::from_vec(y, (1, n, width), q.device()).map(Some)
}
