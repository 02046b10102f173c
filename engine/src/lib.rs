//! The engine: scores pairs of responses under safety rules that run as sandboxed
//! WebAssembly plugins, and turns the scores into reward-model training data.

// Errors here carry paths, lines and sources so that every message names what it is
// about; they are returned on cold paths only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod adapter;
pub mod alloc;
pub mod app;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod fsio;
pub mod jsonl;
pub mod judge;
pub mod kernels;
pub mod label;
pub mod labeling;
pub mod market;
pub mod models;
pub mod pairwise;
pub mod plugin;
pub mod process;
pub mod progress;
pub mod report;
pub mod reward;
pub mod score;
pub mod select;
pub mod serve;
pub mod stdout;
