//! The GGUF/ggml block layouts and their f32 dequantisation.
//!
//! A quantised row is a sequence of fixed-size blocks, each holding its own scale(s) and
//! packed integers. The byte layouts and the dequantisation formulas below are exactly
//! ggml's (`block_q4_0` … `block_q6_K` and `dequantize_row_*` in `ggml-quants.c`), so the
//! f32 values produced here are the reference every integer kernel is tested against.

use super::f16::f16_to_f32;

/// Values per K-quant super-block (`QK_K` in ggml).
pub const QK_K: usize = 256;

/// A GGUF weight block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// `block_q4_0 { f16 d; u8 qs[16] }`: 32 values `d · (nibble − 8)`.
    Q4_0,
    /// `block_q4_1 { f16 d; f16 m; u8 qs[16] }`: 32 values `d · nibble + m`.
    Q4_1,
    /// `block_q8_0 { f16 d; i8 qs[32] }`: 32 values `d · q`.
    Q8_0,
    /// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: 256 values in 8
    /// sub-blocks of 32 with 6-bit scales and mins.
    Q4K,
    /// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`: 256 six-bit values in 16
    /// sub-blocks of 16 with signed 8-bit scales.
    Q6K,
}

impl BlockFormat {
    /// Every supported format.
    pub const ALL: [BlockFormat; 5] = [Self::Q4_0, Self::Q4_1, Self::Q8_0, Self::Q4K, Self::Q6K];

    /// The ggml type id (`enum ggml_type`) as stored in GGUF tensor infos.
    pub fn ggml_type(self) -> u32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q6K => 14,
        }
    }

    /// The format with ggml type id `id`, if it is one of the supported ones.
    pub fn from_ggml_type(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml_type() == id)
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    /// Bytes of a row of `cols` values (`cols` must be a multiple of [`Self::block_len`]).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_len() * self.block_bytes()
    }
}

/// Reads a little-endian f16 at `at` and converts it to f32.
pub(crate) fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// The 8 six-bit scales and 8 six-bit mins of a `block_q4_K`, i.e. ggml's
/// `get_scale_min_k4(j)` for j in 0..8, computed four at a time with llama.cpp's u32 masks:
/// bytes 0..4 hold the low six bits of scales 0..4, bytes 4..8 those of mins 0..4, and
/// bytes 8..12 the low nibbles of scales (low half) and mins (high half) 4..8, whose top two
/// bits are the spare top bits of bytes 0..4 (scales) and 4..8 (mins).
pub(crate) fn q4k_scales_mins(scales: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([scales[4 * i], scales[4 * i + 1], scales[4 * i + 2], scales[4 * i + 3]]);
    let (a, b, c) = (word(0), word(1), word(2));
    let (low6, low4, top2) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    let sc_hi = (c & low4) | (((a >> 6) & top2) << 4);
    let mn_hi = ((c >> 4) & low4) | (((b >> 6) & top2) << 4);
    let join = |lo: u32, hi: u32| (u64::from(lo) | (u64::from(hi) << 32)).to_le_bytes();
    (join(a & low6, sc_hi), join(b & low6, mn_hi))
}

/// The unsigned six-bit value `i` (0..256) of a `block_q6_K` (before subtracting 32).
pub(crate) fn q6k_value(block: &[u8], i: usize) -> u8 {
    let (half, p) = (i / 128, i % 128);
    let ql = &block[64 * half..];
    let qh = block[128 + 32 * half + p % 32];
    let low = if p < 64 { ql[p] & 0xf } else { ql[p - 64] >> 4 };
    low | (((qh >> (2 * (p / 32))) & 3) << 4)
}

/// Dequantises one row of blocks, exactly as ggml's `dequantize_row_*`.
///
/// # Panics
/// If `out.len()` is not a multiple of the block length or `bytes` is not exactly the row's
/// size.
pub fn dequantize_row(format: BlockFormat, bytes: &[u8], out: &mut [f32]) {
    let (len, size) = (format.block_len(), format.block_bytes());
    assert_eq!(out.len() % len, 0, "{} values are not whole {format:?} blocks", out.len());
    assert_eq!(bytes.len(), format.row_bytes(out.len()), "{format:?} row size mismatch");
    for (block, y) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(len)) {
        match format {
            BlockFormat::Q4_0 => {
                let d = read_f16(block, 0);
                for (j, &q) in block[2..18].iter().enumerate() {
                    y[j] = (i32::from(q & 0xf) - 8) as f32 * d;
                    y[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
                }
            }
            BlockFormat::Q4_1 => {
                let (d, m) = (read_f16(block, 0), read_f16(block, 2));
                for (j, &q) in block[4..20].iter().enumerate() {
                    y[j] = f32::from(q & 0xf) * d + m;
                    y[j + 16] = f32::from(q >> 4) * d + m;
                }
            }
            BlockFormat::Q8_0 => {
                let d = read_f16(block, 0);
                for (v, &q) in y.iter_mut().zip(&block[2..34]) {
                    *v = f32::from(q as i8) * d;
                }
            }
            BlockFormat::Q4K => {
                let (d, dmin) = (read_f16(block, 0), read_f16(block, 2));
                let (sc, mn) = q4k_scales_mins(&block[4..16]);
                for (c, q) in block[16..144].chunks_exact(32).enumerate() {
                    let (d1, m1) = (d * f32::from(sc[2 * c]), dmin * f32::from(mn[2 * c]));
                    let (d2, m2) = (d * f32::from(sc[2 * c + 1]), dmin * f32::from(mn[2 * c + 1]));
                    for (l, &q) in q.iter().enumerate() {
                        y[64 * c + l] = d1 * f32::from(q & 0xf) - m1;
                        y[64 * c + 32 + l] = d2 * f32::from(q >> 4) - m2;
                    }
                }
            }
            BlockFormat::Q6K => {
                let d = read_f16(block, 208);
                for (i, v) in y.iter_mut().enumerate() {
                    let scale = f32::from(block[192 + i / 16] as i8);
                    *v = d * scale * f32::from(q6k_value(block, i) as i8 - 32);
                }
            }
        }
    }
}
