//! [`RewardModel`]: a backbone with a one-output head, as HF's `…ForSequenceClassification`,
//! and its export. Two kinds of backbone, told apart by `model_type` in config.json:
//!
//! ```text
//! BERT (default, all-MiniLM-L6-v2):
//!   reward = classifier( tanh( pooler.dense( hidden[:, 0] ) ) )    classifier: Linear(H → 1)
//! Llama / Qwen2 decoder (see decoder):
//!   reward = score( hidden[:, last token that is not the pad id] ) score: Linear(H → 1), no bias
//! ```
//!
//! A decoder backbone is the larger-model path: a GPU is what makes it practical, but it
//! runs (slowly) on the CPU too. It is either a folder with safetensors weights
//! (`model.safetensors`, or shards listed in `model.safetensors.index.json`), config.json and
//! tokenizer.json, as the Hub ships Llama and Qwen2 models, or a llama/qwen2 **GGUF file**
//! (the embedded SmolLM2 judge, say): its weights are dequantised to f32, llama.cpp's
//! permutation of llama's q/k rows is undone, and the tokenizer is rebuilt from the metadata,
//! by the judge's loader. The export is then an ordinary HF folder (`tests/reward.rs` checks
//! SmolLM2-135M's against transformers).
//!
//! An export folder (what [`RewardModel::save`] writes and [`RewardModel::load`] reads):
//!
//! | file | what |
//! |---|---|
//! | `config.json` | the backbone's config with `architectures: ["BertForSequenceClassification"]` (or `LlamaForSequenceClassification`, `Qwen2ForSequenceClassification` with the `pad_token_id` pooling uses), one label, `problem_type: "regression"` |
//! | `model.safetensors` | HF key names: `bert.embeddings.…`, `bert.encoder.layer.N.…`, `bert.pooler.dense.…`, `classifier.weight` (1 × H), `classifier.bias` (1); for a decoder `model.…` and `score.weight` (1 × H) |
//! | `tokenizer.json` | the backbone's, with its hard-coded truncation and padding removed |
//! | `tokenizer_config.json`, `vocab.txt`, `special_tokens_map.json`, `vocab.json`, `merges.txt` | copied when present (`model_max_length` set to `max_len`) |
//! | `reward_model.json` | ours: the text [`layout`](super::layout) (`bert-pair-v1` or `decoder-text-v1`), `max_len`, the head's seed, training summary |
//!
//! `AutoModelForSequenceClassification.from_pretrained(folder)` loads it and gives the same
//! rewards as [`RewardModel::score`] (checked by `tests/reward.rs` within 1e-4, for BERT and
//! for tiny Llama and Qwen2 models).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::bert::{self, Batch, BertConfig, Params};
use super::decoder::{self, Decoder, DecoderConfig};
use super::layout::{self, DecoderTokenizer, Tokenizer};
use super::rng::SplitMix64;
use super::{CandleContext, Encoder, RewardError};
use crate::data::Message;

/// Our metadata in an export (`reward_model.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardMeta {
    /// The text layout, [`layout::LAYOUT`].
    pub layout: String,
    /// The most tokens of one item; longer ones are truncated as the layout says.
    pub max_len: usize,
    /// The seed the classifier head was initialised from.
    pub head_seed: u64,
    /// Where the backbone came from.
    pub base_model: String,
    /// Whatever the trainer wants to record (options, final losses, accuracy).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub training: serde_json::Value,
}

impl RewardMeta {
    /// The metadata of a model not trained yet.
    fn fresh(layout: &str, max_len: usize, head_seed: u64, base_model: &Path) -> RewardMeta {
        RewardMeta {
            layout: layout.to_string(),
            max_len,
            head_seed,
            base_model: base_model.display().to_string(),
            training: serde_json::Value::Null,
        }
    }
}

/// The default `max_len`: sentence-transformers' limit for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_LEN: usize = 256;

/// A backbone with a scalar head; see the [module docs](self).
pub struct RewardModel {
    backbone: Backbone,
    /// The full config.json of the backbone (unknown fields kept for the export).
    config_json: serde_json::Value,
    pub meta: RewardMeta,
    source: std::path::PathBuf,
}

/// What computes the pooled state, and the head over it.
enum Backbone {
    /// BERT with HF's pooler and a `classifier` (weight 1 × H, bias 1); its parameters
    /// (head included) live in the encoder's store.
    Bert { encoder: Box<Encoder>, classifier_weight: Tensor, classifier_bias: Tensor },
    /// A Llama/Qwen2 decoder, last-token pooling and a bias-free `score` (1 × H).
    Decoder(Box<DecoderBackbone>),
}

struct DecoderBackbone {
    model: Decoder,
    params: Params,
    tokenizer: DecoderTokenizer,
    score_weight: Tensor,
    pad_id: u32,
    device: Device,
}

impl std::fmt::Debug for RewardModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backbone {
            Backbone::Bert { .. } => "bert".to_string(),
            Backbone::Decoder(d) => d.model.config().model_type.clone(),
        };
        f.debug_struct("RewardModel")
            .field("backbone", &kind)
            .field("parameters", &self.params().count())
            .field("meta", &self.meta)
            .finish()
    }
}

/// Tokenizer files copied into an export when the backbone has them.
const TOKENIZER_FILES: [&str; 5] =
    ["tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "vocab.json", "merges.txt"];

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, RewardError> {
    let text = crate::fsio::read_to_string(path).map_err(|e| RewardError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })
}

/// Whether `config.json` describes a decoder this engine runs (`model_type` llama or qwen2),
/// BERT (`bert`, or no `model_type`), or something it refuses by name.
pub(crate) fn is_decoder(config_json: &serde_json::Value, path: &Path) -> Result<bool, RewardError> {
    match config_json.get("model_type").and_then(|v| v.as_str()) {
        None | Some("bert") => Ok(false),
        Some(t) if decoder::DECODER_TYPES.contains(&t) => Ok(true),
        Some(other) => Err(RewardError::Format {
            path: path.to_path_buf(),
            message: format!("model_type {other:?} is not a supported backbone (bert, llama, qwen2)"),
        }),
    }
}

/// The id a decoder pads with: `pad_token_id` of config.json, else the tokenizer's padding
/// setting, else `eos_token_id` (the first, if a list), else 0. Pooling skips trailing
/// positions with this id, as transformers does, and the export records it.
fn decoder_pad_id(config_json: &serde_json::Value, tokenizer: &DecoderTokenizer) -> u32 {
    let number = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_u64().or_else(|| v.as_array().and_then(|a| a.first()).and_then(|x| x.as_u64())))
    };
    number(config_json.get("pad_token_id"))
        .map(|id| id as u32)
        .or(tokenizer.padding_id())
        .or(number(config_json.get("eos_token_id")).map(|id| id as u32))
        .unwrap_or(0)
}

/// Every tensor of `model.safetensors`, or of the shards `model.safetensors.index.json` names.
fn read_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>, RewardError> {
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        let path = dir.join("model.safetensors");
        return candle_core::safetensors::load(&path, device).ctx(path.display());
    }
    let json = read_json(&index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| RewardError::Format { path: index.clone(), message: "no weight_map object".into() })?;
    let mut files: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    let mut out = HashMap::new();
    for file in files {
        let path = dir.join(file);
        out.extend(candle_core::safetensors::load(&path, device).ctx(path.display())?);
    }
    Ok(out)
}

/// A decoder's parameters by HF name from `dir`'s weights, the other tensors by name. The
/// names may lack the `model.` prefix (a bare `LlamaModel` checkpoint).
fn load_decoder_params(
    dir: &Path,
    config: &DecoderConfig,
    device: &Device,
) -> Result<(Params, HashMap<String, Tensor>), RewardError> {
    let mut tensors = read_weights(dir, device)?;
    let bare = !tensors.keys().any(|k| k.starts_with("model."));
    let mut params = Params::new();
    for (name, shape) in config.parameter_shapes() {
        let key = if bare { name.trim_start_matches("model.").to_string() } else { name.clone() };
        let tensor = tensors
            .remove(&key)
            .ok_or_else(|| RewardError::MissingTensor { name: format!("{key} in {}", dir.display()) })?;
        if tensor.dims() != shape.as_slice() {
            return Err(RewardError::Shape { name, found: tensor.dims().to_vec(), expected: shape });
        }
        params.insert(&name, &tensor).ctx(&name)?;
    }
    Ok((params, tensors))
}

/// Whether `path` is a GGUF file (by its magic bytes).
fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"GGUF"
}

/// A llama/qwen2 GGUF as a decoder backbone: its configuration (as a config.json would give
/// it), its weights dequantised to f32 under HF's names, and the tokenizer rebuilt from its
/// metadata, all by the judge's loader ([`crate::judge::model::gguf_as_hf_tensors`]).
fn gguf_decoder(
    path: &Path,
    device: &Device,
) -> Result<(DecoderConfig, serde_json::Value, Params, DecoderTokenizer), RewardError> {
    use crate::judge::model::{self as judge_model, Architecture};
    let judge_err = |e: crate::judge::JudgeLoadError| RewardError::Invalid(e.to_string());
    let file = std::fs::File::open(path).map_err(|e| RewardError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let content = candle_core::quantized::gguf_file::Content::read(&mut reader)
        .map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    let plan = judge_model::plan_gguf(&content, path).map_err(judge_err)?;
    let c = plan.config().clone();
    let tensors = judge_model::gguf_as_hf_tensors(&plan, &content, &mut reader, path).map_err(judge_err)?;
    let tokenizer = crate::judge::JudgeTokenizer::from_gguf(&content, path).map_err(judge_err)?;
    let tokenizer = DecoderTokenizer::from_tokenizer(tokenizer.tokenizer().clone(), path)?;
    let config = DecoderConfig {
        model_type: match c.architecture {
            Architecture::Llama => "llama".into(),
            Architecture::Qwen2 => "qwen2".into(),
        },
        vocab_size: c.vocab,
        hidden_size: c.hidden,
        intermediate_size: c.ffn,
        num_hidden_layers: c.layers,
        num_attention_heads: c.heads,
        num_key_value_heads: Some(c.kv_heads),
        head_dim: Some(c.head_dim),
        max_position_embeddings: c.context_length,
        rms_norm_eps: c.rms_eps,
        rope_theta: c.rope_theta as f64,
        rope_scaling: None,
        hidden_act: "silu".into(),
        attention_bias: c.o_bias,
        mlp_bias: false,
        use_sliding_window: false,
        initializer_range: 0.02,
    };
    config.validate().map_err(|message| RewardError::Format { path: path.to_path_buf(), message })?;
    let mut json = serde_json::to_value(&config).expect("config serialises");
    if let Some(obj) = json.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
        let id = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
        if let Some(pad) = id("tokenizer.ggml.padding_token_id").or(id("tokenizer.ggml.eos_token_id")) {
            obj.insert("pad_token_id".into(), serde_json::json!(pad));
        }
        for (key, field) in
            [("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id")]
        {
            if let Some(v) = id(key) {
                obj.insert(field.into(), serde_json::json!(v));
            }
        }
    }
    let mut params = Params::new();
    let expected: HashMap<String, Vec<usize>> = config.parameter_shapes().into_iter().collect();
    for (name, tensor) in tensors {
        let shape = expected.get(&name).ok_or_else(|| RewardError::Invalid(format!("unexpected tensor {name}")))?;
        if tensor.dims() != shape.as_slice() {
            return Err(RewardError::Shape { name, found: tensor.dims().to_vec(), expected: shape.clone() });
        }
        params.insert(&name, &tensor.to_device(device).ctx(&name)?).ctx(&name)?;
    }
    Ok((config, json, params, tokenizer))
}

/// Moves the head tensor `name` from an export's other tensors into `params`, checking its shape.
fn take_tensor(
    rest: &mut HashMap<String, Tensor>,
    params: &mut Params,
    name: &str,
    shape: &[usize],
    dir: &Path,
) -> Result<(), RewardError> {
    let t = rest.remove(name).ok_or_else(|| RewardError::MissingTensor {
        name: format!("{name} in {}", dir.join("model.safetensors").display()),
    })?;
    if t.dims() != shape {
        return Err(RewardError::Shape { name: name.into(), found: t.dims().to_vec(), expected: shape.to_vec() });
    }
    params.insert(name, &t).ctx(name)
}

impl RewardModel {
    /// A new reward model over the backbone in `backbone_dir`: BERT (e.g.
    /// `models/all-minilm-l6-v2`) or a Llama/Qwen2 decoder, told apart by `model_type` in its
    /// config.json. The head (and BERT's pooler, if the checkpoint lacks one) is initialised
    /// as HF does, N(0, initializer_range²) weights and zero biases, from our seeded
    /// generator (`seed`), so the same seed gives the same model everywhere.
    pub fn from_backbone(backbone_dir: &Path, device: &Device, seed: u64, max_len: usize) -> Result<Self, RewardError> {
        let gguf = is_gguf(backbone_dir);
        let config_path = backbone_dir.join("config.json");
        let config_json = if gguf { serde_json::Value::Null } else { read_json(&config_path)? };
        if gguf || is_decoder(&config_json, &config_path)? {
            let (config, config_json, mut params, tokenizer) = if gguf {
                gguf_decoder(backbone_dir, device)?
            } else {
                let config = DecoderConfig::load(&config_path)?;
                let (params, _rest) = load_decoder_params(backbone_dir, &config, device)?;
                let tokenizer = DecoderTokenizer::load(&backbone_dir.join("tokenizer.json"))?;
                (config, config_json, params, tokenizer)
            };
            let mut rng = SplitMix64::new(seed);
            let shape = [1, config.hidden_size];
            let t = decoder::init_tensor("score.weight", &shape, config.initializer_range, &mut rng, device)
                .ctx("score.weight")?;
            params.insert("score.weight", &t).ctx("score.weight")?;
            let max_len = max_len.min(config.max_position_embeddings);
            let meta = RewardMeta::fresh(layout::DECODER_LAYOUT, max_len, seed, backbone_dir);
            return RewardModel::assemble_decoder(config, config_json, params, tokenizer, meta, device, backbone_dir);
        }
        let config = BertConfig::load(&config_path)?;
        // The pooler (when missing) draws from seed + 1 so the head's numbers do not depend on it.
        let (mut params, _rest, _initialised) =
            super::load_backbone(backbone_dir, &config, device, seed.wrapping_add(1))?;
        let mut rng = SplitMix64::new(seed);
        let h = config.hidden_size;
        for (name, shape) in [("classifier.weight", vec![1, h]), ("classifier.bias", vec![1])] {
            let t = bert::init_tensor(name, &shape, config.initializer_range, &mut rng, device).ctx(name)?;
            params.insert(name, &t).ctx(name)?;
        }
        let tokenizer = Tokenizer::load(&backbone_dir.join("tokenizer.json"))?;
        let max_len = max_len.min(config.max_position_embeddings);
        let meta = RewardMeta::fresh(layout::LAYOUT, max_len, seed, backbone_dir);
        RewardModel::assemble(config, config_json, params, tokenizer, meta, device, backbone_dir)
    }

    fn assemble(
        config: BertConfig,
        config_json: serde_json::Value,
        params: Params,
        tokenizer: Tokenizer,
        meta: RewardMeta,
        device: &Device,
        source: &Path,
    ) -> Result<Self, RewardError> {
        let classifier_weight = params.tensor("classifier.weight")?;
        let classifier_bias = params.tensor("classifier.bias")?;
        let encoder = Encoder::from_parts(config, params, tokenizer, device)?;
        Ok(RewardModel {
            backbone: Backbone::Bert { encoder: Box::new(encoder), classifier_weight, classifier_bias },
            config_json,
            meta,
            source: source.to_path_buf(),
        })
    }

    fn assemble_decoder(
        config: DecoderConfig,
        config_json: serde_json::Value,
        params: Params,
        tokenizer: DecoderTokenizer,
        meta: RewardMeta,
        device: &Device,
        source: &Path,
    ) -> Result<Self, RewardError> {
        let pad_id = decoder_pad_id(&config_json, &tokenizer);
        let score_weight = params.tensor("score.weight")?;
        let model = Decoder::new(&config, &params)?;
        let parts = DecoderBackbone { model, params, tokenizer, score_weight, pad_id, device: device.clone() };
        Ok(RewardModel {
            backbone: Backbone::Decoder(Box::new(parts)),
            config_json,
            meta,
            source: source.to_path_buf(),
        })
    }

    /// Loads an export folder (see the [module docs](self)) on the CPU.
    pub fn load(dir: &Path) -> Result<RewardModel, RewardError> {
        RewardModel::load_on(dir, &Device::Cpu)
    }

    pub fn load_on(dir: &Path, device: &Device) -> Result<RewardModel, RewardError> {
        let config_path = dir.join("config.json");
        let config_json = read_json(&config_path)?;
        let decoder = is_decoder(&config_json, &config_path)?;
        let meta_path = dir.join("reward_model.json");
        let meta: RewardMeta = serde_json::from_value(read_json(&meta_path)?)
            .map_err(|e| RewardError::Format { path: meta_path.clone(), message: e.to_string() })?;
        let expected = if decoder { layout::DECODER_LAYOUT } else { layout::LAYOUT };
        if meta.layout != expected {
            return Err(RewardError::Format {
                path: meta_path,
                message: format!("layout {:?} is not supported for this backbone (expected {expected:?})", meta.layout),
            });
        }
        if decoder {
            let config = DecoderConfig::load(&config_path)?;
            let (mut params, mut rest) = load_decoder_params(dir, &config, device)?;
            take_tensor(&mut rest, &mut params, "score.weight", &[1, config.hidden_size], dir)?;
            let tokenizer = DecoderTokenizer::load(&dir.join("tokenizer.json"))?;
            return RewardModel::assemble_decoder(config, config_json, params, tokenizer, meta, device, dir);
        }
        let config = BertConfig::load(&config_path)?;
        let (mut params, mut rest, initialised) = super::load_backbone(dir, &config, device, meta.head_seed)?;
        if !initialised.is_empty() {
            return Err(RewardError::MissingTensor { name: format!("bert.{} in {}", initialised[0], dir.display()) });
        }
        let h = config.hidden_size;
        for (name, shape) in [("classifier.weight", vec![1, h]), ("classifier.bias", vec![1])] {
            take_tensor(&mut rest, &mut params, name, &shape, dir)?;
        }
        let tokenizer = Tokenizer::load(&dir.join("tokenizer.json"))?;
        RewardModel::assemble(config, config_json, params, tokenizer, meta, device, dir)
    }

    /// Every trainable weight, head included, by HF name.
    pub fn params(&self) -> &Params {
        match &self.backbone {
            Backbone::Bert { encoder, .. } => &encoder.params,
            Backbone::Decoder(d) => &d.params,
        }
    }

    /// `"bert"`, `"llama"` or `"qwen2"`.
    pub fn backbone_type(&self) -> &str {
        match &self.backbone {
            Backbone::Bert { .. } => "bert",
            Backbone::Decoder(d) => &d.model.config().model_type,
        }
    }

    /// The id batches are padded with.
    pub fn pad_id(&self) -> u32 {
        match &self.backbone {
            Backbone::Bert { encoder, .. } => encoder.tokenizer.pad_id(),
            Backbone::Decoder(d) => d.pad_id,
        }
    }

    pub fn device(&self) -> &Device {
        match &self.backbone {
            Backbone::Bert { encoder, .. } => &encoder.device,
            Backbone::Decoder(d) => &d.device,
        }
    }

    pub fn max_len(&self) -> usize {
        self.meta.max_len
    }

    /// The layout's token ids for one item.
    pub fn encode(&self, prompt: &[Message], response: &str) -> Result<layout::Encoded, RewardError> {
        match &self.backbone {
            Backbone::Bert { encoder, .. } => {
                encoder.tokenizer.encode_pair(&layout::render_conversation(prompt), response, self.meta.max_len)
            }
            Backbone::Decoder(d) => d.tokenizer.encode(prompt, response, self.meta.max_len),
        }
    }

    /// Rewards of a padded batch, shape (B,): differentiable, for training.
    pub fn rewards(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        match &self.backbone {
            Backbone::Bert { encoder, classifier_weight, classifier_bias } => {
                let hidden = encoder.bert.forward(batch)?;
                let pooled = encoder.bert.pool(&hidden)?;
                pooled.matmul(&classifier_weight.t()?)?.broadcast_add(classifier_bias)?.squeeze(1)
            }
            Backbone::Decoder(d) => {
                let hidden = d.model.forward(&batch.input_ids)?;
                let positions = decoder::last_token_positions(&batch.input_ids, d.pad_id)?;
                let pooled = decoder::gather_rows(&hidden, &positions)?;
                pooled.matmul(&d.score_weight.t()?)?.squeeze(1)
            }
        }
    }

    /// One reward per (conversation, response) item, in order; batched internally.
    pub fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, RewardError> {
        let encoded = items.iter().map(|(p, r)| self.encode(p, r)).collect::<Result<Vec<_>, _>>()?;
        self.score_encoded(&encoded)
    }

    /// Rewards of items already laid out (see [`RewardModel::encode`]).
    pub fn score_encoded(&self, encoded: &[layout::Encoded]) -> Result<Vec<f32>, RewardError> {
        super::run_sorted(encoded, self.pad_id(), self.device(), |batch| self.rewards(batch)?.to_vec1::<f32>())
    }

    /// Writes the export folder described in the [module docs](self). Every file is
    /// written to a temporary name and renamed into place.
    pub fn save(&self, dir: &Path) -> Result<(), RewardError> {
        std::fs::create_dir_all(dir).map_err(|e| RewardError::io(dir, e))?;
        let mut config = self.config_json.clone();
        if let Some(obj) = config.as_object_mut() {
            let architecture = match self.backbone_type() {
                "llama" => "LlamaForSequenceClassification",
                "qwen2" => "Qwen2ForSequenceClassification",
                _ => "BertForSequenceClassification",
            };
            obj.insert("architectures".into(), serde_json::json!([architecture]));
            obj.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
            obj.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
            obj.insert("problem_type".into(), serde_json::json!("regression"));
            obj.remove("_name_or_path");
            if let Backbone::Decoder(d) = &self.backbone {
                // transformers pools the last token that is not pad_token_id, as we do.
                obj.insert("pad_token_id".into(), serde_json::json!(d.pad_id));
                obj.insert("torch_dtype".into(), serde_json::json!("float32"));
            }
        }
        write_atomic(&dir.join("config.json"), &pretty(&config))?;

        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let bert = matches!(self.backbone, Backbone::Bert { .. });
        for (name, var) in self.params().iter() {
            let key = if !bert || name.starts_with("classifier.") { name.clone() } else { format!("bert.{name}") };
            tensors.insert(key, var.as_tensor().to_device(&Device::Cpu).ctx(name)?);
        }
        let weights = dir.join("model.safetensors");
        let tmp = tmp_path(&weights);
        candle_core::safetensors::save(&tensors, &tmp).ctx(tmp.display())?;
        crate::fsio::persist(&tmp, &weights).map_err(|e| RewardError::io(&weights, e))?;

        // The tokenizer: ours has truncation and padding off; copy the rest from where we came
        // from. A decoder's is written from memory (a GGUF backbone has no tokenizer.json).
        match &self.backbone {
            Backbone::Decoder(d) => write_atomic(&dir.join("tokenizer.json"), d.tokenizer.to_json()?.as_bytes())?,
            Backbone::Bert { .. } => {
                let mut tok = read_json(&self.source.join("tokenizer.json"))?;
                if let Some(obj) = tok.as_object_mut() {
                    obj.insert("truncation".into(), serde_json::Value::Null);
                    obj.insert("padding".into(), serde_json::Value::Null);
                }
                write_atomic(&dir.join("tokenizer.json"), &pretty(&tok))?;
            }
        }
        for name in TOKENIZER_FILES {
            let src = self.source.join(name);
            if !src.exists() || self.source.join(name) == dir.join(name) {
                continue;
            }
            if name == "tokenizer_config.json" {
                let mut value = read_json(&src)?;
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("model_max_length".into(), serde_json::json!(self.meta.max_len));
                    obj.remove("name_or_path");
                }
                write_atomic(&dir.join(name), &pretty(&value))?;
            } else {
                let bytes = crate::fsio::read(&src).map_err(|e| RewardError::io(&src, e))?;
                write_atomic(&dir.join(name), &bytes)?;
            }
        }
        let meta = serde_json::to_value(&self.meta).expect("metadata serialises");
        write_atomic(&dir.join("reward_model.json"), &pretty(&meta))
    }
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("JSON values serialise");
    out.push(b'\n');
    out
}

pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// [`crate::fsio::write_atomic`], naming `path` on failure: a reader (or a resumed run
/// after a crash) sees the old file or the new one, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RewardError> {
    crate::fsio::write_atomic(path, bytes).map_err(|e| RewardError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RewardModel>();
        check::<Encoder>();
        check::<Decoder>();
    }
}
