//! Integer inference for GGUF-quantised linear layers, the way llama.cpp does it on CPU.
//!
//! Weights stay in their GGUF blocks ([`BlockFormat`]); the f32 input rows are quantised
//! per block to int8 ([`QuantizedActivations`], llama.cpp's Q8_0/Q8_1/Q8_K); each output is
//! a sum over blocks of exact integer dot products times the blocks' scales. [`QMatrix`]
//! computes `out = x · Wᵀ` this way, on rayon's current pool.
//!
//! Three kernel paths exist ([`Isa`]): portable Rust, AVX2 and AVX-512 VNNI. They give
//! bit-identical results, whatever the thread count, tiling or number of tokens: the integer
//! part is exact, and the f32 part follows one canonical order, documented in `portable.rs`.

mod act;
mod f16;
mod format;
mod matrix;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::fmt;

pub use act::{ActFormat, QuantizedActivations};
pub use f16::{f16_to_f32, f32_to_f16};
pub use format::{BlockFormat, QK_K, dequantize_row};
pub use matrix::QMatrix;

/// A kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust; runs everywhere and defines the results.
    Portable,
    /// x86-64 AVX2 (`vpmaddubsw`/`vpmaddwd`).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    Avx512Vnni,
}

impl Isa {
    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vnni => x86::has_avx512_vnni(),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2 | Self::Avx512Vnni => false,
        }
    }

    /// Every path this CPU can run, portable first.
    pub fn available() -> Vec<Isa> {
        [Self::Portable, Self::Avx2, Self::Avx512Vnni].into_iter().filter(|isa| isa.is_available()).collect()
    }

    /// The fastest path this CPU can run (detected at run time).
    pub fn best() -> Isa {
        [Self::Avx512Vnni, Self::Avx2].into_iter().find(|isa| isa.is_available()).unwrap_or(Self::Portable)
    }
}

/// Why a [`QMatrix`] could not be built or a kernel path could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// `cols` is not a whole number of blocks.
    ColsNotBlockMultiple {
        /// The weight format.
        format: BlockFormat,
        /// The requested number of columns.
        cols: usize,
    },
    /// The byte buffer does not have the size `rows × cols` takes in the format.
    WrongByteCount {
        /// The weight format.
        format: BlockFormat,
        /// Rows (outputs).
        rows: usize,
        /// Columns (inputs).
        cols: usize,
        /// The size the shape needs.
        expected: usize,
        /// The size given.
        actual: usize,
    },
    /// The requested kernel path needs CPU features this machine lacks.
    IsaUnavailable(Isa),
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ColsNotBlockMultiple { format, cols } => {
                write!(f, "{cols} columns is not a multiple of the {format:?} block length {}", format.block_len())
            }
            Self::WrongByteCount { format, rows, cols, expected, actual } => write!(
                f,
                "a {rows} × {cols} {format:?} matrix takes {expected} bytes ({} per block of {}), got {actual}",
                format.block_bytes(),
                format.block_len()
            ),
            Self::IsaUnavailable(isa) => write!(f, "this CPU cannot run the {isa:?} kernels"),
        }
    }
}

impl std::error::Error for QuantError {}
