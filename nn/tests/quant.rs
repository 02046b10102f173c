//! Tests of `nn::quant` against independent reference code: the GGUF layouts decoded value by
//! value, f32 dot products, and every kernel path against the portable one, bit for bit.

use nn::quant::{BlockFormat, Isa, QMatrix, QuantError, dequantize_row, f32_to_f16};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Roughly normal (sum of uniforms), occasionally with a large outlier.
    fn activation(&mut self) -> f32 {
        let v = (0..4).map(|_| self.unit()).sum::<f32>();
        if self.byte() == 0 { v * 30.0 } else { v }
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f32_to_f16(v).to_le_bytes()
}

/// The finite f16 at `at`, decoded arithmetically (independently of the crate's bit
/// manipulation): `±2^(e−15)·(1 + m/1024)`, or `±2^−14·m/1024` for subnormals.
fn f16_at(b: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes([b[at], b[at + 1]]);
    let (e, m) = (i32::from((h >> 10) & 31), f64::from(h & 1023));
    assert!(e < 31, "test blocks hold finite scales");
    let magnitude = if e == 0 { 2f64.powi(-14) * m / 1024.0 } else { 2f64.powi(e - 15) * (1.0 + m / 1024.0) };
    (if h & 0x8000 != 0 { -magnitude } else { magnitude }) as f32
}

/// Offsets of a format's f16 fields in its block.
fn f16_fields(format: BlockFormat) -> &'static [usize] {
    match format {
        BlockFormat::Q4_0 | BlockFormat::Q8_0 => &[0],
        BlockFormat::Q4_1 | BlockFormat::Q4K => &[0, 2],
        BlockFormat::Q6K => &[208],
    }
}

/// A random block with finite scales of magnitude ≤ `scale`.
fn random_block(rng: &mut Rng, format: BlockFormat, scale: f32) -> Vec<u8> {
    let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| rng.byte()).collect();
    for &at in f16_fields(format) {
        block[at..at + 2].copy_from_slice(&f16_bytes(rng.unit() * scale));
    }
    block
}

fn random_matrix(rng: &mut Rng, format: BlockFormat, rows: usize, cols: usize) -> QMatrix {
    let blocks = rows * cols / format.block_len();
    let bytes = (0..blocks).flat_map(|_| random_block(rng, format, 0.05)).collect();
    QMatrix::from_bytes(format, rows, cols, bytes).unwrap()
}

/// The value `i` of a block, decoded straight from the layout ggml documents, one value at
/// a time (no shared code with the crate).
fn reference_value(format: BlockFormat, b: &[u8], i: usize) -> f32 {
    let nibble = |qs: &[u8], i: usize| if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 };
    match format {
        BlockFormat::Q4_0 => (f32::from(nibble(&b[2..18], i)) - 8.0) * f16_at(b, 0),
        BlockFormat::Q4_1 => f32::from(nibble(&b[4..20], i)) * f16_at(b, 0) + f16_at(b, 2),
        BlockFormat::Q8_0 => f32::from(b[2 + i] as i8) * f16_at(b, 0),
        BlockFormat::Q4K => {
            // 8 sub-blocks of 32; sub-block j takes the low (even j) or high (odd j) nibbles
            // of bytes 32·(j/2).. of qs.
            let j = i / 32;
            let s = &b[4..16];
            let (sc, mn) = if j < 4 {
                (s[j] % 64, s[j + 4] % 64)
            } else {
                (s[j + 4] % 16 + (s[j - 4] / 64) * 16, s[j + 4] / 16 + (s[j] / 64) * 16)
            };
            let byte = b[16 + 32 * (j / 2) + i % 32];
            let q = if j.is_multiple_of(2) { byte % 16 } else { byte / 16 };
            (f16_at(b, 0) * f32::from(sc)) * f32::from(q) - f16_at(b, 2) * f32::from(mn)
        }
        BlockFormat::Q6K => {
            // Halves of 128; within one, quarter k of 32 values: low 4 bits from ql (bytes
            // 0..32 or 32..64, low or high nibble), high 2 bits from qh bits 2k..2k+2.
            let (h, p) = (i / 128, i % 128);
            let (k, l) = (p / 32, p % 32);
            let ql = b[64 * h + 32 * (k % 2) + l];
            let low = if k < 2 { ql % 16 } else { ql / 16 };
            let high = (b[128 + 32 * h + l] >> (2 * k)) % 4;
            let q = i32::from(low) + 16 * i32::from(high) - 32;
            (f16_at(b, 208) * f32::from(b[192 + i / 16] as i8)) * q as f32
        }
    }
}

fn assert_dequantizes_like_reference(format: BlockFormat, block: &[u8]) {
    let mut out = vec![0.0; format.block_len()];
    dequantize_row(format, block, &mut out);
    for (i, &v) in out.iter().enumerate() {
        let want = reference_value(format, block, i);
        assert_eq!(v.to_bits(), want.to_bits(), "{format:?} value {i}: {v} vs {want}");
    }
}

#[test]
fn dequantization_matches_the_reference_layouts() {
    let mut rng = Rng(1);
    for format in BlockFormat::ALL {
        for _ in 0..200 {
            assert_dequantizes_like_reference(format, &random_block(&mut rng, format, 4.0));
        }
        // Edge cases: zero scales, every bit set, every bit clear, extreme scales.
        let mut all_ones = vec![0xff; format.block_bytes()];
        for &at in f16_fields(format) {
            all_ones[at..at + 2].copy_from_slice(&f16_bytes(-1.5));
        }
        assert_dequantizes_like_reference(format, &all_ones);
        let mut zero_scales = random_block(&mut rng, format, 1.0);
        for &at in f16_fields(format) {
            zero_scales[at..at + 2].copy_from_slice(&f16_bytes(0.0));
        }
        assert_dequantizes_like_reference(format, &zero_scales);
        let mut huge = random_block(&mut rng, format, 1.0);
        for &at in f16_fields(format) {
            huge[at..at + 2].copy_from_slice(&f16_bytes(65504.0));
        }
        assert_dequantizes_like_reference(format, &huge);
        assert_dequantizes_like_reference(format, &vec![0; format.block_bytes()]);
    }
    // Q6_K with the most negative sub-block scales.
    let mut block = random_block(&mut rng, BlockFormat::Q6K, 1.0);
    block[192..208].fill(0x80);
    assert_dequantizes_like_reference(BlockFormat::Q6K, &block);
}

#[test]
fn ggml_ids_and_sizes() {
    let table = [(BlockFormat::Q4_0, 2, 32, 18), (BlockFormat::Q4_1, 3, 32, 20), (BlockFormat::Q8_0, 8, 32, 34)];
    let k = [(BlockFormat::Q4K, 12, 256, 144), (BlockFormat::Q6K, 14, 256, 210)];
    for (format, id, len, bytes) in table.into_iter().chain(k) {
        assert_eq!(format.ggml_type(), id);
        assert_eq!(BlockFormat::from_ggml_type(id), Some(format));
        assert_eq!((format.block_len(), format.block_bytes()), (len, bytes));
    }
    assert_eq!(BlockFormat::from_ggml_type(1), None);
}

/// Checks `out` against f64 dot products of the dequantised weights with `x`, to within
/// `tolerance` × Σ|w·x|.
fn assert_close_to_f64(w: &QMatrix, x: &[f32], m: usize, tolerance: f64) {
    let (rows, cols) = (w.rows(), w.cols());
    let wf = w.dequantize();
    let mut out = vec![0.0; m * rows];
    w.matmul(x, m, &mut out);
    for t in 0..m {
        for r in 0..rows {
            let pairs = (0..cols).map(|c| f64::from(wf[r * cols + c]) * f64::from(x[t * cols + c]));
            let (exact, magnitude) = pairs.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
            let got = out[t * rows + r];
            let err = (f64::from(got) - exact).abs();
            assert!(err <= tolerance * magnitude, "{:?} [{t},{r}]: {got} vs {exact} (Σ|w·x| {magnitude})", w.format());
        }
    }
}

#[test]
fn quantized_matmul_is_close_to_f32() {
    let mut rng = Rng(2);
    let (rows, cols, m) = (9, 1024, 5);
    for format in BlockFormat::ALL {
        let w = random_matrix(&mut rng, format, rows, cols);
        // Roughly normal activations: int8 rounding costs well under 1% of Σ|w·x|.
        let x: Vec<f32> = (0..m * cols).map(|_| (0..4).map(|_| rng.unit()).sum()).collect();
        assert_close_to_f64(&w, &x, m, 0.01);
    }
}

#[test]
fn exactly_representable_activations_give_f32_accurate_results() {
    // Integers in [-20, 20] with a 127 leading every block of 32 are quantised without
    // error by Q8_0, Q8_1 and Q8_K alike (scale ±1), so only f32 rounding remains: this
    // checks the kernels' algebra (offsets, mins, scales) to 1e-5.
    let mut rng = Rng(7);
    let (rows, cols, m) = (6, 512, 4);
    let x: Vec<f32> =
        (0..m * cols).map(|i| if i % 32 == 0 { 127.0 } else { f32::from(rng.byte() % 41) - 20.0 }).collect();
    for format in BlockFormat::ALL {
        assert_close_to_f64(&random_matrix(&mut rng, format, rows, cols), &x, m, 1e-5);
    }
}

/// Equal bits, or both NaN (NaN payloads are not part of the contract).
fn assert_same(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{what}: [{i}] {x} vs {y}");
    }
}

/// Activation sets that stress the quantisers and the kernels' integer ranges.
fn activation_cases(rng: &mut Rng, len: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut single = vec![0.0; len];
    single[len / 3] = -2.5;
    vec![
        ("random", (0..len).map(|_| rng.activation()).collect()),
        ("huge", (0..len).map(|_| rng.unit() * 1e30).collect()),
        ("tiny", (0..len).map(|_| rng.unit() * 1e-30).collect()),
        ("subnormal", (0..len).map(|_| rng.unit() * 1e-39).collect()),
        ("zeros", vec![0.0; len]),
        ("single", single),
        ("saturating", (0..len).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect()),
    ]
}

#[test]
fn every_path_is_bit_identical_to_portable() {
    let mut rng = Rng(3);
    let paths: Vec<Isa> = Isa::available().into_iter().filter(|&isa| isa != Isa::Portable).collect();
    for format in BlockFormat::ALL {
        for (blocks, rows) in [(1, 3), (3, 2), (6, 5)] {
            let cols = blocks * format.block_len();
            let mut w = random_matrix(&mut rng, format, rows, cols);
            if rng.byte() < 64 {
                // Weights with every quantised bit set (max nibbles, −1 bytes, 63 scales).
                let mut bytes = w.as_bytes().to_vec();
                bytes
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| !f16_fields(format).contains(&(i % format.block_bytes())))
                    .for_each(|(_, b)| *b = 0xff);
                w = QMatrix::from_bytes(format, rows, cols, bytes).unwrap();
            }
            for m in [1, 3, 4, 5, 17, 64] {
                for (name, x) in activation_cases(&mut rng, m * cols) {
                    let mut want = vec![0.0; m * rows];
                    w.matmul_with(Isa::Portable, &x, m, &mut want).unwrap();
                    for &isa in &paths {
                        let mut got = vec![f32::NAN; m * rows];
                        w.matmul_with(isa, &x, m, &mut got).unwrap();
                        assert_same(&got, &want, &format!("{isa:?} {format:?} {rows}×{cols} m={m} {name}"));
                    }
                }
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_threads_or_batch() {
    let mut rng = Rng(4);
    for format in BlockFormat::ALL {
        let (rows, cols, m) = (300, 2 * 256, 17);
        let w = random_matrix(&mut rng, format, rows, cols);
        let x: Vec<f32> = (0..m * cols).map(|_| rng.activation()).collect();
        let mut want = vec![0.0; m * rows];
        w.matmul(&x, m, &mut want);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut got = vec![0.0; m * rows];
            pool.install(|| w.matmul(&x, m, &mut got));
            assert_same(&got, &want, &format!("{format:?} {threads} threads"));
        }
        for t in 0..m {
            let mut alone = vec![0.0; rows];
            w.matmul(&x[t * cols..(t + 1) * cols], 1, &mut alone);
            assert_same(&alone, &want[t * rows..(t + 1) * rows], &format!("{format:?} token {t} alone"));
        }
    }
}

#[test]
fn shared_activations_give_the_same_result() {
    let mut rng = Rng(5);
    let (rows, cols, m) = (7, 256, 6);
    let w = random_matrix(&mut rng, BlockFormat::Q4K, rows, cols);
    let v = random_matrix(&mut rng, BlockFormat::Q6K, rows, cols);
    let x: Vec<f32> = (0..m * cols).map(|_| rng.activation()).collect();
    let acts = w.quantize_activations(&x, m);
    assert_eq!(acts.format(), v.act_format());
    for mat in [&w, &v] {
        let (mut direct, mut shared) = (vec![0.0; m * rows], vec![0.0; m * rows]);
        mat.matmul(&x, m, &mut direct);
        mat.matmul_quantized(&acts, &mut shared);
        assert_same(&shared, &direct, "shared activations");
    }
}

#[test]
fn dequantize_rows_picks_rows() {
    let mut rng = Rng(6);
    let w = random_matrix(&mut rng, BlockFormat::Q4_1, 5, 64);
    let all = w.dequantize();
    let mut out = vec![0.0; 2 * 64];
    w.dequantize_rows(&[3, 1], &mut out);
    assert_eq!(&out[..64], &all[3 * 64..4 * 64]);
    assert_eq!(&out[64..], &all[64..2 * 64]);
}

#[test]
fn constructor_rejects_bad_shapes() {
    let err = QMatrix::from_bytes(BlockFormat::Q4_0, 2, 32, vec![0; 35]).unwrap_err();
    assert_eq!(
        err,
        QuantError::WrongByteCount { format: BlockFormat::Q4_0, rows: 2, cols: 32, expected: 36, actual: 35 }
    );
    assert!(err.to_string().contains("takes 36 bytes"), "{err}");
    let err = QMatrix::from_bytes(BlockFormat::Q4K, 1, 300, vec![0; 144]).unwrap_err();
    assert_eq!(err, QuantError::ColsNotBlockMultiple { format: BlockFormat::Q4K, cols: 300 });
    assert!(err.to_string().contains("not a multiple"), "{err}");
    assert!(QMatrix::from_bytes(BlockFormat::Q6K, 2, 256, vec![0; 420]).is_ok());
}

#[test]
fn unavailable_paths_are_refused() {
    let w = QMatrix::from_bytes(BlockFormat::Q8_0, 1, 32, vec![0; 34]).unwrap();
    for isa in [Isa::Avx2, Isa::Avx512Vnni] {
        let result = w.matmul_with(isa, &[0.0; 32], 1, &mut [0.0]);
        if isa.is_available() {
            assert!(result.is_ok());
        } else {
            assert_eq!(result, Err(QuantError::IsaUnavailable(isa)));
        }
    }
    assert_eq!(Isa::available()[0], Isa::Portable);
    assert!(Isa::best().is_available());
}

#[test]
#[should_panic(expected = "Q4_1 weights need Q8_1 activations")]
fn activations_of_another_format_are_rejected() {
    let w = QMatrix::from_bytes(BlockFormat::Q4_1, 1, 32, vec![0; 20]).unwrap();
    let q8_0 = QMatrix::from_bytes(BlockFormat::Q8_0, 1, 32, vec![0; 34]).unwrap();
    w.matmul_quantized(&q8_0.quantize_activations(&[1.0; 32], 1), &mut [0.0]);
}
