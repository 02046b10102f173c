//! Why a judge model could not be loaded.

use std::path::PathBuf;

/// Why [`CandleJudge::load`](super::CandleJudge::load) failed. Every variant names the file
/// it is about and the cause, so the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JudgeLoadError {
    /// The model path does not exist.
    #[error("judge model {path}: not found")]
    NotFound { path: PathBuf },

    /// The file exists but could not be read.
    #[error("judge model {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Neither a GGUF file nor a safetensors checkpoint (a folder or `.safetensors` file
    /// with a `config.json` beside it).
    #[error(
        "judge model {path}: not a model this judge reads ({reason}); give a .gguf file, or a \
         safetensors checkpoint (a folder, or a .safetensors file) with its config.json"
    )]
    UnknownFormat { path: PathBuf, reason: String },

    /// The file starts like a GGUF but its header, metadata or tensor data is damaged or
    /// truncated.
    #[error("judge model {path}: corrupt or truncated GGUF file: {reason}")]
    CorruptGguf { path: PathBuf, reason: String },

    /// The checkpoint's architecture is not one this judge implements.
    #[error("judge model {path}: unsupported architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture { path: PathBuf, architecture: String, supported: &'static str },

    /// A setting the model needs is absent from the GGUF metadata or config.json.
    #[error("judge model {path}: missing `{key}` in its {source_name}")]
    MissingSetting { path: PathBuf, key: String, source_name: &'static str },

    /// A setting is present but unusable (wrong type, out of range, unsupported variant).
    #[error("judge model {path}: `{key}`: {reason}")]
    BadSetting { path: PathBuf, key: String, reason: String },

    /// A weight tensor the architecture needs is missing.
    #[error("judge model {path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },

    /// A weight tensor has the wrong shape for the configuration.
    #[error("judge model {path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },

    /// The config.json next to a safetensors checkpoint is not valid JSON of the expected
    /// shape.
    #[error("judge model config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    /// The tokenizer (tokenizer.json, or the GGUF's `tokenizer.ggml.*` metadata) could not
    /// be built, or lacks what the judge needs (the chat template's special tokens, a
    /// single-token "Yes" and "No").
    #[error("judge tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    /// A judge option is invalid for this model (for example kept-quantised weights asked
    /// of a safetensors checkpoint).
    #[error("judge model {path}: {reason}")]
    Options { path: PathBuf, reason: String },

    /// The device could not be opened (for example CUDA without the `cuda` feature).
    #[error("judge device: {reason}")]
    Device { reason: String },

    /// Candle failed while building the model from weights that were read fine.
    #[error("judge model {path}: {source}")]
    Candle {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}
