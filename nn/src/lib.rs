//! CPU numerics shared by the engine's models.

pub mod quant;
