//! BERT, written out in candle: the same computation as HF transformers' `BertModel`.
//!
//! ```text
//! ids, token types ─► word + position + token-type embeddings ─► LayerNorm
//!   └─► N × [ self-attention (mask: padding gets −1e9 before softmax) ─► dense ─► +residual ─► LayerNorm
//!            ─► dense ─► GELU (exact erf) ─► dense ─► +residual ─► LayerNorm ]
//!   └─► hidden states (B, T, H)
//! pooler: tanh(dense(hidden[:, 0]))   (the [CLS] position)
//! ```
//!
//! Parameter names are HF's (`embeddings.word_embeddings.weight`,
//! `encoder.layer.3.attention.self.query.bias`, `pooler.dense.weight`, …), so a
//! checkpoint loads by name and an export is readable by transformers. Dropout is not
//! implemented: inference never uses it, and the trainer runs without it (deterministic
//! steps are what makes resume exact).
//!
//! Every weight is a [`candle_core::Var`] held by a [`Params`] store; the layers keep
//! clones of the same tensors, so an optimizer that updates the `Var`s in place updates
//! the model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::RewardError;
use super::attention::{Mask, attention};
use super::ops;
use super::rng::SplitMix64;

/// The fields of a BERT `config.json` that the computation needs (others are kept
/// verbatim by the export, see [`super::RewardModel::save`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<BertConfig, RewardError> {
        load_config(path, BertConfig::validate)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"gelu\", the exact erf form)",
                self.hidden_act
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }

    /// Every parameter of the backbone (with the pooler): HF name and shape, in a fixed order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let mut out = vec![
            ("embeddings.word_embeddings.weight".to_string(), vec![self.vocab_size, h]),
            ("embeddings.position_embeddings.weight".to_string(), vec![self.max_position_embeddings, h]),
            ("embeddings.token_type_embeddings.weight".to_string(), vec![self.type_vocab_size, h]),
            ("embeddings.LayerNorm.weight".to_string(), vec![h]),
            ("embeddings.LayerNorm.bias".to_string(), vec![h]),
        ];
        for l in 0..self.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                out.push((format!("{p}.{name}"), shape));
            }
        }
        out.push(("pooler.dense.weight".to_string(), vec![h, h]));
        out.push(("pooler.dense.bias".to_string(), vec![h]));
        out
    }
}

/// Reads a `config.json` into `T` and checks it; errors name the file.
pub(crate) fn load_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, RewardError> {
    let text = crate::fsio::read_to_string(path).map_err(|source| RewardError::io(path, source))?;
    let config: T = serde_json::from_str(&text)
        .map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    validate(&config).map_err(|message| RewardError::Format { path: path.to_path_buf(), message })?;
    Ok(config)
}

/// HF's initialisation for a parameter it creates (`_init_weights`): Linear and Embedding
/// weights ~ N(0, initializer_range²), biases 0, LayerNorm weight 1 and bias 0 (RMSNorm
/// weights 1, for the decoders).
pub fn init_tensor(
    name: &str,
    shape: &[usize],
    std: f64,
    rng: &mut SplitMix64,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    // BERT's `…LayerNorm.weight`, Llama's `…layernorm.weight` and `model.norm.weight`.
    let values: Vec<f32> = if name.contains("LayerNorm.weight") || name.ends_with("norm.weight") {
        vec![1.0; n]
    } else if name.ends_with(".bias") || name.contains("LayerNorm") {
        vec![0.0; n]
    } else {
        (0..n).map(|_| (rng.normal() * std) as f32).collect()
    };
    Tensor::from_vec(values, shape, device)
}

/// Named trainable parameters, in a fixed order (the order of checkpoints and of the optimizer state).
#[derive(Debug)]
pub struct Params {
    names: Vec<String>,
    vars: Vec<Var>,
    index: HashMap<String, usize>,
}

impl Params {
    pub fn new() -> Params {
        Params { names: Vec::new(), vars: Vec::new(), index: HashMap::new() }
    }

    pub fn insert(&mut self, name: &str, tensor: &Tensor) -> candle_core::Result<()> {
        let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?.contiguous()?)?;
        match self.index.get(name) {
            Some(&i) => self.vars[i] = var,
            None => {
                self.index.insert(name.to_string(), self.names.len());
                self.names.push(name.to_string());
                self.vars.push(var);
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.index.get(name).map(|&i| &self.vars[i])
    }

    pub fn tensor(&self, name: &str) -> Result<Tensor, RewardError> {
        self.get(name).map(|v| v.as_tensor().clone()).ok_or_else(|| RewardError::MissingTensor { name: name.into() })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.names.iter().zip(&self.vars)
    }

    pub fn count(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::new()
    }
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(params: &Params, prefix: &str) -> Result<Linear, RewardError> {
        Ok(Linear {
            weight: params.tensor(&format!("{prefix}.weight"))?,
            bias: params.tensor(&format!("{prefix}.bias"))?,
        })
    }

    /// `x · Wᵀ + b` for `x` of shape (N, in).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::linear(x, &self.weight, &self.bias)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(params: &Params, prefix: &str, eps: f64) -> Result<LayerNorm, RewardError> {
        Ok(LayerNorm {
            weight: params.tensor(&format!("{prefix}.weight"))?,
            bias: params.tensor(&format!("{prefix}.bias"))?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The BERT encoder with its pooler; see the [module docs](self).
pub struct Bert {
    config: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Linear,
}

/// One padded batch of token ids.
#[derive(Clone, Debug)]
pub struct Batch {
    /// (B, T) u32
    pub input_ids: Tensor,
    /// (B, T) u32
    pub token_type_ids: Tensor,
    /// (B, T) f32, 1 for tokens and 0 for padding
    pub attention_mask: Tensor,
}

impl Batch {
    /// Pads `rows` (ids, token types) on the right to the longest.
    pub fn new(rows: &[(&[u32], &[u32])], pad_id: u32, device: &Device) -> candle_core::Result<Batch> {
        let b = rows.len();
        let t = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, (row_ids, row_types)) in rows.iter().enumerate() {
            ids[r * t..r * t + row_ids.len()].copy_from_slice(row_ids);
            types[r * t..r * t + row_types.len()].copy_from_slice(row_types);
            mask[r * t..r * t + row_ids.len()].iter_mut().for_each(|m| *m = 1.0);
        }
        Ok(Batch {
            input_ids: Tensor::from_vec(ids, (b, t), device)?,
            token_type_ids: Tensor::from_vec(types, (b, t), device)?,
            attention_mask: Tensor::from_vec(mask, (b, t), device)?,
        })
    }
}

impl Bert {
    /// Builds the model over parameters named as in [`BertConfig::parameter_shapes`].
    pub fn new(config: &BertConfig, params: &Params) -> Result<Bert, RewardError> {
        let eps = config.layer_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                query: Linear::new(params, &format!("{p}.attention.self.query"))?,
                key: Linear::new(params, &format!("{p}.attention.self.key"))?,
                value: Linear::new(params, &format!("{p}.attention.self.value"))?,
                attention_out: Linear::new(params, &format!("{p}.attention.output.dense"))?,
                attention_norm: LayerNorm::new(params, &format!("{p}.attention.output.LayerNorm"), eps)?,
                intermediate: Linear::new(params, &format!("{p}.intermediate.dense"))?,
                output: Linear::new(params, &format!("{p}.output.dense"))?,
                output_norm: LayerNorm::new(params, &format!("{p}.output.LayerNorm"), eps)?,
            });
        }
        Ok(Bert {
            config: config.clone(),
            word: params.tensor("embeddings.word_embeddings.weight")?,
            position: params.tensor("embeddings.position_embeddings.weight")?,
            token_type: params.tensor("embeddings.token_type_embeddings.weight")?,
            embeddings_norm: LayerNorm::new(params, "embeddings.LayerNorm", eps)?,
            layers,
            pooler: Linear::new(params, "pooler.dense")?,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden states, (B, T, H).
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let (b, t) = batch.input_ids.dims2()?;
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let dh = h / heads;
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's {}",
                self.config.max_position_embeddings
            );
        }
        let words = self.word.embedding(&batch.input_ids.flatten_all()?)?.reshape((b, t, h))?;
        let types = self.token_type.embedding(&batch.token_type_ids.flatten_all()?)?.reshape((b, t, h))?;
        let positions = self.position.narrow(0, 0, t)?;
        let x = words.add(&types)?.broadcast_add(&positions)?;
        let mut x = self.embeddings_norm.forward(&x.reshape((b * t, h))?)?;

        // (B, T): 0 for tokens, −1e9 for padding, added to every query's scores.
        let mask_bias = ((batch.attention_mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?;
        let mask = Mask { key_bias: Some(&mask_bias), causal: false };
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in &self.layers {
            // (B·T, H) projections viewed as (B, heads, T, dh), not copied.
            let split = |y: Tensor| y.reshape((b, t, heads, dh))?.transpose(1, 2);
            let q = split(layer.query.forward(&x)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let context = attention(&q, &k, &v, mask, scale)?.reshape((b * t, h))?;
            let attended = layer.attention_norm.forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let inner = ops::gelu(&layer.intermediate.forward(&attended)?)?;
            x = layer.output_norm.forward(&(layer.output.forward(&inner)? + &attended)?)?;
        }
        x.reshape((b, t, h))
    }

    /// HF's pooler output: `tanh(dense(hidden[:, 0]))`, (B, H).
    pub fn pool(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        self.pooler.forward(&cls)?.tanh()
    }
}

/// Mean of the hidden states over the attention mask, then L2-normalised, (B, H): the
/// sentence embedding of sentence-transformers' all-MiniLM-L6-v2 (Pooling + Normalize).
pub fn mean_pool_normalized(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (B, T, 1)
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (B, H)
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (B, 1)
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}
