//! CPU numerics shared by the engine's models.
