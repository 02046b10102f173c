//! Throughput of the quantised matmul per kernel path, on the linear-layer shapes of
//! Qwen2.5-1.5B, against an f32 reference (weights dequantised once, then a plain
//! row-parallel f32 matmul).
//!
//! `cargo run -p engine-nn --release --example qbench -- [threads]` prints GOP/s
//! (2·m·rows·cols per second, median of several runs; activation quantisation included).
//! Runs that would take more than about 2 GOP on the portable or f32 paths are skipped.
//! `QBENCH_FORMATS=Q4K,Q6K` limits the formats, `QBENCH_FAST=1` measures only the best path.

use std::time::{Duration, Instant};

use nn::quant::{BlockFormat, Isa, QMatrix, f32_to_f16};
use rayon::prelude::*;

/// (rows, cols) of Qwen2.5-1.5B's projections: q/o, k/v, gate/up, down.
const SHAPES: [(usize, usize); 4] = [(1536, 1536), (256, 1536), (8960, 1536), (1536, 8960)];
const TOKENS: [usize; 4] = [1, 16, 64, 256];
/// Work above which the slow paths are not measured.
const SLOW_LIMIT: f64 = 2e9;

/// A deterministic pseudo-random stream (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random blocks with small finite f16 scales at the format's scale offsets.
fn random_matrix(rng: &mut Rng, format: BlockFormat, rows: usize, cols: usize) -> QMatrix {
    let mut bytes: Vec<u8> = (0..rows * format.row_bytes(cols)).map(|_| rng.next() as u8).collect();
    let scales: &[usize] = match format {
        BlockFormat::Q4_0 | BlockFormat::Q8_0 => &[0],
        BlockFormat::Q4_1 | BlockFormat::Q4K => &[0, 2],
        BlockFormat::Q6K => &[208],
    };
    for block in bytes.chunks_exact_mut(format.block_bytes()) {
        for &at in scales {
            block[at..at + 2].copy_from_slice(&f32_to_f16(rng.unit() * 0.01).to_le_bytes());
        }
    }
    QMatrix::from_bytes(format, rows, cols, bytes).expect("sizes match")
}

/// `out = x · wᵀ` in f32, rows split over rayon, eight partial sums per dot.
fn f32_matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize, out: &mut [f32]) {
    let mut by_row = vec![0.0f32; rows * m];
    by_row.par_chunks_mut(m).enumerate().for_each(|(r, res)| {
        let wr = &w[r * cols..(r + 1) * cols];
        for (t, v) in res.iter_mut().enumerate() {
            let mut acc = [0.0f32; 8];
            for (a, b) in wr.chunks_exact(8).zip(x[t * cols..(t + 1) * cols].chunks_exact(8)) {
                for k in 0..8 {
                    acc[k] += a[k] * b[k];
                }
            }
            *v = acc.iter().sum();
        }
    });
    for (r, res) in by_row.chunks_exact(m).enumerate() {
        for (t, &v) in res.iter().enumerate() {
            out[t * rows + r] = v;
        }
    }
}

/// Median seconds of `f` over up to 7 runs (at least 2, fewer past ~1 s), after a warm-up.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let (mut times, start) = (Vec::new(), Instant::now());
    while times.len() < 2 || (times.len() < 7 && start.elapsed() < Duration::from_secs(1)) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let threads = std::env::args().nth(1).map_or(0, |s| s.parse().expect("threads: a number"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let fast = std::env::var("QBENCH_FAST").is_ok_and(|v| v == "1");
    let formats: Vec<BlockFormat> = match std::env::var("QBENCH_FORMATS") {
        Ok(list) => BlockFormat::ALL.into_iter().filter(|f| list.split(',').any(|n| n == format!("{f:?}"))).collect(),
        Err(_) => BlockFormat::ALL.to_vec(),
    };
    let paths = if fast { vec![Isa::best()] } else { Isa::available() };
    println!(
        "threads {}, paths {paths:?}, best {:?}; GOP/s = 2·m·rows·cols / s",
        pool.current_num_threads(),
        Isa::best()
    );
    let names: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    println!(
        "{:<6} {:>11} {:>4} {:>10} {}",
        "format",
        "rows×cols",
        "m",
        "f32",
        names.iter().map(|n| format!("{n:>11}")).collect::<String>()
    );
    let mut rng = Rng(0x5eed);
    pool.install(|| {
        let w = random_matrix(&mut rng, BlockFormat::Q4K, 256, 1536);
        for m in TOKENS {
            let x: Vec<f32> = (0..m * 1536).map(|_| rng.unit()).collect();
            let secs = median_secs(|| drop(w.quantize_activations(&x, m)));
            println!("Q8_K quantisation 1536 cols, m {m:>3}: {:.1} µs", secs * 1e6);
        }
        for format in formats {
            for (rows, cols) in SHAPES {
                let w = random_matrix(&mut rng, format, rows, cols);
                let wf = w.dequantize();
                for m in TOKENS {
                    let x: Vec<f32> = (0..m * cols).map(|_| rng.unit()).collect();
                    let mut out = vec![0.0; m * rows];
                    let ops = 2.0 * (m * rows * cols) as f64;
                    let gops = |secs: f64| format!("{:.1}", ops / secs / 1e9);
                    let slow = fast || ops > SLOW_LIMIT;
                    let reference = if slow {
                        "-".to_string()
                    } else {
                        gops(median_secs(|| f32_matmul(&wf, rows, cols, &x, m, &mut out)))
                    };
                    let mut row =
                        format!("{:<6} {:>11} {m:>4} {reference:>10}", format!("{format:?}"), format!("{rows}×{cols}"));
                    for &isa in &paths {
                        let cell = if slow && isa == Isa::Portable {
                            "-".to_string()
                        } else {
                            gops(median_secs(|| w.matmul_with(isa, &x, m, &mut out).expect("available path")))
                        };
                        row += &format!(" {cell:>10}");
                    }
                    println!("{row}");
                }
            }
        }
    });
}
