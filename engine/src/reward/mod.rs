//! The reward model: an encoder backbone with a scalar head, trained with the Bradley-Terry loss.
//!
//! # The pieces
//!
//! - [`Encoder`]: BERT (all-MiniLM-L6-v2 by default) written out in candle ([`bert`]), with
//!   its tokenizer. [`Encoder::sentence_embeddings`] gives sentence-transformers' embeddings
//!   (mean pooling over the attention mask, then L2 normalisation), which the rule adapter
//!   builds on.
//! - [`RewardModel`]: the encoder plus HF's `BertForSequenceClassification` head with one
//!   output (pooler `tanh(dense([CLS]))`, then `classifier`), scoring (conversation,
//!   response) items laid out as [`layout`] describes. Or, as the backbone, a Llama/Qwen2
//!   decoder ([`decoder`]) with last-token pooling and a `score` head, as HF's
//!   `LlamaForSequenceClassification` / `Qwen2ForSequenceClassification`. [`RewardModel::save`] writes a folder
//!   that HF transformers' `AutoModelForSequenceClassification.from_pretrained` loads and
//!   scores identically (a test checks this within 1e-4).
//! - [`train`]: Bradley–Terry training with our own AdamW ([`optim`]), warm-up and decay,
//!   clipping, accumulation, length bucketing, checkpoints and exact resume.
//!
//! ```no_run
//! use std::path::Path;
//! use engine::data::Message;
//! use engine::reward::{Encoder, RewardModel};
//!
//! let encoder = Encoder::load(Path::new("models/all-minilm-l6-v2"), &candle_core::Device::Cpu)?;
//! let e = encoder.sentence_embeddings(&["How do I pick a lock?".to_string()], 256)?;
//! assert_eq!(e[0].len(), 384);
//!
//! let rm = RewardModel::load(Path::new("rm/"))?;
//! let rewards = rm.score(&[(vec![Message::user("Hi!")], "Hello! How can I help?".to_string())])?;
//! # Ok::<(), engine::reward::RewardError>(())
//! ```

pub mod attention;
pub mod bert;
pub mod cli;
pub mod data;
pub mod decoder;
pub mod layout;
pub mod model;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod train;

use std::path::{Path, PathBuf};

use candle_core::Device;

use bert::{Batch, Bert, BertConfig, Params};
use layout::Tokenizer;

pub use data::{PairStats, TrainPair, load_train_pairs, read_labels};
pub use model::{DEFAULT_MAX_LEN, RewardMeta, RewardModel};
pub use optim::Decay;
pub use train::{EpochReport, TrainDevice, TrainOptions, TrainReport, train};

/// Everything that can go wrong in this module; each names the file or item it is about.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: tokenizing failed: {message}")]
    Tokenize { path: PathBuf, message: String },
    #[error("the model has no tensor {name:?}")]
    MissingTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    Shape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("{context}: {source}")]
    Candle { context: String, source: candle_core::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Data { path: PathBuf, source: crate::data::DataError },
}

impl RewardError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RewardError {
        RewardError::Io { path: path.to_path_buf(), source }
    }
}

/// Adds what was being done to candle errors: `.ctx("forward pass")?`.
pub(crate) trait CandleContext<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, RewardError>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, RewardError> {
        self.map_err(|source| RewardError::Candle { context: context.to_string(), source })
    }
}

/// The backbone's parameters, the file's other tensors (a head, say) by name, and the names
/// of parameters that were missing and initialised.
pub(crate) type LoadedBackbone = (Params, std::collections::HashMap<String, candle_core::Tensor>, Vec<String>);

/// Loads `model.safetensors` of `dir` into `params`: every backbone parameter of `config`
/// (names as HF's `BertModel`, with `prefix` in front when the file has one, e.g. `"bert."`).
/// Missing backbone tensors are an error, except the pooler, which some sentence-transformers
/// exports lack: it is then initialised as HF does (N(0, initializer_range²), zero bias) from
/// `seed`, and the returned list names it.
pub(crate) fn load_backbone(
    dir: &Path,
    config: &BertConfig,
    device: &Device,
    seed: u64,
) -> Result<LoadedBackbone, RewardError> {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, device).ctx(path.display())?;
    let prefix = if tensors.keys().any(|k| k.starts_with("bert.")) { "bert." } else { "" };
    let mut params = Params::new();
    let mut initialised = Vec::new();
    let mut rng = rng::SplitMix64::new(seed);
    for (name, shape) in config.parameter_shapes() {
        let tensor = match tensors.remove(&format!("{prefix}{name}")) {
            Some(t) => t,
            None if name.starts_with("pooler.") => {
                initialised.push(name.clone());
                bert::init_tensor(&name, &shape, config.initializer_range, &mut rng, device).ctx(&name)?
            }
            None => return Err(RewardError::MissingTensor { name: format!("{prefix}{name} in {}", path.display()) }),
        };
        if tensor.dims() != shape.as_slice() {
            return Err(RewardError::Shape { name, found: tensor.dims().to_vec(), expected: shape });
        }
        params.insert(&name, &tensor).ctx(&name)?;
    }
    Ok((params, tensors, initialised))
}

/// A BERT encoder and its tokenizer, loaded from a folder with `config.json`,
/// `model.safetensors` and `tokenizer.json` (a sentence-transformers or HF export).
pub struct Encoder {
    pub(crate) config: BertConfig,
    pub(crate) params: Params,
    pub(crate) bert: Bert,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) device: Device,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("config", &self.config).field("parameters", &self.params.count()).finish()
    }
}

/// Texts per forward pass in [`Encoder::sentence_embeddings`] and [`RewardModel::score`].
pub const INFERENCE_BATCH: usize = 16;

impl Encoder {
    /// Loads the encoder in `dir` (e.g. `models/all-minilm-l6-v2`) onto `device`.
    /// A llama or qwen2 folder is refused by name: those train reward models, but sentence
    /// embeddings (the Rule Adapter's features) are BERT's mean-pooled states.
    pub fn load(dir: &Path, device: &Device) -> Result<Encoder, RewardError> {
        let config_path = dir.join("config.json");
        let config_json = model::read_json(&config_path)?;
        if model::is_decoder(&config_json, &config_path)? {
            let kind = config_json.get("model_type").and_then(|v| v.as_str()).unwrap_or_default();
            return Err(RewardError::Format {
                path: config_path,
                message: format!(
                    "model_type {kind:?} is a decoder; sentence embeddings (the Rule Adapter's features) need a BERT \
                     encoder such as all-MiniLM-L6-v2"
                ),
            });
        }
        let config = BertConfig::load(&config_path)?;
        let (params, _rest, _initialised) = load_backbone(dir, &config, device, 0)?;
        let tokenizer = Tokenizer::load(&dir.join("tokenizer.json"))?;
        Encoder::from_parts(config, params, tokenizer, device)
    }

    pub(crate) fn from_parts(
        config: BertConfig,
        params: Params,
        tokenizer: Tokenizer,
        device: &Device,
    ) -> Result<Encoder, RewardError> {
        let bert = Bert::new(&config, &params)?;
        Ok(Encoder { config, params, bert, tokenizer, device: device.clone() })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The embedding width (384 for MiniLM).
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// The underlying model, for callers that build their own heads.
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// The model's weights by HF name.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Sentence embeddings as sentence-transformers' all-MiniLM-L6-v2 computes them: each
    /// text as `[CLS] text [SEP]` cut to `max_len` tokens (that model uses 256), the mean
    /// of the last hidden states over the real tokens, L2-normalised. Texts are sorted by
    /// length and run [`INFERENCE_BATCH`] at a time; the result is in input order.
    pub fn sentence_embeddings(&self, texts: &[String], max_len: usize) -> Result<Vec<Vec<f32>>, RewardError> {
        let encoded = texts.iter().map(|t| self.tokenizer.encode_single(t, max_len)).collect::<Result<Vec<_>, _>>()?;
        self.run_sorted(&encoded, |hidden, batch| {
            bert::mean_pool_normalized(hidden, &batch.attention_mask)?.to_vec2::<f32>()
        })
    }

    /// Runs the encoder over `encoded` in length-sorted batches and maps each batch's
    /// hidden states to one row per item with `head`; rows come back in input order.
    pub(crate) fn run_sorted<R: Clone>(
        &self,
        encoded: &[layout::Encoded],
        head: impl Fn(&candle_core::Tensor, &Batch) -> candle_core::Result<Vec<R>>,
    ) -> Result<Vec<R>, RewardError> {
        run_sorted(encoded, self.tokenizer.pad_id(), &self.device, |batch| {
            let hidden = self.bert.forward(batch)?;
            head(&hidden, batch)
        })
    }
}

/// Runs `forward` over `encoded` in length-sorted batches of [`INFERENCE_BATCH`] (padded with
/// `pad_id` on the right); `forward` gives one row per item, and rows come back in input order.
pub(crate) fn run_sorted<R: Clone>(
    encoded: &[layout::Encoded],
    pad_id: u32,
    device: &Device,
    forward: impl Fn(&Batch) -> candle_core::Result<Vec<R>>,
) -> Result<Vec<R>, RewardError> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].ids.len());
    let mut out: Vec<Option<R>> = vec![None; encoded.len()];
    for chunk in order.chunks(INFERENCE_BATCH) {
        let rows: Vec<(&[u32], &[u32])> =
            chunk.iter().map(|&i| (encoded[i].ids.as_slice(), encoded[i].type_ids.as_slice())).collect();
        let batch = Batch::new(&rows, pad_id, device).ctx("building a batch")?;
        let values = forward(&batch).ctx("forward pass")?;
        for (&i, v) in chunk.iter().zip(values) {
            out[i] = Some(v);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("every item is in one chunk")).collect())
}

/// Writes a BERT with random weights (HF's initialisation, from `seed`) to `dir`:
/// `config.json`, `model.safetensors` and a copy of `tokenizer_json`. Tests use a tiny one
/// (a few layers of width 16 over the real MiniLM vocabulary) to train in seconds.
pub fn create_random_backbone(
    dir: &Path,
    config: &BertConfig,
    tokenizer_json: &Path,
    seed: u64,
) -> Result<(), RewardError> {
    config.validate().map_err(RewardError::Invalid)?;
    let mut json = serde_json::to_value(config).expect("config serialises");
    json["model_type"] = serde_json::json!("bert");
    json["architectures"] = serde_json::json!(["BertModel"]);
    let init = |name: &str, shape: &[usize], rng: &mut rng::SplitMix64| {
        bert::init_tensor(name, shape, config.initializer_range, rng, &Device::Cpu)
    };
    write_random_checkpoint(dir, &config.parameter_shapes(), init, &json, tokenizer_json, seed)
}

/// Writes a Llama/Qwen2 decoder with random weights (HF's initialisation, from `seed`) to
/// `dir`, named as a `…ForCausalLM` checkpoint (`model.…`, no `lm_head`): `config.json`,
/// `model.safetensors` and a copy of `tokenizer_json`. Tests use tiny ones.
pub fn create_random_decoder(
    dir: &Path,
    config: &decoder::DecoderConfig,
    tokenizer_json: &Path,
    seed: u64,
) -> Result<(), RewardError> {
    config.validate().map_err(RewardError::Invalid)?;
    let mut json = serde_json::to_value(config).expect("config serialises");
    // Unset options are left out, as HF writes them (transformers reads a null head_dim as a value).
    if let Some(obj) = json.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    let architecture = if config.model_type == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" };
    json["architectures"] = serde_json::json!([architecture]);
    let init = |name: &str, shape: &[usize], rng: &mut rng::SplitMix64| {
        decoder::init_tensor(name, shape, config.initializer_range, rng, &Device::Cpu)
    };
    write_random_checkpoint(dir, &config.parameter_shapes(), init, &json, tokenizer_json, seed)
}

/// `model.safetensors` with every parameter drawn by `init` in order from one seeded
/// generator, `config.json` and a copy of `tokenizer_json`, into `dir`.
fn write_random_checkpoint(
    dir: &Path,
    shapes: &[(String, Vec<usize>)],
    init: impl Fn(&str, &[usize], &mut rng::SplitMix64) -> candle_core::Result<candle_core::Tensor>,
    config_json: &serde_json::Value,
    tokenizer_json: &Path,
    seed: u64,
) -> Result<(), RewardError> {
    std::fs::create_dir_all(dir).map_err(|e| RewardError::io(dir, e))?;
    let mut rng = rng::SplitMix64::new(seed);
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in shapes {
        tensors.insert(name.clone(), init(name, shape, &mut rng).ctx(name)?);
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).ctx(weights.display())?;
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config_json).expect("JSON serialises"))
        .map_err(|e| RewardError::io(&path, e))?;
    let target = dir.join("tokenizer.json");
    std::fs::copy(tokenizer_json, &target).map_err(|e| RewardError::io(&target, e))?;
    Ok(())
}
