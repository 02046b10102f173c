//! CPU kernels shared by the judge's and the reward model's fused ops: matrix products on
//! the `gemm` crate (which candle's own CPU matmul uses) over strided views of plain
//! slices, and softmax rows with an exp the compiler vectorises.
//!
//! These are what the fused ops in [`crate::reward::ops`], [`crate::reward::attention`] and
//! the judge's attention are made of; nothing here knows about models.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, Layout, Result, Tensor};

/// The values of an f32 CPU storage; an error naming `what` for any other dtype.
pub fn f32_slice<'a>(storage: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(data) => Ok(data),
        other => candle_core::bail!("{what}: only f32 is supported, found {:?}", other.dtype()),
    }
}

/// Runs `f` on the values of CPU f32 tensors as laid out in their storage (any strides), one
/// `(values, layout)` per tensor in order. The storages stay borrowed while `f` runs.
pub fn with_storages<R>(tensors: &[&Tensor], f: impl FnOnce(&[(&[f32], &Layout)]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut views = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match &**storage {
            candle_core::Storage::Cpu(cpu) => views.push((f32_slice(cpu, "fused op")?, *layout)),
            _ => candle_core::bail!("fused ops run on the CPU only"),
        }
    }
    f(&views)
}

/// An f32 matrix inside a slice: element (i, j) is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix at the start of `data`.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat { data, offset: 0, rows, cols, rs: cols, cs: 1 }
    }

    /// A 2-D tensor's values as laid out in its storage.
    pub fn of_2d(data: &'a [f32], layout: &Layout) -> Result<Mat<'a>> {
        let (rows, cols) = layout.shape().dims2()?;
        let stride = layout.stride();
        Ok(Mat { data, offset: layout.start_offset(), rows, cols, rs: stride[0], cs: stride[1] })
    }

    /// Matrix `[b, h]` of a 4-D tensor (B, H, rows, cols) as laid out in its storage.
    pub fn of_4d(data: &'a [f32], layout: &Layout, b: usize, h: usize) -> Result<Mat<'a>> {
        let (_, _, rows, cols) = layout.shape().dims4()?;
        let stride = layout.stride();
        let offset = layout.start_offset() + b * stride[0] + h * stride[1];
        Ok(Mat { data, offset, rows, cols, rs: stride[2], cs: stride[3] })
    }

    /// Rows `start..start + n`.
    pub fn rows(self, start: usize, n: usize) -> Mat<'a> {
        assert!(start + n <= self.rows, "rows {start}..{} of {}", start + n, self.rows);
        Mat { offset: self.offset + start * self.rs, rows: n, ..self }
    }

    /// Columns `start..start + n`.
    pub fn cols(self, start: usize, n: usize) -> Mat<'a> {
        self.t().rows(start, n).t()
    }

    pub fn t(self) -> Mat<'a> {
        Mat { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Whether every element lies inside `len` values.
    fn fits(&self, len: usize) -> bool {
        self.rows == 0 || self.cols == 0 || self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < len
    }
}

/// How [`matmul`] writes its product.
#[derive(Clone, Copy)]
pub struct Gemm {
    /// The product is scaled by this.
    pub alpha: f32,
    /// Add to the destination instead of overwriting it.
    pub accumulate: bool,
    /// Split the work over rayon's threads (for one large product; callers that already run
    /// one product per rayon task leave this off).
    pub threaded: bool,
}

impl Gemm {
    pub const SET: Gemm = Gemm { alpha: 1.0, accumulate: false, threaded: false };
}

/// `dst = alpha · a · b` (or `dst += …`, see [`Gemm`]), where `dst` is the `a.rows × b.cols`
/// matrix at `dst[offset..]` with row stride `rs` and unit column stride. Runs on the `gemm`
/// crate's kernels, as candle's CPU matmul does.
pub fn matmul(dst: &mut [f32], offset: usize, rs: usize, a: Mat, b: Mat, how: Gemm) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    let out = Mat { data: dst, offset, rows: m, cols: n, rs, cs: 1 };
    assert!(a.fits(a.data.len()) && b.fits(b.data.len()) && out.fits(dst.len()), "matmul: out of bounds");
    assert!(n <= rs || m <= 1, "matmul: rows of the destination overlap");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !how.accumulate {
            dst[offset..].chunks_mut(rs.max(n)).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism =
        if how.threaded && threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the three matrices lie inside their slices (checked above, with the strides as
    // given), the destination's rows do not overlap, and `dst` is borrowed mutably, so nothing
    // else can read or write it while gemm runs. gemm reads `a` and `b` and writes only the
    // destination's m × n elements; its threads, if any, have finished when it returns.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(offset),
            1,
            rs as isize,
            how.accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            1.0,
            how.alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Sums `f(x)` over `xs` in 16 interleaved partial sums, which the compiler turns into
/// vector adds (one running f32 sum is a serial chain it may not reorder).
#[inline]
fn lane_sum(xs: &[f32], f: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let whole = xs.len() / 16 * 16;
    for base in (0..whole).step_by(16) {
        lanes.iter_mut().enumerate().for_each(|(l, lane)| *lane += f(base + l));
    }
    lanes.iter().sum::<f32>() + (whole..xs.len()).map(f).sum::<f32>()
}

/// e^x for x ≤ 0, within 2 ulp of libm's `expf` (tested), in plain arithmetic the compiler
/// vectorises: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor polynomial to r⁷, 2ⁿ
/// from the exponent bits. Below −87 it returns 0 (e^−87 ≈ 1.6e-38; a softmax weight that
/// small is 0 next to the row's largest, which is 1).
#[inline]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    let xc = x.max(-87.0);
    let shifted = xc * std::f32::consts::LOG2_E + ROUND; // ROUND + n, exactly: bits 0x4B40_0000 + n
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2ⁿ = the float with exponent field n + 127, taken from `shifted`'s bits rather than
    // with `n as i32`, whose saturating conversion keeps the loop from vectorising.
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    if x < -87.0 { 0.0 } else { poly * scale }
}

/// Softmax of one row in place, after adding `bias` (one value per element) when given.
pub fn softmax_in_place(row: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l = if v > *l { v } else { *l });
    }
    let max = lanes.iter().fold(tail, |m, &v| m.max(v));
    row.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
    let inv = 1.0 / lane_sum(row, |i| row[i]);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The gradient of one softmax row with output `y`, in place of the output's gradient `dy`:
/// `scale · y · (dy − Σ dy·y)` (`scale` for a softmax of scaled inputs).
pub fn softmax_backward_in_place(dy: &mut [f32], y: &[f32], scale: f32) {
    let dot = lane_sum(y, |i| y[i] * dy[i]);
    for (d, &y) in dy.iter_mut().zip(y) {
        *d = scale * y * (*d - dot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in 0..=1_000_000 {
            let x = -87.0 * i as f32 / 1e6;
            let (ours, exact) = (exp_nonpositive(x), (x as f64).exp());
            let ulp = (exact as f32).to_bits().abs_diff(ours.to_bits());
            worst = worst.max(ulp as f32);
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-87.5), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }
}
