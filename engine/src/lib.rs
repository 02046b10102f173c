//! The engine: scores pairs of responses under safety rules that run as sandboxed
//! WebAssembly plugins, and turns the scores into reward-model training data.

pub mod app;
pub mod config;
pub mod data;
pub mod judge;
pub mod label;
pub mod labeling;
pub mod market;
pub mod plugin;
pub mod score;
pub mod select;
