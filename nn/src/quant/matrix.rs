//! [`QMatrix`]: a quantised weight matrix and its parallel `x · Wᵀ`.
//!
//! Work is split over rayon by tiles of weight rows, each writing its columns of `out` in
//! place. Within a tile, each activation group (four tokens) is run against the rows two at
//! a time, with a kernel that unpacks every weight block once and applies it to the four
//! tokens (and, where the path has a two-row kernel, shares each activation load between
//! the two rows). A result depends only on its weight row and its token,
//! never on the tile, the group it shared or the thread: see `portable.rs` for the order.

use rayon::prelude::*;

use super::act::{ActFormat, GROUP, Group, QuantizedActivations};
use super::format::{BlockFormat, dequantize_row};
use super::{Isa, QuantError, portable};

/// A `rows × cols` weight matrix (`rows` outputs, `cols` inputs) in one GGUF block format,
/// holding the GGUF bytes as they are (row after row, each a run of blocks).
#[derive(Clone, Debug)]
pub struct QMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

impl QMatrix {
    /// Wraps the raw GGUF tensor data of a `rows × cols` matrix (GGUF dims `[cols, rows]`).
    pub fn from_bytes(format: BlockFormat, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self, QuantError> {
        if !cols.is_multiple_of(format.block_len()) {
            return Err(QuantError::ColsNotBlockMultiple { format, cols });
        }
        let expected = rows * format.row_bytes(cols);
        if bytes.len() != expected {
            return Err(QuantError::WrongByteCount { format, rows, cols, expected, actual: bytes.len() });
        }
        Ok(Self { format, rows, cols, bytes })
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The GGUF bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of row `r`.
    pub fn row_bytes(&self, r: usize) -> &[u8] {
        let size = self.format.row_bytes(self.cols);
        &self.bytes[r * size..(r + 1) * size]
    }

    /// Dequantises rows `ids` into `out` (`ids.len() × cols`), e.g. for embedding lookups.
    ///
    /// # Panics
    /// If an id is out of range or `out` has the wrong length.
    pub fn dequantize_rows(&self, ids: &[usize], out: &mut [f32]) {
        assert_eq!(out.len(), ids.len() * self.cols, "output is not {} × {}", ids.len(), self.cols);
        for (&id, out) in ids.iter().zip(out.chunks_exact_mut(self.cols.max(1))) {
            assert!(id < self.rows, "row {id} out of {}", self.rows);
            dequantize_row(self.format, self.row_bytes(id), out);
        }
    }

    /// The whole matrix as f32 (`rows × cols`).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        self.dequantize_rows(&(0..self.rows).collect::<Vec<_>>(), &mut out);
        out
    }

    /// The kernel path [`Self::matmul`] uses on this CPU.
    pub fn isa() -> Isa {
        Isa::best()
    }

    /// The activation format this matrix's kernels take.
    pub fn act_format(&self) -> ActFormat {
        ActFormat::for_weights(self.format)
    }

    /// Quantises `x` (`m × cols`) for this matrix; the result can be shared by every matrix
    /// with the same [`Self::act_format`] and `cols`.
    pub fn quantize_activations(&self, x: &[f32], m: usize) -> QuantizedActivations {
        QuantizedActivations::new(self.act_format(), x, m, self.cols)
    }

    /// `out = x · Wᵀ` for `x` of `m × cols` (row-major), `out` of `m × rows`, on the best path.
    ///
    /// # Panics
    /// If the lengths do not match the shapes.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_quantized(&self.quantize_activations(x, m), out);
    }

    /// [`Self::matmul`] on a chosen path; fails if this CPU cannot run it.
    pub fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.matmul_quantized_with(isa, &self.quantize_activations(x, m), out)
    }

    /// `out = x · Wᵀ` for already quantised activations, on the best path.
    ///
    /// # Panics
    /// If `acts` has another format or width than [`Self::act_format`] and `cols`, or `out`
    /// is not `acts.rows() × rows`.
    pub fn matmul_quantized(&self, acts: &QuantizedActivations, out: &mut [f32]) {
        self.run(Isa::best(), acts, out);
    }

    /// [`Self::matmul_quantized`] on a chosen path; fails if this CPU cannot run it.
    pub fn matmul_quantized_with(
        &self,
        isa: Isa,
        acts: &QuantizedActivations,
        out: &mut [f32],
    ) -> Result<(), QuantError> {
        if !isa.is_available() {
            return Err(QuantError::IsaUnavailable(isa));
        }
        self.run(isa, acts, out);
        Ok(())
    }

    /// The matmul proper, on an available path.
    fn run(&self, isa: Isa, acts: &QuantizedActivations, out: &mut [f32]) {
        assert_eq!(
            acts.format(),
            self.act_format(),
            "{:?} weights need {:?} activations",
            self.format,
            self.act_format()
        );
        assert_eq!(acts.cols(), self.cols, "activations have {} columns, the matrix {}", acts.cols(), self.cols);
        let m = acts.rows();
        assert_eq!(out.len(), m * self.rows, "output is not {m} × {}", self.rows);
        if m == 0 || self.rows == 0 {
            return;
        }
        // Tiles of rows small enough to balance the threads, large enough that a tile's
        // weights are read from cache for every token group after the first; even, so that the
        // kernels can take rows in pairs.
        let threads = rayon::current_num_threads();
        let tile = (self.rows / (threads * 8)).clamp(4, 64).next_multiple_of(2);
        let groups = m.div_ceil(GROUP);
        // Each tile gets its columns of every output row, written in place.
        let mut tiles: Vec<Vec<&mut [f32]>> = (0..self.rows.div_ceil(tile)).map(|_| Vec::with_capacity(m)).collect();
        for token in out.chunks_exact_mut(self.rows) {
            for (segments, segment) in tiles.iter_mut().zip(token.chunks_mut(tile)) {
                segments.push(segment);
            }
        }
        tiles.into_par_iter().enumerate().for_each(|(i, mut segments)| {
            let first = i * tile;
            let len = segments[0].len();
            for g in 0..groups {
                let group = acts.group(g);
                let nt = GROUP.min(m - g * GROUP);
                let tokens = &mut segments[g * GROUP..g * GROUP + nt];
                let mut r = 0;
                while r < len {
                    let pair = r + 1 < len;
                    let w0 = self.row_bytes(first + r);
                    let w1 = if pair { self.row_bytes(first + r + 1) } else { w0 };
                    let lanes = self.kernel(isa, w0, w1, pair, group, nt);
                    for (t, token) in tokens.iter_mut().enumerate() {
                        token[r] = lanes[0][t];
                        if pair {
                            token[r + 1] = lanes[1][t];
                        }
                    }
                    r += 2;
                }
            }
        });
    }

    /// Rows `w0` and, if `pair`, `w1` against the first `nt` tokens of `group`.
    fn kernel(&self, isa: Isa, w0: &[u8], w1: &[u8], pair: bool, group: Group<'_>, nt: usize) -> [[f32; GROUP]; 2] {
        match isa {
            Isa::Portable => {
                let second = if pair { portable::row_group(self.format, w1, group, nt) } else { [0.0; GROUP] };
                [portable::row_group(self.format, w0, group, nt), second]
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => super::x86::rows_group(isa, self.format, [w0, w1], pair, group, nt),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512Vnni => unreachable!("x86 paths are never available here"),
        }
    }
}
