//! [`RewardModel`]: HF's `BertForSequenceClassification` with one output, and its export.
//!
//! ```text
//! reward = classifier( tanh( pooler.dense( hidden[:, 0] ) ) )      classifier: Linear(H → 1)
//! ```
//!
//! An export folder (what [`RewardModel::save`] writes and [`RewardModel::load`] reads):
//!
//! | file | what |
//! |---|---|
//! | `config.json` | the backbone's BERT config with `architectures: ["BertForSequenceClassification"]`, one label, `problem_type: "regression"` |
//! | `model.safetensors` | HF key names: `bert.embeddings.…`, `bert.encoder.layer.N.…`, `bert.pooler.dense.…`, `classifier.weight` (1 × H), `classifier.bias` (1) |
//! | `tokenizer.json` | the backbone's, with its hard-coded truncation and padding removed |
//! | `tokenizer_config.json`, `vocab.txt`, `special_tokens_map.json` | copied (`model_max_length` set to `max_len`) |
//! | `reward_model.json` | ours: the text [`layout`](super::layout), `max_len`, the head's seed, training summary |
//!
//! `AutoModelForSequenceClassification.from_pretrained(folder)` loads it and gives the same
//! rewards as [`RewardModel::score`] (checked by `tests/reward.rs` within 1e-4).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::bert::{self, Batch, BertConfig, Params};
use super::layout::{self, Tokenizer};
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

/// The default `max_len`: sentence-transformers' limit for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_LEN: usize = 256;

/// An encoder with a scalar head; see the [module docs](self).
pub struct RewardModel {
    pub(crate) encoder: Encoder,
    classifier_weight: Tensor,
    classifier_bias: Tensor,
    /// The full config.json of the backbone (unknown fields kept for the export).
    config_json: serde_json::Value,
    pub meta: RewardMeta,
    source: std::path::PathBuf,
}

impl std::fmt::Debug for RewardModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardModel").field("encoder", &self.encoder).field("meta", &self.meta).finish()
    }
}

const TOKENIZER_FILES: [&str; 3] = ["tokenizer_config.json", "vocab.txt", "special_tokens_map.json"];

fn read_json(path: &Path) -> Result<serde_json::Value, RewardError> {
    let text = std::fs::read_to_string(path).map_err(|e| RewardError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })
}

impl RewardModel {
    /// A new reward model over the encoder in `backbone_dir` (e.g. `models/all-minilm-l6-v2`):
    /// the classifier head (and the pooler, if the checkpoint lacks one) is initialised as HF
    /// does, N(0, initializer_range²) weights and zero biases, from our seeded generator
    /// (`seed`), so the same seed gives the same model everywhere.
    pub fn from_backbone(backbone_dir: &Path, device: &Device, seed: u64, max_len: usize) -> Result<Self, RewardError> {
        let config_path = backbone_dir.join("config.json");
        let config = BertConfig::load(&config_path)?;
        let config_json = read_json(&config_path)?;
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
        let meta = RewardMeta {
            layout: layout::LAYOUT.to_string(),
            max_len: max_len.min(config.max_position_embeddings),
            head_seed: seed,
            base_model: backbone_dir.display().to_string(),
            training: serde_json::Value::Null,
        };
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
        Ok(RewardModel { encoder, classifier_weight, classifier_bias, config_json, meta, source: source.to_path_buf() })
    }

    /// Loads an export folder (see the [module docs](self)) on the CPU.
    pub fn load(dir: &Path) -> Result<RewardModel, RewardError> {
        RewardModel::load_on(dir, &Device::Cpu)
    }

    pub fn load_on(dir: &Path, device: &Device) -> Result<RewardModel, RewardError> {
        let config_path = dir.join("config.json");
        let config = BertConfig::load(&config_path)?;
        let config_json = read_json(&config_path)?;
        let meta_path = dir.join("reward_model.json");
        let meta: RewardMeta = serde_json::from_value(read_json(&meta_path)?)
            .map_err(|e| RewardError::Format { path: meta_path.clone(), message: e.to_string() })?;
        if meta.layout != layout::LAYOUT {
            return Err(RewardError::Format {
                path: meta_path,
                message: format!("layout {:?} is not supported (this engine reads {:?})", meta.layout, layout::LAYOUT),
            });
        }
        let (mut params, mut rest, initialised) = super::load_backbone(dir, &config, device, meta.head_seed)?;
        if !initialised.is_empty() {
            return Err(RewardError::MissingTensor { name: format!("bert.{} in {}", initialised[0], dir.display()) });
        }
        let h = config.hidden_size;
        for (name, shape) in [("classifier.weight", vec![1, h]), ("classifier.bias", vec![1])] {
            let t = rest.remove(name).ok_or_else(|| RewardError::MissingTensor {
                name: format!("{name} in {}", dir.join("model.safetensors").display()),
            })?;
            if t.dims() != shape.as_slice() {
                return Err(RewardError::Shape { name: name.into(), found: t.dims().to_vec(), expected: shape });
            }
            params.insert(name, &t).ctx(name)?;
        }
        let tokenizer = Tokenizer::load(&dir.join("tokenizer.json"))?;
        RewardModel::assemble(config, config_json, params, tokenizer, meta, device, dir)
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub fn params(&self) -> &Params {
        &self.encoder.params
    }

    pub fn max_len(&self) -> usize {
        self.meta.max_len
    }

    /// The layout's token ids for one item.
    pub fn encode(&self, prompt: &[Message], response: &str) -> Result<layout::Encoded, RewardError> {
        self.encoder.tokenizer.encode_pair(&layout::render_conversation(prompt), response, self.meta.max_len)
    }

    /// Rewards of a padded batch, shape (B,): differentiable, for training.
    pub fn rewards(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let hidden = self.encoder.bert.forward(batch)?;
        self.head(&hidden)
    }

    fn head(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = self.encoder.bert.pool(hidden)?;
        pooled.matmul(&self.classifier_weight.t()?)?.broadcast_add(&self.classifier_bias)?.squeeze(1)
    }

    /// One reward per (conversation, response) item, in order; batched internally.
    pub fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, RewardError> {
        let encoded = items.iter().map(|(p, r)| self.encode(p, r)).collect::<Result<Vec<_>, _>>()?;
        self.score_encoded(&encoded)
    }

    /// Rewards of items already laid out (see [`RewardModel::encode`]).
    pub fn score_encoded(&self, encoded: &[layout::Encoded]) -> Result<Vec<f32>, RewardError> {
        self.encoder.run_sorted(encoded, |hidden, _batch| self.head(hidden)?.to_vec1::<f32>())
    }

    /// Writes the export folder described in the [module docs](self). Every file is
    /// written to a temporary name and renamed into place.
    pub fn save(&self, dir: &Path) -> Result<(), RewardError> {
        std::fs::create_dir_all(dir).map_err(|e| RewardError::io(dir, e))?;
        let mut config = self.config_json.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("architectures".into(), serde_json::json!(["BertForSequenceClassification"]));
            obj.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
            obj.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
            obj.insert("problem_type".into(), serde_json::json!("regression"));
            obj.remove("_name_or_path");
        }
        write_atomic(&dir.join("config.json"), &pretty(&config))?;

        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, var) in self.encoder.params.iter() {
            let key = if name.starts_with("classifier.") { name.clone() } else { format!("bert.{name}") };
            tensors.insert(key, var.as_tensor().to_device(&Device::Cpu).ctx(name)?);
        }
        let weights = dir.join("model.safetensors");
        let tmp = tmp_path(&weights);
        candle_core::safetensors::save(&tensors, &tmp).ctx(tmp.display())?;
        std::fs::rename(&tmp, &weights).map_err(|e| RewardError::io(&weights, e))?;

        // The tokenizer: ours has truncation and padding off; copy the rest from where we came from.
        let tok_src = self.source.join("tokenizer.json");
        let mut tok = read_json(&tok_src)?;
        if let Some(obj) = tok.as_object_mut() {
            obj.insert("truncation".into(), serde_json::Value::Null);
            obj.insert("padding".into(), serde_json::Value::Null);
        }
        write_atomic(&dir.join("tokenizer.json"), &pretty(&tok))?;
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
                let bytes = std::fs::read(&src).map_err(|e| RewardError::io(&src, e))?;
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

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader (or a resumed run after a crash) sees the old file or the new one, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RewardError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| RewardError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RewardError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RewardModel>();
        check::<Encoder>();
    }
}
