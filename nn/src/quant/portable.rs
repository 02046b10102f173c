//! Plain-Rust kernels: the portable path and the definition of every result.
//!
//! A kernel computes one weight row against one activation group (up to four tokens). For
//! each block it forms the exact integer dot product of the block's quantised values with the
//! activation block, then folds it into that token's f32 accumulator with the block's
//! formula below. Those formulas, applied block after block from the first to the last, are
//! *the* canonical accumulation order: the SIMD kernels compute the same integers (integer
//! arithmetic is exact, so their summation order is free) and then perform the very same
//! f32 operations lane by lane, with no fused multiply-add anywhere.
//!
//! | weights | per block, with `dx` the activation scale and `isum` the integer dot |
//! |---------|------------------------------------------------------------------------|
//! | Q4_0    | `acc + (d·dx)·isum` (isum over `nibble − 8`)                            |
//! | Q4_1    | `acc + ((d·dx)·isum + m·s)` (isum over `nibble`, `s` from Q8_1)         |
//! | Q8_0    | `acc + (d·dx)·isum`                                                     |
//! | Q4_K    | `acc + ((d·dx)·Σ scᵢ·isumᵢ − (dmin·dx)·Σ mnᵢ·bsumᵢ)`                     |
//! | Q6_K    | `acc + (d·dx)·Σ scᵢ·isumᵢ` (isum over `q − 32`)                          |

use super::act::{GROUP, Group};
use super::format::{BlockFormat, q4k_scales_mins, q6k_value, read_f16};

/// One weight row (`w`, whole blocks of `format`) against the first `nt` tokens of `g`.
/// Lanes from `nt` on are left at zero.
pub(crate) fn row_group(format: BlockFormat, w: &[u8], g: Group<'_>, nt: usize) -> [f32; GROUP] {
    let mut acc = [0.0f32; GROUP];
    let len = format.block_len();
    for (b, block) in w.chunks_exact(format.block_bytes()).enumerate() {
        for (t, acc) in acc.iter_mut().enumerate().take(nt) {
            let lane = b * GROUP + t;
            let y = &g.qs[lane * len..(lane + 1) * len];
            let dx = g.d[lane];
            *acc = match format {
                BlockFormat::Q4_0 => {
                    let isum = nibble_dot(&block[2..18], y) - 8 * g.sums[lane];
                    *acc + (read_f16(block, 0) * dx) * isum as f32
                }
                BlockFormat::Q4_1 => {
                    let isum = nibble_dot(&block[4..20], y);
                    *acc + ((read_f16(block, 0) * dx) * isum as f32 + read_f16(block, 2) * g.s[lane])
                }
                BlockFormat::Q8_0 => {
                    let isum: i32 = block[2..34].iter().zip(y).map(|(&w, &y)| i32::from(w as i8) * i32::from(y)).sum();
                    *acc + (read_f16(block, 0) * dx) * isum as f32
                }
                BlockFormat::Q4K => {
                    let (sc, mn) = q4k_scales_mins(&block[4..16]);
                    let mut sumi = 0;
                    for (c, q) in block[16..144].chunks_exact(32).enumerate() {
                        let (lo, hi) = (&y[64 * c..64 * c + 32], &y[64 * c + 32..64 * c + 64]);
                        let dot_lo: i32 = q.iter().zip(lo).map(|(&q, &y)| i32::from(q & 0xf) * i32::from(y)).sum();
                        let dot_hi: i32 = q.iter().zip(hi).map(|(&q, &y)| i32::from(q >> 4) * i32::from(y)).sum();
                        sumi += i32::from(sc[2 * c]) * dot_lo + i32::from(sc[2 * c + 1]) * dot_hi;
                    }
                    let bsums = &g.bsums[lane * 16..(lane + 1) * 16];
                    let summs: i32 = mn
                        .iter()
                        .enumerate()
                        .map(|(j, &m)| i32::from(m) * i32::from(bsums[2 * j] + bsums[2 * j + 1]))
                        .sum();
                    *acc + ((read_f16(block, 0) * dx) * sumi as f32 - (read_f16(block, 2) * dx) * summs as f32)
                }
                BlockFormat::Q6K => {
                    let isum: i32 = (0..256)
                        .map(|i| {
                            let scale = i32::from(block[192 + i / 16] as i8);
                            scale * (i32::from(q6k_value(block, i)) - 32) * i32::from(y[i])
                        })
                        .sum();
                    *acc + (read_f16(block, 208) * dx) * isum as f32
                }
            };
        }
    }
    acc
}

/// Σ nibble·y over a 32-value block packed as ggml's Q4_0/Q4_1 do (low nibbles are values
/// 0..16, high nibbles 16..32).
fn nibble_dot(qs: &[u8], y: &[i8]) -> i32 {
    qs.iter()
        .enumerate()
        .map(|(j, &q)| i32::from(q & 0xf) * i32::from(y[j]) + i32::from(q >> 4) * i32::from(y[j + 16]))
        .sum()
}
