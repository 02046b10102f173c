//! x86-64 SIMD kernels: AVX2 (with F16C for the block scales), and AVX-512 with VNNI.
//!
//! `unsafe` is allowed here because `std::arch` loads go through raw pointers and because
//! calling a `#[target_feature]` function from code compiled without that feature is only
//! sound once the CPU is known to have it. Every load takes a bounds-checked fixed-size
//! array, and [`row_group`] checks the CPU's features before entering a kernel.
//!
//! The kernels follow `portable.rs` exactly: the integer dot of each weight block with up to
//! four activation blocks is computed in SIMD registers (`vpmaddubsw` + `vpmaddwd`, or
//! VNNI's `vpdpbusd`, exact either way since no intermediate can saturate: weights are
//! unsigned ≤ 63, or |w| ≤ 128 via the sign trick, and activations |y| ≤ 127), reduced to
//! one i32 per token, and the f32 update is done on four SSE lanes with the same
//! multiplications and additions, in the same order, as the portable code.
//!
//! The 32-value-block kernels of both paths share one body, instantiated by the
//! `block32_kernels!` macro with each path's feature set; they differ in the u8×i8 dot:
//! AVX2 multiplies to i16 pairs and widens with `vpmaddwd`, AVX-512 VNNI does both in one
//! `vpdpbusd`. The K-quant kernels apply their sub-block scales with a second
//! multiply-add on i16: 256-bit `vpmaddwd` in the AVX2 path (`k_kernels!`), 512-bit
//! `vpdpwssd` over 64 values at a time in the AVX-512 path.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::Isa;
use super::act::{GROUP, Group};
use super::format::BlockFormat;

/// Whether the AVX2 path can run here (AVX2 and F16C, which every AVX2 CPU has).
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
}

/// Whether the AVX-512 VNNI path can run here.
pub(crate) fn has_avx512_vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// One weight row against the first `nt` (1..=4) tokens of `g` with a SIMD path.
///
/// # Panics
/// If `isa` is not a SIMD path this CPU supports.
pub(crate) fn row_group(isa: Isa, format: BlockFormat, w: &[u8], g: Group<'_>, nt: usize) -> [f32; GROUP] {
    /// Calls `$module::$kernel::<nt>`.
    macro_rules! by_tokens {
        ($module:ident, $kernel:ident) => {
            match nt {
                1 => $module::$kernel::<1>(w, g),
                2 => $module::$kernel::<2>(w, g),
                3 => $module::$kernel::<3>(w, g),
                _ => $module::$kernel::<4>(w, g),
            }
        };
    }
    /// Calls the kernel of `format` in `$module`.
    macro_rules! by_format {
        ($module:ident) => {
            match format {
                BlockFormat::Q4_0 => by_tokens!($module, q4_0),
                BlockFormat::Q4_1 => by_tokens!($module, q4_1),
                BlockFormat::Q8_0 => by_tokens!($module, q8_0),
                BlockFormat::Q4K => by_tokens!($module, q4k),
                BlockFormat::Q6K => by_tokens!($module, q6k),
            }
        };
    }
    match isa {
        Isa::Avx2 => {
            assert!(has_avx2(), "this CPU lacks AVX2");
            // SAFETY: the CPU has AVX2 and F16C, the features the `avx2` kernels enable.
            unsafe { by_format!(avx2) }
        }
        Isa::Avx512Vnni => {
            assert!(has_avx512_vnni(), "this CPU lacks AVX-512 VNNI");
            // SAFETY: the CPU has every feature the `avx512` kernels enable.
            unsafe { by_format!(avx512) }
        }
        Isa::Portable => panic!("the portable path has no x86 kernel"),
    }
}

/// Rows `w[0]` and, if `pair`, `w[1]` against the first `nt` (1..=4) tokens of `g` with a
/// SIMD path: the AVX-512 K-quant kernels take both rows at once (each activation load feeds
/// both), the others run [`row_group`] per row. Each output's f32 steps are the same either way.
///
/// # Panics
/// If `isa` is not a SIMD path this CPU supports.
pub(crate) fn rows_group(
    isa: Isa,
    format: BlockFormat,
    w: [&[u8]; 2],
    pair: bool,
    g: Group<'_>,
    nt: usize,
) -> [[f32; GROUP]; 2] {
    if pair && isa == Isa::Avx512Vnni && matches!(format, BlockFormat::Q4K | BlockFormat::Q6K) {
        assert!(has_avx512_vnni(), "this CPU lacks AVX-512 VNNI");
        /// Calls `avx512::$kernel::<nt>`.
        macro_rules! by_tokens {
            ($kernel:ident) => {
                match nt {
                    1 => avx512::$kernel::<1>(w, g),
                    2 => avx512::$kernel::<2>(w, g),
                    3 => avx512::$kernel::<3>(w, g),
                    _ => avx512::$kernel::<4>(w, g),
                }
            };
        }
        // SAFETY: the CPU has every feature the `avx512` kernels enable.
        return unsafe { if format == BlockFormat::Q4K { by_tokens!(q4k_pair) } else { by_tokens!(q6k_pair) } };
    }
    let second = if pair { row_group(isa, format, w[1], g, nt) } else { [0.0; GROUP] };
    [row_group(isa, format, w[0], g, nt), second]
}

/// Loads 32 bytes from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_u8(s: &[u8]) -> __m256i {
    let a: &[u8; 32] = s[..32].try_into().expect("32 bytes");
    // SAFETY: `a` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Loads 32 signed bytes from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_i8(s: &[i8]) -> __m256i {
    let a: &[i8; 32] = s[..32].try_into().expect("32 bytes");
    // SAFETY: `a` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Loads 16 i16 from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_i16(s: &[i16]) -> __m256i {
    let a: &[i16; 16] = s[..16].try_into().expect("16 i16");
    // SAFETY: `a` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Loads 16 bytes from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load128_u8(s: &[u8]) -> __m128i {
    let a: &[u8; 16] = s[..16].try_into().expect("16 bytes");
    // SAFETY: `a` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

/// Loads 4 i32 from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_i32x4(s: &[i32]) -> __m128i {
    let a: &[i32; 4] = s[..4].try_into().expect("4 i32");
    // SAFETY: `a` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

/// Loads 4 f32 from the start of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_f32x4(s: &[f32]) -> __m128 {
    let a: &[f32; 4] = s[..4].try_into().expect("4 f32");
    // SAFETY: `a` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_ps(a.as_ptr()) }
}

/// The f16 at `at` in `block`, converted exactly (F16C) and broadcast to four lanes.
/// Equal to `read_f16` for every non-NaN input (F16C quiets signalling NaNs).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16_x4(block: &[u8], at: usize) -> __m128 {
    let bits = u16::from_le_bytes([block[at], block[at + 1]]);
    _mm_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// The four lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn store_f32x4(v: __m128) -> [f32; 4] {
    let mut out = [0.0f32; 4];
    // SAFETY: `out` is 16 writable bytes; the store is unaligned.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// `[Σ v[0], Σ v[1], Σ v[2], Σ v[3]]` over the eight i32 lanes of each vector.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn hsum4(v: [__m256i; 4]) -> __m128i {
    let a = _mm256_hadd_epi32(v[0], v[1]);
    let b = _mm256_hadd_epi32(v[2], v[3]);
    let c = _mm256_hadd_epi32(a, b);
    _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c))
}

/// `[Σ v[0], …, Σ v[7]]` over the eight i32 lanes of each vector.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn hsum8(v: [__m256i; 8]) -> __m256i {
    let low = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let high = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(low, high), _mm256_permute2x128_si256::<0x31>(low, high))
}

/// The f16 at `at` in `blocks[0]` in lanes 0..4 and in `blocks[1]` in lanes 4..8, converted
/// exactly (F16C).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16_pair(blocks: [&[u8]; 2], at: usize) -> __m256 {
    let a = u16::from_le_bytes([blocks[0][at], blocks[0][at + 1]]) as i16;
    let b = u16::from_le_bytes([blocks[1][at], blocks[1][at + 1]]) as i16;
    _mm256_cvtph_ps(_mm_setr_epi16(a, a, a, a, b, b, b, b))
}

/// The four f32 at the start of `s` in both halves.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f32x4_twice(s: &[f32]) -> __m256 {
    let v = load_f32x4(s);
    _mm256_set_m128(v, v)
}

/// Lanes 0..4 and 4..8 of `v`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn store_f32x4x2(v: __m256) -> [[f32; GROUP]; 2] {
    let mut out = [0.0f32; 8];
    // SAFETY: `out` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    [[out[0], out[1], out[2], out[3]], [out[4], out[5], out[6], out[7]]]
}

/// The 32 nibbles of a Q4_0/Q4_1 `qs[16]` as bytes, in value order (low nibbles first).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn unpack_nibbles(qs: &[u8]) -> __m256i {
    let raw = load128_u8(qs);
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw), _mm256_set1_epi8(0x0f))
}

/// The eight scales (bytes 0..8) and eight mins (bytes 8..16) of a Q4_K block, computed
/// like `q4k_scales_mins` (llama.cpp's u32 masks) on SSE lanes: lane 0 works on the scales'
/// words and lane 1 on the mins'.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q4k_scales_mins_x86(block: &[u8]) -> __m128i {
    // Words a, b, c of `scales[12]` (and four bytes of `qs`, unused).
    let v = load128_u8(&block[4..20]);
    let low6 = _mm_and_si128(v, _mm_set1_epi8(0x3f));
    let c = _mm_srlv_epi32(_mm_shuffle_epi32::<0b1010_1010>(v), _mm_setr_epi32(0, 4, 0, 0));
    let top2 = _mm_slli_epi32::<4>(_mm_and_si128(_mm_srli_epi32::<6>(v), _mm_set1_epi8(0x03)));
    let high = _mm_or_si128(_mm_and_si128(c, _mm_set1_epi8(0x0f)), top2);
    _mm_unpacklo_epi32(low6, high)
}

/// Sixteen i16: each Q4_K min (bytes 8..16 of `scales_mins`) twice, one per bsum of its
/// sub-block.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q4k_mins_x16(scales_mins: __m128i) -> __m256i {
    _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scales_mins, scales_mins))
}

/// Bits 4 and 5 of Q6_K values: the two low bits of each byte of `qh`, moved up by 4.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q6_high(qh: __m256i) -> __m256i {
    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)))
}

/// Generates the 32-value-block kernels of one ISA; the invoking module provides
/// `dot(u, s) -> __m256i` (eight i32 lanes, each the sum of four u8×i8 products).
macro_rules! block32_kernels {
    ($features:literal) => {
        /// Q4_0 × Q8_0 for `T` tokens: `acc + (d·dx)·(Σ nibble·y − 8·Σy)`.
        #[target_feature(enable = $features)]
        pub(super) fn q4_0<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
            let mut acc = _mm_setzero_ps();
            let blocks = w.chunks_exact(18).zip(g.qs.chunks_exact(GROUP * 32));
            for (((block, ys), dx), sums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.sums.chunks_exact(GROUP)) {
                let q = unpack_nibbles(&block[2..18]);
                let mut v = [_mm256_setzero_si256(); GROUP];
                for (v, y) in v.iter_mut().zip(ys.chunks_exact(32)).take(T) {
                    *v = dot(q, load_i8(y));
                }
                let isum = _mm_sub_epi32(hsum4(v), _mm_slli_epi32::<3>(load_i32x4(sums)));
                let dd = _mm_mul_ps(f16_x4(block, 0), load_f32x4(dx));
                acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(isum)));
            }
            store_f32x4(acc)
        }

        /// Q4_1 × Q8_1 for `T` tokens: `acc + ((d·dx)·Σ nibble·y + m·s)`.
        #[target_feature(enable = $features)]
        pub(super) fn q4_1<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
            let mut acc = _mm_setzero_ps();
            let blocks = w.chunks_exact(20).zip(g.qs.chunks_exact(GROUP * 32));
            for (((block, ys), dx), s) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.s.chunks_exact(GROUP)) {
                let q = unpack_nibbles(&block[4..20]);
                let mut v = [_mm256_setzero_si256(); GROUP];
                for (v, y) in v.iter_mut().zip(ys.chunks_exact(32)).take(T) {
                    *v = dot(q, load_i8(y));
                }
                let isum = _mm_cvtepi32_ps(hsum4(v));
                let dd = _mm_mul_ps(f16_x4(block, 0), load_f32x4(dx));
                let ms = _mm_mul_ps(f16_x4(block, 2), load_f32x4(s));
                acc = _mm_add_ps(acc, _mm_add_ps(_mm_mul_ps(dd, isum), ms));
            }
            store_f32x4(acc)
        }

        /// Q8_0 × Q8_0 for `T` tokens: `acc + (d·dx)·Σ w·y`, with `Σ |w|·(y·sign w)` so that
        /// the unsigned×signed instructions apply.
        #[target_feature(enable = $features)]
        pub(super) fn q8_0<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
            let mut acc = _mm_setzero_ps();
            let blocks = w.chunks_exact(34).zip(g.qs.chunks_exact(GROUP * 32));
            for ((block, ys), dx) in blocks.zip(g.d.chunks_exact(GROUP)) {
                let q = load_u8(&block[2..34]);
                let abs = _mm256_abs_epi8(q);
                let mut v = [_mm256_setzero_si256(); GROUP];
                for (v, y) in v.iter_mut().zip(ys.chunks_exact(32)).take(T) {
                    *v = dot(abs, _mm256_sign_epi8(load_i8(y), q));
                }
                let dd = _mm_mul_ps(f16_x4(block, 0), load_f32x4(dx));
                acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4(v))));
            }
            store_f32x4(acc)
        }
    };
}

/// Generates the 256-bit K-quant kernels with the given features.
macro_rules! k_kernels {
    ($features:literal) => {
        /// Q4_K × Q8_K for `T` tokens: `acc + ((d·dx)·Σ scᵢ·isumᵢ − (dmin·dx)·Σ mnᵢ·bsumᵢ)`.
        #[target_feature(enable = $features)]
        pub(super) fn q4k<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
            let mask = _mm256_set1_epi8(0x0f);
            let mut acc = _mm_setzero_ps();
            let blocks = w.chunks_exact(144).zip(g.qs.chunks_exact(GROUP * 256));
            for (((block, ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16))
            {
                let scales_mins = q4k_scales_mins_x86(block);
                let mut sc = [0u8; 16];
                // SAFETY: `sc` is 16 writable bytes; the store is unaligned.
                unsafe { _mm_storeu_si128(sc.as_mut_ptr().cast(), scales_mins) };
                let mut sums = [_mm256_setzero_si256(); GROUP];
                for (c, qs) in block[16..144].chunks_exact(32).enumerate() {
                    let raw = load_u8(qs);
                    let lo = _mm256_and_si256(raw, mask);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), mask);
                    let sc_lo = _mm256_set1_epi16(i16::from(sc[2 * c]));
                    let sc_hi = _mm256_set1_epi16(i16::from(sc[2 * c + 1]));
                    for (sum, y) in sums.iter_mut().zip(ys.chunks_exact(256)).take(T) {
                        let y = &y[64 * c..64 * c + 64];
                        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load_i8(y)), sc_lo);
                        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load_i8(&y[32..])), sc_hi);
                        *sum = _mm256_add_epi32(*sum, _mm256_add_epi32(p_lo, p_hi));
                    }
                }
                let mins = q4k_mins_x16(scales_mins);
                let mut msums = [_mm256_setzero_si256(); GROUP];
                for (msum, bsums) in msums.iter_mut().zip(bsums.chunks_exact(16)).take(T) {
                    *msum = _mm256_madd_epi16(mins, load_i16(bsums));
                }
                let dx = load_f32x4(dx);
                let dd = _mm_mul_ps(f16_x4(block, 0), dx);
                let dm = _mm_mul_ps(f16_x4(block, 2), dx);
                let block_sum = _mm_sub_ps(
                    _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4(sums))),
                    _mm_mul_ps(dm, _mm_cvtepi32_ps(hsum4(msums))),
                );
                acc = _mm_add_ps(acc, block_sum);
            }
            store_f32x4(acc)
        }

        /// Q6_K × Q8_K for `T` tokens: `acc + (d·dx)·(Σ scᵢ·Σ q·y − 32·Σ scᵢ·bsumᵢ)`.
        #[target_feature(enable = $features)]
        pub(super) fn q6k<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
            let m4 = _mm256_set1_epi8(0x0f);
            let mut acc = _mm_setzero_ps();
            let blocks = w.chunks_exact(210).zip(g.qs.chunks_exact(GROUP * 256));
            for (((block, ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16))
            {
                let scales = &block[192..208];
                let mut sums = [_mm256_setzero_si256(); GROUP];
                for h in 0..2 {
                    let ql0 = load_u8(&block[64 * h..]);
                    let ql1 = load_u8(&block[64 * h + 32..]);
                    let qh = load_u8(&block[128 + 32 * h..]);
                    // Values 128h + 32k .. +32, as in ggml's dequantize_row_q6_K.
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(ql0, m4), q6_high(qh)),
                        _mm256_or_si256(_mm256_and_si256(ql1, m4), q6_high(_mm256_srli_epi16::<2>(qh))),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                            q6_high(_mm256_srli_epi16::<4>(qh)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                            q6_high(_mm256_srli_epi16::<6>(qh)),
                        ),
                    ];
                    for (k, &q) in q.iter().enumerate() {
                        let s = 8 * h + 2 * k;
                        let scale = _mm256_setr_m128i(
                            _mm_set1_epi16(i16::from(scales[s] as i8)),
                            _mm_set1_epi16(i16::from(scales[s + 1] as i8)),
                        );
                        for (sum, y) in sums.iter_mut().zip(ys.chunks_exact(256)).take(T) {
                            let y = load_i8(&y[128 * h + 32 * k..128 * h + 32 * k + 32]);
                            *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), scale));
                        }
                    }
                }
                let scales16 = _mm256_cvtepi8_epi16(load128_u8(scales));
                for (sum, bsums) in sums.iter_mut().zip(bsums.chunks_exact(16)).take(T) {
                    let offset = _mm256_madd_epi16(scales16, load_i16(bsums));
                    *sum = _mm256_sub_epi32(*sum, _mm256_slli_epi32::<5>(offset));
                }
                let dd = _mm_mul_ps(f16_x4(block, 208), load_f32x4(dx));
                acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4(sums))));
            }
            store_f32x4(acc)
        }
    };
}

/// The AVX2 path.
mod avx2 {
    use super::*;

    /// Eight i32 lanes, each the sum of four u8×i8 products (`vpmaddubsw` + `vpmaddwd`).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn dot(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    block32_kernels!("avx2,f16c");
    k_kernels!("avx2,f16c");
}

/// The AVX-512 path: 256-bit VNNI dot products for the 32-value blocks, 512-bit registers
/// (64 values per instruction, `vpdpwssd` applying the sub-block scales) for the K-quants.
mod avx512 {
    use super::*;

    /// Eight i32 lanes, each the sum of four u8×i8 products (`vpdpbusd`).
    #[inline]
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    block32_kernels!("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

    /// Loads 64 bytes from the start of `s`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512_u8(s: &[u8]) -> __m512i {
        let a: &[u8; 64] = s[..64].try_into().expect("64 bytes");
        // SAFETY: `a` is 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
    }

    /// Loads 64 signed bytes from the start of `s`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512_i8(s: &[i8]) -> __m512i {
        let a: &[i8; 64] = s[..64].try_into().expect("64 bytes");
        // SAFETY: `a` is 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
    }

    /// The 32 i16 `values`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn i16x32(values: [i16; 32]) -> __m512i {
        // SAFETY: `values` is 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
    }

    /// The 32 i16 lanes `[a; 16]` then `[b; 16]` (two sub-blocks' scales, or shift counts).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn halves_i16(a: i16, b: i16) -> __m512i {
        _mm512_inserti64x4::<1>(_mm512_set1_epi16(a), _mm256_set1_epi16(b))
    }

    /// The sum of the two 256-bit halves of `v`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fold(v: __m512i) -> __m256i {
        _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
    }

    /// `[Σ v[0], …, Σ v[7]]` over the sixteen i32 lanes of each vector, by transposing adds
    /// (integer sums are exact, so the order is free); replaces eight folds and an [`hsum8`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn hsum8x16(v: [__m512i; 8]) -> __m256i {
        // Per 128-bit lane: [a, b, a, b] partials of v[2k], v[2k + 1].
        let p: [__m512i; 4] = std::array::from_fn(|k| {
            let (a, b) = (v[2 * k], v[2 * k + 1]);
            _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
        });
        // Per 128-bit lane: partials of v[0..4] (`q0`) and v[4..8] (`q1`).
        let q0 = _mm512_add_epi32(_mm512_unpacklo_epi64(p[0], p[1]), _mm512_unpackhi_epi64(p[0], p[1]));
        let q1 = _mm512_add_epi32(_mm512_unpacklo_epi64(p[2], p[3]), _mm512_unpackhi_epi64(p[2], p[3]));
        // [q0.0 + q0.1, q0.2 + q0.3, q1.0 + q1.1, q1.2 + q1.3] (128-bit lanes).
        let s = _mm512_add_epi32(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(q0, q1),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(q0, q1),
        );
        let t = _mm512_add_epi32(s, _mm512_shuffle_i64x2::<0b10_11_00_01>(s, s));
        _mm512_castsi512_si256(_mm512_shuffle_i64x2::<0b00_00_10_00>(t, t))
    }

    /// Q4_K × Q8_K for `T` tokens, 64 values per instruction: same integers and f32 steps as
    /// the 256-bit kernel.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn q4k<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
        let mask = _mm512_set1_epi8(0x0f);
        // Low half: the low nibbles (values 64c..64c+32), high half: the high nibbles.
        let nibble_shift = halves_i16(0, 4);
        // Lane i of `spread[c]` picks scale 2c + i/16: the sub-block (32 values, 16 i16 lanes
        // after vpmaddubsw) of value 2i of the c-th run of 64 values.
        let spread: [__m512i; 4] = std::array::from_fn(|c| i16x32(std::array::from_fn(|i| (2 * c + i / 16) as i16)));
        let mut acc = _mm_setzero_ps();
        let blocks = w.chunks_exact(144).zip(g.qs.chunks_exact(GROUP * 256));
        for (((block, ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16)) {
            let scales_mins = q4k_scales_mins_x86(block);
            let sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scales_mins));
            let mut sums = [_mm512_setzero_si512(); GROUP];
            for ((qs, idx), c) in block[16..144].chunks_exact(32).zip(spread).zip(0..) {
                let raw = _mm512_broadcast_i64x4(load_u8(qs));
                let q = _mm512_and_si512(_mm512_srlv_epi16(raw, nibble_shift), mask);
                let scale = _mm512_permutexvar_epi16(idx, sc);
                for (sum, y) in sums.iter_mut().zip(ys.chunks_exact(256)).take(T) {
                    let y = load512_i8(&y[64 * c..64 * c + 64]);
                    *sum = _mm512_dpwssd_epi32(*sum, _mm512_maddubs_epi16(q, y), scale);
                }
            }
            let mins = q4k_mins_x16(scales_mins);
            let mut folded = [_mm256_setzero_si256(); GROUP];
            let mut msums = [_mm256_setzero_si256(); GROUP];
            for (((f, msum), sum), bsums) in
                folded.iter_mut().zip(&mut msums).zip(sums).zip(bsums.chunks_exact(16)).take(T)
            {
                *f = fold(sum);
                *msum = _mm256_madd_epi16(mins, load_i16(bsums));
            }
            let dx = load_f32x4(dx);
            let dd = _mm_mul_ps(f16_x4(block, 0), dx);
            let dm = _mm_mul_ps(f16_x4(block, 2), dx);
            let block_sum = _mm_sub_ps(
                _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4(folded))),
                _mm_mul_ps(dm, _mm_cvtepi32_ps(hsum4(msums))),
            );
            acc = _mm_add_ps(acc, block_sum);
        }
        store_f32x4(acc)
    }

    /// [`q4k`] for two rows at once: lanes `4r + t` of the f32 vectors are row `r`, token `t`,
    /// with the same f32 steps as [`q4k`].
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn q4k_pair<const T: usize>(w: [&[u8]; 2], g: Group<'_>) -> [[f32; GROUP]; 2] {
        let mask = _mm512_set1_epi8(0x0f);
        let nibble_shift = halves_i16(0, 4);
        let spread: [__m512i; 4] = std::array::from_fn(|c| i16x32(std::array::from_fn(|i| (2 * c + i / 16) as i16)));
        let mut acc = _mm256_setzero_ps();
        let blocks = w[0].chunks_exact(144).zip(w[1].chunks_exact(144)).zip(g.qs.chunks_exact(GROUP * 256));
        for ((((b0, b1), ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16)) {
            let blocks = [b0, b1];
            let mut scales_mins = [_mm_setzero_si128(); 2];
            let mut sc = [_mm512_setzero_si512(); 2];
            for r in 0..2 {
                scales_mins[r] = q4k_scales_mins_x86(blocks[r]);
                sc[r] = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scales_mins[r]));
            }
            let mut sums = [[_mm512_setzero_si512(); GROUP]; 2];
            for (c, &idx) in spread.iter().enumerate() {
                let mut q = [_mm512_setzero_si512(); 2];
                let mut scale = [_mm512_setzero_si512(); 2];
                for r in 0..2 {
                    let raw = _mm512_broadcast_i64x4(load_u8(&blocks[r][16 + 32 * c..]));
                    q[r] = _mm512_and_si512(_mm512_srlv_epi16(raw, nibble_shift), mask);
                    scale[r] = _mm512_permutexvar_epi16(idx, sc[r]);
                }
                for t in 0..T {
                    let y = load512_i8(&ys[256 * t + 64 * c..]);
                    for r in 0..2 {
                        sums[r][t] = _mm512_dpwssd_epi32(sums[r][t], _mm512_maddubs_epi16(q[r], y), scale[r]);
                    }
                }
            }
            let mut whole = [_mm512_setzero_si512(); 8];
            let mut msums = [_mm256_setzero_si256(); 8];
            for t in 0..T {
                let bs = load_i16(&bsums[16 * t..]);
                for r in 0..2 {
                    whole[4 * r + t] = sums[r][t];
                    msums[4 * r + t] = _mm256_madd_epi16(q4k_mins_x16(scales_mins[r]), bs);
                }
            }
            let dx = f32x4_twice(dx);
            let dd = _mm256_mul_ps(f16_pair(blocks, 0), dx);
            let dm = _mm256_mul_ps(f16_pair(blocks, 2), dx);
            let block_sum = _mm256_sub_ps(
                _mm256_mul_ps(dd, _mm256_cvtepi32_ps(hsum8x16(whole))),
                _mm256_mul_ps(dm, _mm256_cvtepi32_ps(hsum8(msums))),
            );
            acc = _mm256_add_ps(acc, block_sum);
        }
        store_f32x4x2(acc)
    }

    /// [`q6k`] for two rows at once: lanes `4r + t` of the f32 vectors are row `r`, token `t`,
    /// with the same f32 steps as [`q6k`].
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn q6k_pair<const T: usize>(w: [&[u8]; 2], g: Group<'_>) -> [[f32; GROUP]; 2] {
        let (m4, m2) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x03));
        let qh_shift = halves_i16(0, 2);
        let spread: [__m512i; 4] = std::array::from_fn(|k| i16x32(std::array::from_fn(|i| (4 * k + i / 8) as i16)));
        let mut acc = _mm256_setzero_ps();
        let blocks = w[0].chunks_exact(210).zip(w[1].chunks_exact(210)).zip(g.qs.chunks_exact(GROUP * 256));
        for ((((b0, b1), ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16)) {
            let blocks = [b0, b1];
            let mut scales16 = [_mm256_setzero_si256(); 2];
            let mut scales = [[_mm512_setzero_si512(); 4]; 2];
            for r in 0..2 {
                scales16[r] = _mm256_cvtepi8_epi16(load128_u8(&blocks[r][192..208]));
                for k in 0..4 {
                    scales[r][k] = _mm512_permutexvar_epi16(spread[k], _mm512_castsi256_si512(scales16[r]));
                }
            }
            let mut sums = [[_mm512_setzero_si512(); GROUP]; 2];
            for h in 0..2 {
                let mut q = [[_mm512_setzero_si512(); 2]; 2];
                for r in 0..2 {
                    let ql = load512_u8(&blocks[r][64 * h..64 * h + 64]);
                    let qh = _mm512_srlv_epi16(_mm512_broadcast_i64x4(load_u8(&blocks[r][128 + 32 * h..])), qh_shift);
                    let high0 = _mm512_slli_epi16::<4>(_mm512_and_si512(qh, m2));
                    let high1 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<4>(qh), m2));
                    q[r][0] = _mm512_or_si512(_mm512_and_si512(ql, m4), high0);
                    q[r][1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4), high1);
                }
                for t in 0..T {
                    let y = &ys[256 * t + 128 * h..];
                    let (y0, y1) = (load512_i8(y), load512_i8(&y[64..]));
                    for r in 0..2 {
                        let s = _mm512_dpwssd_epi32(sums[r][t], _mm512_maddubs_epi16(q[r][0], y0), scales[r][2 * h]);
                        sums[r][t] = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q[r][1], y1), scales[r][2 * h + 1]);
                    }
                }
            }
            let mut whole = [_mm512_setzero_si512(); 8];
            for t in 0..T {
                let bs = load_i16(&bsums[16 * t..]);
                for r in 0..2 {
                    let offset = _mm512_zextsi256_si512(_mm256_slli_epi32::<5>(_mm256_madd_epi16(scales16[r], bs)));
                    whole[4 * r + t] = _mm512_sub_epi32(sums[r][t], offset);
                }
            }
            let dd = _mm256_mul_ps(f16_pair(blocks, 208), f32x4_twice(dx));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(hsum8x16(whole))));
        }
        store_f32x4x2(acc)
    }

    /// Q6_K × Q8_K for `T` tokens, 64 values per instruction: same integers and f32 steps as
    /// the 256-bit kernel.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn q6k<const T: usize>(w: &[u8], g: Group<'_>) -> [f32; GROUP] {
        let (m4, m2) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x03));
        // Low half: qh's bits for values 0..32 of a half, high half: for values 32..64.
        let qh_shift = halves_i16(0, 2);
        // Lane i of `spread[k]` picks scale 4k + i/8: the sub-block (16 values, 8 i16 lanes
        // after vpmaddubsw) of value 2i of the k-th run of 64 values.
        let spread: [__m512i; 4] = std::array::from_fn(|k| i16x32(std::array::from_fn(|i| (4 * k + i / 8) as i16)));
        let mut acc = _mm_setzero_ps();
        let blocks = w.chunks_exact(210).zip(g.qs.chunks_exact(GROUP * 256));
        for (((block, ys), dx), bsums) in blocks.zip(g.d.chunks_exact(GROUP)).zip(g.bsums.chunks_exact(GROUP * 16)) {
            let scales16 = _mm256_cvtepi8_epi16(load128_u8(&block[192..208]));
            let scales = spread.map(|idx| _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(scales16)));
            let mut sums = [_mm512_setzero_si512(); GROUP];
            for h in 0..2 {
                let ql = load512_u8(&block[64 * h..64 * h + 64]);
                let qh = _mm512_srlv_epi16(_mm512_broadcast_i64x4(load_u8(&block[128 + 32 * h..])), qh_shift);
                let high = |bits: __m512i| _mm512_slli_epi16::<4>(_mm512_and_si512(bits, m2));
                // Values 128h .. 128h+64 and 128h+64 .. 128h+128, as in dequantize_row_q6_K.
                let first = _mm512_or_si512(_mm512_and_si512(ql, m4), high(qh));
                let second =
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4), high(_mm512_srli_epi16::<4>(qh)));
                for (sum, y) in sums.iter_mut().zip(ys.chunks_exact(256)).take(T) {
                    let (y0, y1) = (load512_i8(&y[128 * h..]), load512_i8(&y[128 * h + 64..]));
                    *sum = _mm512_dpwssd_epi32(*sum, _mm512_maddubs_epi16(first, y0), scales[2 * h]);
                    *sum = _mm512_dpwssd_epi32(*sum, _mm512_maddubs_epi16(second, y1), scales[2 * h + 1]);
                }
            }
            let mut folded = [_mm256_setzero_si256(); GROUP];
            for ((f, sum), bsums) in folded.iter_mut().zip(sums).zip(bsums.chunks_exact(16)).take(T) {
                let offset = _mm256_madd_epi16(scales16, load_i16(bsums));
                *f = _mm256_sub_epi32(fold(sum), _mm256_slli_epi32::<5>(offset));
            }
            let dd = _mm_mul_ps(f16_x4(block, 208), load_f32x4(dx));
            acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4(folded))));
        }
        store_f32x4(acc)
    }
}
