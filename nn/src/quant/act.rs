//! Activation quantisation: f32 rows to llama.cpp's int8 block formats.
//!
//! The integer kernels multiply weight blocks by int8 activation blocks. llama.cpp pairs
//! each weight format with one activation format (`vec_dot_type`): Q8_0 for Q4_0 and Q8_0
//! weights, Q8_1 for Q4_1, Q8_K for the K-quants. The quantisers below follow ggml's
//! reference functions (`quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`,
//! `quantize_row_q8_K_ref`) value for value, and are the only quantisers: every ISA path
//! consumes the same [`QuantizedActivations`], which is what makes the paths agree bit for bit.
//!
//! The storage is not ggml's array of structs but a kernel-friendly one: tokens are taken in
//! groups of [`GROUP`] and, block by block, the group's four int8 blocks lie side by side
//! with their scales in four consecutive f32 lanes, so that a kernel reads one weight block
//! and applies it to four tokens with contiguous loads. The last group is padded with
//! all-zero tokens. Groups are quantised in parallel on rayon's current pool.

use rayon::prelude::*;

use super::f16::{f16_to_f32, f32_to_f16};
use super::format::{BlockFormat, QK_K};

/// Tokens per activation group (the micro-kernel's token tile).
pub(crate) const GROUP: usize = 4;

/// An int8 activation block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActFormat {
    /// `block_q8_0`: 32 values, `d = f16(amax / 127)`, `q = round(x / d)`.
    Q8_0,
    /// `block_q8_1`: as Q8_0 plus `s = f16(d · Σq)`.
    Q8_1,
    /// `block_q8_K`: 256 values, f32 `d`, `bsums[16]` (sums of each 16 values).
    Q8K,
}

impl ActFormat {
    /// The activation format llama.cpp pairs with weights of `format`.
    pub fn for_weights(format: BlockFormat) -> Self {
        match format {
            BlockFormat::Q4_0 | BlockFormat::Q8_0 => Self::Q8_0,
            BlockFormat::Q4_1 => Self::Q8_1,
            BlockFormat::Q4K | BlockFormat::Q6K => Self::Q8K,
        }
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q8_1 => 32,
            Self::Q8K => QK_K,
        }
    }
}

/// `m` rows of activations quantised to one [`ActFormat`], laid out for the kernels (see the
/// module doc). Build it once with [`QuantizedActivations::new`] and reuse it for every
/// weight matrix that reads the same input with the same activation format (q, k and v; gate
/// and up).
#[derive(Clone, Debug)]
pub struct QuantizedActivations {
    format: ActFormat,
    cols: usize,
    m: usize,
    /// `[group][block][token in group][value]`.
    qs: Vec<i8>,
    /// Block scales as f32 (Q8_0/Q8_1: the f16 value converted), `[group][block][token]`.
    d: Vec<f32>,
    /// Per block and token: Q8_1's `s` as f32; empty for the other formats.
    s: Vec<f32>,
    /// Per block and token: Σq (Q8_0, used by Q4_0's −8 offset); empty for the other formats.
    sums: Vec<i32>,
    /// Q8_K's `bsums`, `[group][block][token][16]`; empty for the other formats.
    bsums: Vec<i16>,
}

/// One group's slices, block-major as in [`QuantizedActivations`].
#[derive(Clone, Copy)]
pub(crate) struct Group<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sums: &'a [i32],
    pub bsums: &'a [i16],
}

impl QuantizedActivations {
    /// Quantises `x` (`m × cols`, row-major) to `format`.
    ///
    /// # Panics
    /// If `x.len() != m · cols` or `cols` is not a multiple of the format's block length.
    pub fn new(format: ActFormat, x: &[f32], m: usize, cols: usize) -> Self {
        let len = format.block_len();
        assert_eq!(x.len(), m * cols, "activations are not {m} × {cols}");
        assert_eq!(cols % len, 0, "{cols} columns are not whole {format:?} blocks");
        let nb = cols / len;
        let groups = m.div_ceil(GROUP);
        let lanes = groups * nb * GROUP;
        let mut acts = Self {
            format,
            cols,
            m,
            qs: vec![0; lanes * len],
            d: vec![0.0; lanes],
            s: if format == ActFormat::Q8_1 { vec![0.0; lanes] } else { Vec::new() },
            sums: if format == ActFormat::Q8_0 { vec![0; lanes] } else { Vec::new() },
            bsums: if format == ActFormat::Q8K { vec![0; lanes * 16] } else { Vec::new() },
        };
        // Split every array at group boundaries and quantise the groups in parallel.
        let per_group = nb * GROUP;
        let (mut qs, mut d, mut s) = (&mut acts.qs[..], &mut acts.d[..], &mut acts.s[..]);
        let (mut sums, mut bsums) = (&mut acts.sums[..], &mut acts.bsums[..]);
        let parts: Vec<_> = (0..groups)
            .map(|_| GroupMut {
                qs: take_front(&mut qs, per_group * len),
                d: take_front(&mut d, per_group),
                s: take_front(&mut s, per_group),
                sums: take_front(&mut sums, per_group),
                bsums: take_front(&mut bsums, per_group * 16),
            })
            .collect();
        parts.into_par_iter().zip(x.par_chunks(GROUP * cols.max(1))).for_each(|(mut part, rows)| {
            for (t, row) in rows.chunks_exact(cols.max(1)).enumerate() {
                for (b, values) in row.chunks_exact(len).enumerate() {
                    part.quantize_block(format, b * GROUP + t, values);
                }
            }
        });
        acts
    }

    /// The activation format.
    pub fn format(&self) -> ActFormat {
        self.format
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows (tokens).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// The slices of group `g` (tokens `GROUP·g ..`).
    pub(crate) fn group(&self, g: usize) -> Group<'_> {
        let nb = self.cols / self.format.block_len();
        let lanes = nb * GROUP;
        // The range of group `g` in an array with `per_lane` entries per block and token;
        // formats without an array keep it empty.
        let part = |array_len: usize, per_lane: usize| {
            if array_len == 0 { 0..0 } else { g * lanes * per_lane..(g + 1) * lanes * per_lane }
        };
        Group {
            qs: &self.qs[part(self.qs.len(), self.format.block_len())],
            d: &self.d[part(self.d.len(), 1)],
            s: &self.s[part(self.s.len(), 1)],
            sums: &self.sums[part(self.sums.len(), 1)],
            bsums: &self.bsums[part(self.bsums.len(), 16)],
        }
    }
}

/// One group's mutable slices, block-major as in [`QuantizedActivations`].
struct GroupMut<'a> {
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    sums: &'a mut [i32],
    bsums: &'a mut [i16],
}

impl GroupMut<'_> {
    /// Quantises `values` (one block of `format`) into lane `lane` (block · GROUP + token).
    fn quantize_block(&mut self, format: ActFormat, lane: usize, values: &[f32]) {
        let len = format.block_len();
        let qs = &mut self.qs[lane * len..(lane + 1) * len];
        match format {
            ActFormat::Q8_0 | ActFormat::Q8_1 => {
                let (d, sum) = quantize_q8_0(values, qs);
                self.d[lane] = f16_to_f32(f32_to_f16(d));
                if format == ActFormat::Q8_0 {
                    self.sums[lane] = sum;
                } else {
                    self.s[lane] = f16_to_f32(f32_to_f16(sum as f32 * d));
                }
            }
            ActFormat::Q8K => {
                self.d[lane] = quantize_q8_k(values, qs);
                for (bs, q) in self.bsums[lane * 16..(lane + 1) * 16].iter_mut().zip(qs.chunks_exact(16)) {
                    *bs = q.iter().map(|&v| i16::from(v)).sum();
                }
            }
        }
    }
}

/// Splits the first `n` elements (or all, if fewer: arrays a format does not use are empty)
/// off `v`.
fn take_front<'a, T>(v: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let at = n.min(v.len());
    let (front, rest) = std::mem::take(v).split_at_mut(at);
    *v = rest;
    front
}

/// `quantize_row_q8_0_ref` for one block of 32: writes `qs` and returns the unrounded scale
/// `d = amax / 127` and `Σqs`.
///
/// The only departure from ggml: values are clamped to ±127, which changes nothing for finite
/// scales (|x/d| ≤ 127) but keeps −128 out when `1/d` overflows to infinity (|x| < ~1e-36);
/// the kernels' sign tricks rely on |q| ≤ 127.
fn quantize_q8_0(x: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round().clamp(-127.0, 127.0) as i8;
        sum += i32::from(*q);
    }
    (d, sum)
}

/// `quantize_row_q8_K_ref` for one block of 256: the scale comes from the value of largest
/// magnitude *with its sign* (`iscale = −127 / max`, so `d = 1 / iscale` may be negative),
/// values are rounded to nearest-even (ggml's `nearest_int`) and capped at 127. Returns `d`.
fn quantize_q8_k(x: &[f32], qs: &mut [i8]) -> f32 {
    // ggml keeps the first value whose magnitude is strictly larger than all before it: the
    // first value of largest magnitude (NaNs never compare larger). Written as two passes so
    // that both vectorise.
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 {
        qs.fill(0);
        return 0.0;
    }
    let max = *x.iter().find(|v| v.abs() == amax).expect("amax is one of the magnitudes");
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        // Clamping before rounding changes nothing (±127 are integers), and within ±127 adding
        // and subtracting 1.5·2^23 rounds to nearest-even exactly as `round_ties_even` (ggml's
        // `nearest_int`), without a libm call; non-finite products (see quantize_q8_0) clamp
        // to ±127 or stay NaN, which casts to 0 as before.
        let p = (iscale * v).clamp(-127.0, 127.0);
        *q = ((p + 12_582_912.0) - 12_582_912.0) as i32 as i8;
    }
    1.0 / iscale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_away_from_zero_and_keeps_sums() {
        // amax 127 gives d = 1, so q = round(x): 2.5 → 3 and −0.5 → −1 (C's roundf).
        let mut x = vec![0.0f32; 32];
        x[..4].copy_from_slice(&[127.0, 2.5, -0.5, -3.2]);
        let acts = QuantizedActivations::new(ActFormat::Q8_0, &x, 1, 32);
        assert_eq!(&acts.qs[..4], &[127, 3, -1, -3]);
        assert_eq!(acts.d[0], 1.0);
        assert_eq!(acts.sums[0], 126);
        let acts = QuantizedActivations::new(ActFormat::Q8_1, &x, 1, 32);
        assert_eq!(acts.s[0], 126.0);
    }

    #[test]
    fn q8_k_takes_the_signed_maximum() {
        // The largest magnitude is +254, so iscale = −0.5 and d = −2: values flip sign and
        // round to even (3 · −0.5 = −1.5 → −2).
        let mut x = vec![0.0f32; 256];
        x[..3].copy_from_slice(&[254.0, 3.0, -5.0]);
        x[16] = 1.0;
        let acts = QuantizedActivations::new(ActFormat::Q8K, &x, 1, 256);
        assert_eq!(acts.d[0], -2.0);
        assert_eq!(&acts.qs[..3], &[-127, -2, 2]);
        assert_eq!(&acts.bsums[..2], &[-127, 0]); // −0.5 rounds to −0
    }

    /// ggml's `quantize_row_q8_K_ref` written the straightforward way.
    fn reference_q8_k(x: &[f32], qs: &mut [i8]) -> f32 {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            qs.fill(0);
            return 0.0;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = (iscale * v).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        1.0 / iscale
    }

    #[test]
    fn q8_k_matches_the_reference_bit_for_bit() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, f32::INFINITY, f32::NAN, 1e-38, -1e-40, 127.0, -254.0];
        for case in 0..2000 {
            let x: Vec<f32> = (0..256)
                .map(|i| match (case + i) % 5 {
                    0 => specials[(next() % specials.len() as u64) as usize],
                    // Integers and halves against a max of ±127 or ±254 make many exact ties.
                    1 => (next() % 509) as f32 * 0.5 - 127.0,
                    _ => {
                        f32::from_bits(next() as u32 & 0x807f_ffff | 0x3f00_0000)
                            * if case % 7 == 0 { 1e-39 } else { 3.0 }
                    }
                })
                .map(|v| if case % 3 == 0 && v.is_nan() { 1.0 } else { v })
                .collect();
            let (mut a, mut b) = ([0i8; 256], [0i8; 256]);
            let (da, db) = (quantize_q8_k(&x, &mut a), reference_q8_k(&x, &mut b));
            assert_eq!(da.to_bits(), db.to_bits(), "case {case}");
            assert_eq!(a, b, "case {case}");
        }
    }

    #[test]
    fn tokens_are_grouped_by_four_and_padded() {
        let x: Vec<f32> = (0..5 * 32).map(|i| (i / 32 + 1) as f32).collect();
        let acts = QuantizedActivations::new(ActFormat::Q8_0, &x, 5, 32);
        assert_eq!(acts.d.len(), 8);
        let second = acts.group(1);
        let d5 = f16_to_f32(f32_to_f16(5.0 / 127.0));
        assert_eq!(second.d, &[d5, 0.0, 0.0, 0.0]);
        assert!(second.qs[32..].iter().all(|&q| q == 0));
    }
}
