//! Llama and Qwen2 decoders as reward-model backbones: the same computation as HF
//! transformers' `LlamaModel` / `Qwen2Model`, with last-token pooling as their
//! `…ForSequenceClassification` does it.
//!
//! ```text
//! ids ─► embed_tokens
//!   └─► N × [ RMSNorm ─► causal self-attention (RoPE on q and k, grouped k/v heads) ─► +residual
//!            RMSNorm ─► down( silu(gate(x)) · up(x) ) ─► +residual ]
//!   └─► RMSNorm ─► hidden states (B, T, H)
//! pooling: the hidden state of each row's last token that is not the pad id
//! reward = score(pooled)                                    score: Linear(H → 1), no bias
//! ```
//!
//! Parameter names are HF's (`model.embed_tokens.weight`,
//! `model.layers.3.self_attn.q_proj.weight`, `model.norm.weight`, `score.weight`), so a
//! `…ForCausalLM` checkpoint loads by name (its `lm_head` is not used) and an export loads
//! in `AutoModelForSequenceClassification`. Qwen2 differs from Llama only in the biases of
//! `q_proj`, `k_proj` and `v_proj`; Llama's `attention_bias` and `mlp_bias` options are
//! read too. RoPE is HF's default (`rotate_half`, `rope_theta`) or `rope_scaling` of type
//! `llama3`; other scalings are refused by name rather than computed wrongly.
//!
//! Everything is built from candle's differentiable operations and the engine's attention op
//! ([`super::attention`], causal and grouped, with its own backward pass), so the trainer
//! backpropagates through it unchanged.
//! Batches are padded on the right, so with the causal mask a real token never attends to
//! padding and no padding mask is needed. Weights are kept in f32 whatever the checkpoint's
//! dtype.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::RewardError;
use super::attention::{Mask, attention};
use super::bert::Params;

/// The fields of a Llama/Qwen2 `config.json` that the computation needs (the export keeps
/// the rest verbatim).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// `"llama"` or `"qwen2"`.
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".into()
}
fn default_init_range() -> f64 {
    0.02
}

/// The `model_type`s this module computes.
pub const DECODER_TYPES: [&str; 2] = ["llama", "qwen2"];

impl DecoderConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<DecoderConfig, RewardError> {
        super::bert::load_config(path, DecoderConfig::validate)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !DECODER_TYPES.contains(&self.model_type.as_str()) {
            return Err(format!("model_type {:?} is not a decoder this engine runs (llama, qwen2)", self.model_type));
        }
        if self.hidden_act != "silu" {
            return Err(format!("hidden_act {:?} is not supported (only \"silu\")", self.hidden_act));
        }
        let heads = self.num_attention_heads;
        if heads == 0 || !heads.is_multiple_of(self.kv_heads().max(1)) || self.kv_heads() == 0 {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {}",
                self.kv_heads()
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(format!("hidden_size {} is not a multiple of num_attention_heads {heads}", self.hidden_size));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} is odd; RoPE needs an even one", self.head_dim()));
        }
        if self.use_sliding_window {
            return Err("use_sliding_window = true is not supported (full causal attention only)".into());
        }
        self.rope_inv_freq()?;
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v projections carry biases (always for Qwen2; `attention_bias` for Llama).
    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Every parameter of the backbone: HF name and shape, in a fixed order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, dh) = (self.hidden_size, self.intermediate_size, self.head_dim());
        let (q, kv) = (self.num_attention_heads * dh, self.kv_heads() * dh);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab_size, h])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{p}.{name}"), shape));
            push("input_layernorm.weight", vec![h]);
            for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                push(&format!("self_attn.{proj}.weight"), vec![rows, h]);
                if self.qkv_bias() {
                    push(&format!("self_attn.{proj}.bias"), vec![rows]);
                }
            }
            push("self_attn.o_proj.weight", vec![h, q]);
            if self.attention_bias {
                push("self_attn.o_proj.bias", vec![h]);
            }
            push("post_attention_layernorm.weight", vec![h]);
            for (proj, shape) in [("gate_proj", vec![i, h]), ("up_proj", vec![i, h]), ("down_proj", vec![h, i])] {
                let rows = shape[0];
                push(&format!("mlp.{proj}.weight"), shape);
                if self.mlp_bias {
                    push(&format!("mlp.{proj}.bias"), vec![rows]);
                }
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        out
    }

    /// RoPE's inverse frequencies, `1 / theta^(2j / head_dim)`, with `llama3` scaling applied
    /// when `rope_scaling` asks for it (as transformers' `_compute_llama3_parameters`).
    pub fn rope_inv_freq(&self) -> Result<Vec<f64>, String> {
        let dh = self.head_dim();
        let base: Vec<f64> = (0..dh / 2).map(|j| 1.0 / self.rope_theta.powf(2.0 * j as f64 / dh as f64)).collect();
        let Some(scaling) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) else { return Ok(base) };
        let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|v| v.as_str()).unwrap_or("");
        match kind {
            "default" => Ok(base),
            "llama3" => {
                let field = |name: &str| {
                    scaling.get(name).and_then(|v| v.as_f64()).ok_or_else(|| format!("rope_scaling.{name} is missing"))
                };
                let factor = field("factor")?;
                let (low, high) = (field("low_freq_factor")?, field("high_freq_factor")?);
                let old_len = field("original_max_position_embeddings")?;
                let (low_wavelen, high_wavelen) = (old_len / low, old_len / high);
                Ok(base
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect())
            }
            other => Err(format!("rope_scaling type {other:?} is not supported (default, llama3)")),
        }
    }
}

pub use super::bert::init_tensor;

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(params: &Params, prefix: &str, bias: bool) -> Result<Linear, RewardError> {
        Ok(Linear {
            weight: params.tensor(&format!("{prefix}.weight"))?,
            bias: if bias { Some(params.tensor(&format!("{prefix}.bias"))?) } else { None },
        })
    }

    /// `x · Wᵀ (+ b)` for `x` of shape (N, in).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(weight)
}

struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The decoder; see the [module docs](self).
pub struct Decoder {
    config: DecoderConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    inv_freq: Vec<f64>,
}

impl Decoder {
    /// Builds the model over parameters named as in [`DecoderConfig::parameter_shapes`].
    pub fn new(config: &DecoderConfig, params: &Params) -> Result<Decoder, RewardError> {
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        let (qkv_bias, mlp_bias) = (config.qkv_bias(), config.mlp_bias);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                input_norm: params.tensor(&format!("{p}.input_layernorm.weight"))?,
                q: Linear::new(params, &format!("{p}.self_attn.q_proj"), qkv_bias)?,
                k: Linear::new(params, &format!("{p}.self_attn.k_proj"), qkv_bias)?,
                v: Linear::new(params, &format!("{p}.self_attn.v_proj"), qkv_bias)?,
                o: Linear::new(params, &format!("{p}.self_attn.o_proj"), config.attention_bias)?,
                post_norm: params.tensor(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: Linear::new(params, &format!("{p}.mlp.gate_proj"), mlp_bias)?,
                up: Linear::new(params, &format!("{p}.mlp.up_proj"), mlp_bias)?,
                down: Linear::new(params, &format!("{p}.mlp.down_proj"), mlp_bias)?,
            });
        }
        Ok(Decoder {
            config: config.clone(),
            embed: params.tensor("model.embed_tokens.weight")?,
            layers,
            norm: params.tensor("model.norm.weight")?,
            inv_freq: config.rope_inv_freq().map_err(RewardError::Invalid)?,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// cos and sin of every position's RoPE angles, (T, head_dim) each, halves repeated as HF does.
    fn rope_tables(&self, t: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let dh = self.config.head_dim();
        let mut cos = Vec::with_capacity(t * dh);
        let mut sin = Vec::with_capacity(t * dh);
        for pos in 0..t {
            for _half in 0..2 {
                for f in &self.inv_freq {
                    // HF computes the angle in f32; so do we, then cos/sin of it.
                    let angle = (pos as f32) * (*f as f32);
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        Ok((Tensor::from_vec(cos, (t, dh), device)?, Tensor::from_vec(sin, (t, dh), device)?))
    }

    /// The last hidden states after the final norm, (B, T, H), for right-padded ids (B, T).
    pub fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let c = &self.config;
        let (h, heads, kv_heads, dh) = (c.hidden_size, c.num_attention_heads, c.kv_heads(), c.head_dim());
        if t > c.max_position_embeddings {
            candle_core::bail!("sequence of {t} tokens is longer than the model's {}", c.max_position_embeddings);
        }
        let device = input_ids.device();
        let (cos, sin) = self.rope_tables(t, device)?;
        let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
            // x · cos + rotate_half(x) · sin, rotate_half(x) = [−x₂, x₁]
            let x1 = x.narrow(D::Minus1, 0, dh / 2)?;
            let x2 = x.narrow(D::Minus1, dh / 2, dh / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)?.add(&rotated.broadcast_mul(&sin)?)
        };
        let scale = 1.0 / (dh as f64).sqrt();

        let mut x = self.embed.embedding(&input_ids.flatten_all()?)?; // (B·T, H)
        for layer in &self.layers {
            let normed = rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            let split = |y: Tensor, n: usize| -> candle_core::Result<Tensor> {
                y.reshape((b, t, n, dh))?.transpose(1, 2)?.contiguous()
            };
            let q = rope(&split(layer.q.forward(&normed)?, heads)?)?;
            let k = rope(&split(layer.k.forward(&normed)?, kv_heads)?)?;
            let v = split(layer.v.forward(&normed)?, kv_heads)?;
            // Grouped heads (each k/v head serves heads / kv_heads query heads) and the causal
            // mask are the attention op's.
            let causal = Mask { key_bias: None, causal: true };
            let context = attention(&q, &k, &v, causal, scale)?.reshape((b * t, heads * dh))?;
            x = (x + layer.o.forward(&context)?)?;
            let normed = rms_norm(&x, &layer.post_norm, c.rms_norm_eps)?;
            let inner = layer.gate.forward(&normed)?.silu()?.mul(&layer.up.forward(&normed)?)?;
            x = (x + layer.down.forward(&inner)?)?;
        }
        rms_norm(&x, &self.norm, c.rms_norm_eps)?.reshape((b, t, h))
    }
}

/// Each row's pooled position as transformers' `…ForSequenceClassification` picks it: the
/// last position whose id is not `pad_id` (0 when every id is).
pub fn last_token_positions(input_ids: &Tensor, pad_id: u32) -> candle_core::Result<Vec<usize>> {
    let rows = input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    Ok(rows.iter().map(|row| row.iter().rposition(|&id| id != pad_id).unwrap_or(0)).collect())
}

/// The hidden states (B, T, H) at one position per row, (B, H); differentiable.
pub fn gather_rows(hidden: &Tensor, positions: &[usize]) -> candle_core::Result<Tensor> {
    let (b, t, h) = hidden.dims3()?;
    let flat: Vec<u32> = positions.iter().enumerate().map(|(r, &p)| (r * t + p) as u32).collect();
    let index = Tensor::from_vec(flat, b, hidden.device())?;
    hidden.reshape((b * t, h))?.index_select(&index, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::rng::SplitMix64;

    fn config(model_type: &str) -> DecoderConfig {
        DecoderConfig {
            model_type: model_type.into(),
            vocab_size: 50,
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            head_dim: None,
            max_position_embeddings: 32,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            use_sliding_window: false,
            initializer_range: 0.2,
        }
    }

    fn model(config: &DecoderConfig) -> (Params, Decoder) {
        let mut rng = SplitMix64::new(5);
        let mut params = Params::new();
        for (name, shape) in config.parameter_shapes() {
            let t = init_tensor(&name, &shape, config.initializer_range, &mut rng, &Device::Cpu).unwrap();
            params.insert(&name, &t).unwrap();
        }
        let decoder = Decoder::new(config, &params).unwrap();
        (params, decoder)
    }

    #[test]
    fn qwen2_has_qkv_biases_and_llama_does_not() {
        let names = |c: &DecoderConfig| c.parameter_shapes().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let qwen = names(&config("qwen2"));
        let llama = names(&config("llama"));
        assert!(qwen.contains(&"model.layers.1.self_attn.k_proj.bias".to_string()));
        assert!(!qwen.contains(&"model.layers.1.self_attn.o_proj.bias".to_string()));
        assert!(!llama.iter().any(|n| n.ends_with(".bias")));
        assert_eq!(qwen.len(), llama.len() + 3 * 2);
    }

    #[test]
    fn a_token_sees_only_its_past_so_right_padding_changes_nothing_before_it() {
        let c = config("llama");
        let (_, decoder) = model(&c);
        let short = Tensor::new(&[[3u32, 7, 9]], &Device::Cpu).unwrap();
        let padded = Tensor::new(&[[3u32, 7, 9, 0, 0], [3, 7, 9, 11, 12]], &Device::Cpu).unwrap();
        let a = decoder.forward(&short).unwrap().to_vec3::<f32>().unwrap();
        let b = decoder.forward(&padded).unwrap().to_vec3::<f32>().unwrap();
        for row in &b {
            for pos in 0..3 {
                for (x, y) in a[0][pos].iter().zip(&row[pos]) {
                    assert!((x - y).abs() < 1e-5, "position {pos}: {x} vs {y}");
                }
            }
        }
        // A later token does see the earlier ones.
        assert!(b[1][4].iter().zip(&b[0][4]).any(|(x, y)| (x - y).abs() > 1e-4));
    }

    #[test]
    fn pooling_takes_the_last_token_that_is_not_padding() {
        let ids = Tensor::new(&[[5u32, 6, 0, 0], [0, 0, 0, 0], [1, 0, 2, 3]], &Device::Cpu).unwrap();
        assert_eq!(last_token_positions(&ids, 0).unwrap(), vec![1, 0, 3]);
        let hidden = Tensor::arange(0f32, 24., &Device::Cpu).unwrap().reshape((3, 4, 2)).unwrap();
        let pooled = gather_rows(&hidden, &[1, 0, 3]).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![2., 3.], vec![8., 9.], vec![22., 23.]]);
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let c = config("qwen2");
        let (params, decoder) = model(&c);
        let ids = Tensor::new(&[[3u32, 7, 9, 4], [8, 2, 0, 0]], &Device::Cpu).unwrap();
        let hidden = decoder.forward(&ids).unwrap();
        let pooled = gather_rows(&hidden, &last_token_positions(&ids, 0).unwrap()).unwrap();
        let grads = pooled.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in params.iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm.is_finite() && norm > 0.0, "{name}: gradient norm {norm}");
        }
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let mut c = config("mistral");
        assert!(c.validate().unwrap_err().contains("mistral"));
        c = config("llama");
        c.rope_scaling = Some(serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
        assert!(c.validate().unwrap_err().contains("yarn"));
        c.rope_scaling = Some(serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}));
        assert!(c.validate().is_ok());
        c.use_sliding_window = true;
        assert!(c.validate().unwrap_err().contains("sliding"));
    }
}
