//! The engine: scores pairs of responses under safety rules that run as sandboxed
//! WebAssembly plugins, and turns the scores into reward-model training data.

pub mod data;
pub mod judge;
pub mod plugin;
pub mod config;
pub mod score;
pub mod select;
pub mod label;
pub mod app;
