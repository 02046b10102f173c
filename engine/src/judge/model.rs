//! A decoder-only transformer of the Llama family (Llama 1–3, SmolLM/SmolLM2, Mistral-style
//! grouped-query attention) and Qwen2, loaded from a GGUF file or a safetensors checkpoint,
//! with an explicit, shareable KV cache.
//!
//! Why not `candle_transformers::models::{quantized_llama, quantized_qwen2, llama, qwen2}`:
//! they are four models with four loaders, their KV cache lives inside the model (the
//! shared prefix needs a clone of the whole model per question), their only way to
//! dequantise GGUF weights to f32 is the process-wide `CANDLE_DEQUANTIZE_ALL` variable, and
//! the safetensors llama cannot continue a cached prefix with more than one token. Here one
//! model serves all four cases; it computes exactly what they compute (RMSNorm, RoPE —
//! interleaved for llama GGUFs, whose q/k rows llama.cpp permutes, half-split otherwise —,
//! grouped-query attention, SwiGLU) in f32 activations.
//!
//! The KV cache is a list of blocks per layer (one per prefill chunk): a continuation
//! attends to the cached blocks and its own keys without copying the cache, so any number
//! of threads can continue the same cached prefix at once.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, IndexOp, Module, Tensor};

use super::JudgeLoadError;
use super::quantized::{Int8Matrix, QuantizedMatrix};

/// The architectures this model implements.
pub const SUPPORTED_ARCHITECTURES: &str = "llama (incl. SmolLM/SmolLM2, Mistral), qwen2";

/// Which architecture a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// How the weights are held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightPrecision {
    /// Every matrix dequantised (or converted) to f32 at load.
    F32,
    /// GGUF matrices kept in their quantised format: multiplied in f32 tile by tile on the
    /// CPU ([`super::quantized`]), by candle's quantised kernels on other devices.
    Quantized,
    /// GGUF matrices kept in their quantised format and multiplied with int8 activations by
    /// integer kernels, as llama.cpp does (CPU; formats without such kernels fall back to
    /// `Quantized`'s f32 tiles, and other devices to candle's quantised kernels).
    Int8,
}

impl WeightPrecision {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightPrecision::F32 => "f32",
            WeightPrecision::Quantized => "quantized",
            WeightPrecision::Int8 => "int8",
        }
    }
}

/// The hyper-parameters the forward pass needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    /// RoPE on pairs (2i, 2i+1) (llama GGUF) rather than (i, i + d/2).
    pub rope_interleaved: bool,
    /// The context length the model was trained for.
    pub context_length: usize,
    /// Whether q, k and v projections have biases (Qwen2, some llamas).
    pub qkv_bias: bool,
    /// Whether the output projection has a bias (llama with `attention_bias`).
    pub o_bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Llama3Scaling {
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_context: f32,
}

/// A weight matrix as a linear layer multiplies with it.
enum Matrix {
    /// f32 weights, or quantised weights off the CPU (candle's kernels, which round the
    /// activations to 8 bits).
    Candle(QMatMul),
    /// Quantised weights on the CPU, multiplied in f32 (shared by a tied embedding and
    /// output layer).
    Quantized(Arc<QuantizedMatrix>),
    /// Quantised weights on the CPU, multiplied with int8 activations.
    Int8(Arc<Int8Matrix>),
}

impl Matrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matrix::Candle(m) => m.forward(x),
            Matrix::Quantized(m) => m.forward(x),
            Matrix::Int8(m) => m.forward(x),
        }
    }
}

/// The token embedding: f32 rows, or kept quantised on the CPU (dequantised per lookup).
enum Embedding {
    Dense(Tensor),
    Quantized(Arc<QuantizedMatrix>),
}

impl Embedding {
    /// The embeddings of `tokens`, `(1, tokens, hidden)`.
    fn lookup(&self, tokens: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        let rows = match self {
            Embedding::Dense(t) => t.index_select(&Tensor::new(tokens, device)?, 0)?,
            Embedding::Quantized(m) => m.rows(tokens)?,
        };
        rows.unsqueeze(0)
    }
}

struct Linear {
    weight: Matrix,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Cached keys and values: per layer, blocks of `(k, v)` shaped `(1, kv_heads, len, head_dim)`.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Vec<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// The number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The model. Immutable after loading: `forward` takes `&self`, so one `Transformer` serves
/// every thread.
pub struct Transformer {
    cfg: ModelConfig,
    precision: WeightPrecision,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Matrix,
    /// `(positions, head_dim / 2)` tables for RoPE.
    cos: Tensor,
    sin: Tensor,
    device: Device,
    params: usize,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("cfg", &self.cfg)
            .field("precision", &self.precision)
            .field("params", &self.params)
            .finish()
    }
}

/// What `forward` returns.
pub struct Forward {
    /// Logits at the last position (only when asked for).
    pub logits: Option<Vec<f32>>,
    /// The cache extended with the new tokens (only when asked for).
    pub cache: Option<KvCache>,
}

impl Transformer {
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn precision(&self) -> WeightPrecision {
        self.precision
    }

    /// How the weights are held and multiplied, as judge ids name it: `f32`; `quantized-f32`
    /// for quantised weights multiplied in f32 (the CPU); `int8` for our integer kernels with
    /// 8-bit activations (the CPU); `quantized` for candle's quantised kernels, which also
    /// round the activations to 8 bits (other devices). Ratings from two different labels
    /// are different numbers.
    pub fn arithmetic(&self) -> &'static str {
        match self.precision {
            WeightPrecision::F32 => "f32",
            WeightPrecision::Quantized if self.device.is_cpu() => "quantized-f32",
            WeightPrecision::Int8 if self.device.is_cpu() => "int8",
            WeightPrecision::Quantized | WeightPrecision::Int8 => "quantized",
        }
    }

    /// The number of weights in the checkpoint.
    pub fn params(&self) -> usize {
        self.params
    }

    /// The most positions (cached + new) a forward pass can cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `tokens` after the positions in `past`, `chunk` tokens at a time. Returns the
    /// logits at the last position if `want_logits`, and the extended cache if `want_cache`.
    pub fn forward(
        &self,
        tokens: &[u32],
        past: Option<&KvCache>,
        chunk: usize,
        want_logits: bool,
        want_cache: bool,
    ) -> candle_core::Result<Forward> {
        let start = past.map_or(0, KvCache::len);
        if tokens.is_empty() {
            candle_core::bail!("no tokens to run");
        }
        if start + tokens.len() > self.max_positions() {
            candle_core::bail!(
                "{} positions exceed the {} this judge was set up for",
                start + tokens.len(),
                self.max_positions()
            );
        }
        let mut blocks: Vec<Vec<(Tensor, Tensor)>> = match past {
            Some(cache) => cache.layers.clone(),
            None => vec![Vec::new(); self.cfg.layers],
        };
        let mut pos = start;
        let mut last_hidden = None;
        let chunks: Vec<&[u32]> = tokens.chunks(chunk.max(1)).collect();
        for (c, piece) in chunks.iter().enumerate() {
            let is_last = c + 1 == chunks.len();
            let mut h = self.embed.lookup(piece, &self.device)?;
            let lens = [piece.len()];
            let segments = Segments::new(&lens, &self.device)?;
            let rope = (self.cos.narrow(0, pos, piece.len())?, self.sin.narrow(0, pos, piece.len())?);
            for (block, kv) in self.blocks.iter().zip(blocks.iter_mut()) {
                h = self.block(block, h, &rope, &segments, kv, !is_last || want_cache)?;
            }
            pos += piece.len();
            if is_last {
                last_hidden = Some(h.i((.., piece.len() - 1, ..))?);
            }
        }
        let logits = match (want_logits, last_hidden) {
            (true, Some(h)) => {
                let h = candle_nn::ops::rms_norm(&h, &self.norm, self.cfg.rms_eps as f32)?;
                let logits = self.lm_head.forward(&h)?.to_dtype(DType::F32)?.flatten_all()?;
                Some(logits.to_vec1::<f32>()?)
            }
            _ => None,
        };
        let cache = want_cache.then_some(KvCache { layers: blocks, len: pos });
        Ok(Forward { logits, cache })
    }

    /// Runs `branches` (token sequences) as continuations of `past`, independently of each
    /// other but in one pass: each branch attends to the cache and to itself only, at
    /// positions `past.len()..`. Returns the logits at the last position of each branch. The
    /// cache is not changed.
    pub fn forward_branches(&self, branches: &[&[u32]], past: &KvCache) -> candle_core::Result<Vec<Vec<f32>>> {
        let lens: Vec<usize> = branches.iter().map(|b| b.len()).collect();
        if lens.is_empty() || lens.contains(&0) {
            candle_core::bail!("no tokens to run");
        }
        let longest = lens.iter().copied().max().unwrap_or(0);
        if past.len() + longest > self.max_positions() {
            candle_core::bail!(
                "{} positions exceed the {} this judge was set up for",
                past.len() + longest,
                self.max_positions()
            );
        }
        let tokens: Vec<u32> = branches.concat();
        let positions: Vec<u32> =
            lens.iter().flat_map(|&len| (past.len()..past.len() + len).map(|p| p as u32)).collect();
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        let rope = (self.cos.index_select(&positions, 0)?, self.sin.index_select(&positions, 0)?);
        let segments = Segments::new(&lens, &self.device)?;
        let mut h = self.embed.lookup(&tokens, &self.device)?;
        let mut blocks = past.layers.clone();
        for (block, kv) in self.blocks.iter().zip(blocks.iter_mut()) {
            h = self.block(block, h, &rope, &segments, kv, false)?;
        }
        let lasts: Vec<u32> = lens
            .iter()
            .scan(0usize, |end, &len| {
                *end += len;
                Some(*end as u32 - 1)
            })
            .collect();
        let lasts = Tensor::new(lasts.as_slice(), &self.device)?;
        let h = h.index_select(&lasts, 1)?;
        let h = candle_nn::ops::rms_norm(&h, &self.norm, self.cfg.rms_eps as f32)?;
        self.lm_head.forward(&h)?.to_dtype(DType::F32)?.squeeze(0)?.to_vec2::<f32>()
    }

    /// One transformer block on `h`.
    fn block(
        &self,
        block: &Block,
        h: Tensor,
        rope: &(Tensor, Tensor),
        segments: &Segments,
        kv: &mut Vec<(Tensor, Tensor)>,
        keep: bool,
    ) -> candle_core::Result<Tensor> {
        let eps = self.cfg.rms_eps as f32;
        let x = candle_nn::ops::rms_norm(&h, &block.attn_norm, eps)?;
        let h = (self.attention(block, &x, rope, segments, kv, keep)? + h)?;
        let x = candle_nn::ops::rms_norm(&h, &block.ffn_norm, eps)?;
        let m = block.down.forward(&(candle_nn::ops::silu(&block.gate.forward(&x)?)? * block.up.forward(&x)?)?)?;
        m + h
    }

    /// Self-attention of `x` (`(1, s, hidden)`, RoPE tables `rope` of its positions) over the
    /// cached blocks and itself (each of its `segments` causal over itself); appends its keys
    /// and values to `kv` when `keep`.
    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        segments: &Segments,
        kv: &mut Vec<(Tensor, Tensor)>,
        keep: bool,
    ) -> candle_core::Result<Tensor> {
        let (_, s, _) = x.dims3()?;
        let cfg = &self.cfg;
        let q = block.q.forward(x)?.reshape((1, s, cfg.heads, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
        let k = block.k.forward(x)?.reshape((1, s, cfg.kv_heads, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
        let v = block.v.forward(x)?.reshape((1, s, cfg.kv_heads, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
        let (cos, sin) = rope;
        let (q, k) = if cfg.rope_interleaved {
            (candle_nn::rotary_emb::rope_i(&q, cos, sin)?, candle_nn::rotary_emb::rope_i(&k, cos, sin)?)
        } else {
            (candle_nn::rotary_emb::rope(&q, cos, sin)?, candle_nn::rotary_emb::rope(&k, cos, sin)?)
        };
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let y = match super::attention::attention(&q, kv, &k, &v, segments.lens, scale as f32)? {
            Some(y) => y,
            None => composed_attention(&q, kv, &k, &v, segments, scale)?,
        };
        if keep {
            kv.push((k, v));
        }
        block.o.forward(&y)
    }
}

/// [`super::attention::attention`] with candle's ops, for the devices that kernel does not
/// cover (CUDA): the same arguments and result, the branches' masking through an additive
/// mask over all n new positions. Grouped-query attention without repeating k and v: the
/// `rep` query heads of a kv head become `rep · n` rows against that kv head.
fn composed_attention(
    q: &Tensor,
    past: &[(Tensor, Tensor)],
    k: &Tensor,
    v: &Tensor,
    segments: &Segments,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (_, heads, s, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let rep = heads / kv_heads;
    let q = (q * scale)?.reshape((1, kv_heads, rep * s, head_dim))?;
    let mut scores = Vec::with_capacity(past.len() + 1);
    for (k_past, _) in past {
        scores.push(q.matmul(&k_past.t()?)?);
    }
    let own = q.matmul(&k.t()?)?;
    let mask = match &segments.mask {
        Some(mask) => Some(mask.clone()),
        None => causal_mask(segments.lens, q.device())?,
    };
    let own = match mask {
        Some(mask) => {
            own.reshape((1, kv_heads, rep, s, s))?.broadcast_add(&mask)?.reshape((1, kv_heads, rep * s, s))?
        }
        None => own,
    };
    scores.push(own);
    let probs = candle_nn::ops::softmax_last_dim(&Tensor::cat(&scores, D::Minus1)?)?;

    let mut y: Option<Tensor> = None;
    let mut offset = 0;
    for v_block in past.iter().map(|(_, v)| v).chain(std::iter::once(v)) {
        let len = v_block.dim(2)?;
        let p = probs.narrow(D::Minus1, offset, len)?.contiguous()?;
        let part = p.matmul(v_block)?;
        y = Some(match y {
            Some(y) => (y + part)?,
            None => part,
        });
        offset += len;
    }
    let Some(y) = y else { candle_core::bail!("attention over no keys") };
    y.reshape((1, heads, s, head_dim))?.transpose(1, 2)?.reshape((1, s, heads * head_dim))
}

/// The new positions of one forward pass: consecutive branches of `lens` tokens, each causal
/// over itself. `mask` is the same as an additive (n, n) mask, made up front only for the
/// devices where attention runs on candle's ops (see [`super::attention`]).
struct Segments<'a> {
    lens: &'a [usize],
    mask: Option<Tensor>,
}

impl<'a> Segments<'a> {
    fn new(lens: &'a [usize], device: &Device) -> candle_core::Result<Segments<'a>> {
        let mask = if device.is_cpu() { None } else { causal_mask(lens, device)? };
        Ok(Segments { lens, mask })
    }
}

/// An additive mask over consecutive independent sequences of lengths `lens` (`(n, n)`, `n`
/// their total): 0 where a token may attend (an earlier or the same token of its own
/// sequence), -inf elsewhere; `None` for a single token.
fn causal_mask(lens: &[usize], device: &Device) -> candle_core::Result<Option<Tensor>> {
    let n: usize = lens.iter().sum();
    if n == 1 {
        return Ok(None);
    }
    let mut values = vec![f32::NEG_INFINITY; n * n];
    let mut start = 0;
    for &len in lens {
        for i in start..start + len {
            values[i * n + start..=i * n + i].fill(0.0);
        }
        start += len;
    }
    Tensor::from_vec(values, (n, n), device).map(Some)
}

/// RoPE tables for `positions` positions: `(cos, sin)`, each `(positions, head_dim / 2)`.
fn rope_tables(
    head_dim: usize,
    theta: f32,
    positions: usize,
    freq_factors: Option<&[f32]>,
    llama3: Option<Llama3Scaling>,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let mut inv_freq: Vec<f32> =
        (0..head_dim).step_by(2).map(|i| 1.0 / theta.powf(i as f32 / head_dim as f32)).collect();
    if let Some(factors) = freq_factors {
        for (f, factor) in inv_freq.iter_mut().zip(factors) {
            *f /= factor;
        }
    }
    if let Some(s) = llama3 {
        let low_wavelen = s.original_context / s.low_freq_factor;
        let high_wavelen = s.original_context / s.high_freq_factor;
        for f in inv_freq.iter_mut() {
            let wavelen = 2.0 * std::f32::consts::PI / *f;
            if wavelen > low_wavelen {
                *f /= s.factor;
            } else if wavelen >= high_wavelen {
                let smooth =
                    (s.original_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
            }
        }
    }
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for &f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((Tensor::from_vec(cos, (positions, half), device)?, Tensor::from_vec(sin, (positions, half), device)?))
}

/// Tensor names of one checkpoint format.
struct Names {
    embed: &'static str,
    norm: &'static str,
    lm_head: &'static str,
    layer: fn(usize, &str) -> String,
}

const GGUF_NAMES: Names = Names {
    embed: "token_embd.weight",
    norm: "output_norm.weight",
    lm_head: "output.weight",
    layer: |i, part| {
        let name = match part {
            "attn_norm" => "attn_norm.weight",
            "q" => "attn_q.weight",
            "k" => "attn_k.weight",
            "v" => "attn_v.weight",
            "o" => "attn_output.weight",
            "q_bias" => "attn_q.bias",
            "k_bias" => "attn_k.bias",
            "v_bias" => "attn_v.bias",
            "o_bias" => "attn_output.bias",
            "ffn_norm" => "ffn_norm.weight",
            "gate" => "ffn_gate.weight",
            "up" => "ffn_up.weight",
            "down" => "ffn_down.weight",
            other => other,
        };
        format!("blk.{i}.{name}")
    },
};

const HF_NAMES: Names = Names {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head.weight",
    layer: |i, part| {
        let name = match part {
            "attn_norm" => "input_layernorm.weight",
            "q" => "self_attn.q_proj.weight",
            "k" => "self_attn.k_proj.weight",
            "v" => "self_attn.v_proj.weight",
            "o" => "self_attn.o_proj.weight",
            "q_bias" => "self_attn.q_proj.bias",
            "k_bias" => "self_attn.k_proj.bias",
            "v_bias" => "self_attn.v_proj.bias",
            "o_bias" => "self_attn.o_proj.bias",
            "ffn_norm" => "post_attention_layernorm.weight",
            "gate" => "mlp.gate_proj.weight",
            "up" => "mlp.up_proj.weight",
            "down" => "mlp.down_proj.weight",
            other => other,
        };
        format!("model.layers.{i}.{name}")
    },
};

/// Where weights come from.
trait WeightSource {
    fn path(&self) -> &Path;
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// A weight matrix for a matmul.
    fn matrix(&mut self, name: &str, precision: WeightPrecision, device: &Device) -> Result<Matrix, JudgeLoadError>;
    /// Any tensor, as f32.
    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, JudgeLoadError>;
}

struct GgufSource<'r, R> {
    path: PathBuf,
    content: &'r gguf_file::Content,
    reader: &'r mut R,
}

impl<R: Read + Seek> GgufSource<'_, R> {
    fn read(&mut self, name: &str, device: &Device) -> Result<QTensor, JudgeLoadError> {
        if !self.content.tensor_infos.contains_key(name) {
            return Err(JudgeLoadError::MissingTensor { path: self.path.clone(), name: name.into() });
        }
        self.content.tensor(self.reader, name, device).map_err(|e| JudgeLoadError::CorruptGguf {
            path: self.path.clone(),
            reason: format!("tensor `{name}`: {e}"),
        })
    }
}

impl<R: Read + Seek> WeightSource for GgufSource<'_, R> {
    fn path(&self) -> &Path {
        &self.path
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims().to_vec())
    }

    fn matrix(&mut self, name: &str, precision: WeightPrecision, device: &Device) -> Result<Matrix, JudgeLoadError> {
        let q = self.read(name, device)?;
        let dense =
            precision == WeightPrecision::F32 || matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if dense {
            let t = q.dequantize(device).map_err(|e| candle_err(&self.path, e))?;
            Ok(Matrix::Candle(QMatMul::Tensor(t)))
        } else if device.is_cpu() && precision == WeightPrecision::Int8 && Int8Matrix::supports(q.dtype()) {
            let m = Int8Matrix::new(&q).map_err(|e| candle_err(&self.path, e))?;
            Ok(Matrix::Int8(Arc::new(m)))
        } else if device.is_cpu() {
            let m = QuantizedMatrix::new(&q).map_err(|e| candle_err(&self.path, e))?;
            Ok(Matrix::Quantized(Arc::new(m)))
        } else {
            Ok(Matrix::Candle(QMatMul::QTensor(Arc::new(q))))
        }
    }

    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, JudgeLoadError> {
        let q = self.read(name, device)?;
        q.dequantize(device).map_err(|e| candle_err(&self.path, e))
    }
}

struct SafetensorsSource {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl SafetensorsSource {
    fn take(&mut self, name: &str, device: &Device) -> Result<Tensor, JudgeLoadError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| JudgeLoadError::MissingTensor { path: self.path.clone(), name: name.into() })?;
        t.to_dtype(DType::F32).and_then(|t| t.to_device(device)).map_err(|e| candle_err(&self.path, e))
    }
}

impl WeightSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.dims().to_vec())
    }

    fn matrix(&mut self, name: &str, _: WeightPrecision, device: &Device) -> Result<Matrix, JudgeLoadError> {
        Ok(Matrix::Candle(QMatMul::Tensor(self.take(name, device)?)))
    }

    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, JudgeLoadError> {
        self.take(name, device)
    }
}

fn candle_err(path: &Path, source: candle_core::Error) -> JudgeLoadError {
    JudgeLoadError::Candle { path: path.to_path_buf(), source }
}

/// Everything `build` needs besides the weights.
struct Plan {
    cfg: ModelConfig,
    names: Names,
    tied: bool,
    freq_factors: Option<Vec<f32>>,
    llama3: Option<Llama3Scaling>,
    params: usize,
}

fn build(
    plan: Plan,
    src: &mut dyn WeightSource,
    precision: WeightPrecision,
    positions: usize,
    device: &Device,
) -> Result<Transformer, JudgeLoadError> {
    let cfg = plan.cfg;
    let names = plan.names;
    let path = src.path().to_path_buf();
    let expect = |src: &dyn WeightSource, name: &str, expected: &[usize]| -> Result<(), JudgeLoadError> {
        match src.shape(name) {
            None => Err(JudgeLoadError::MissingTensor { path: path.clone(), name: name.into() }),
            Some(found) if found != expected => Err(JudgeLoadError::TensorShape {
                path: path.clone(),
                name: name.into(),
                expected: expected.to_vec(),
                found,
            }),
            Some(_) => Ok(()),
        }
    };
    let (h, qd, kvd) = (cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
    expect(src, names.embed, &[cfg.vocab, h])?;
    expect(src, names.norm, &[h])?;
    for i in 0..cfg.layers {
        let l = |p: &str| (names.layer)(i, p);
        expect(src, &l("attn_norm"), &[h])?;
        expect(src, &l("q"), &[qd, h])?;
        expect(src, &l("k"), &[kvd, h])?;
        expect(src, &l("v"), &[kvd, h])?;
        expect(src, &l("o"), &[h, qd])?;
        expect(src, &l("ffn_norm"), &[h])?;
        expect(src, &l("gate"), &[cfg.ffn, h])?;
        expect(src, &l("up"), &[cfg.ffn, h])?;
        expect(src, &l("down"), &[h, cfg.ffn])?;
        if cfg.qkv_bias {
            expect(src, &l("q_bias"), &[qd])?;
            expect(src, &l("k_bias"), &[kvd])?;
            expect(src, &l("v_bias"), &[kvd])?;
        }
        if cfg.o_bias {
            expect(src, &l("o_bias"), &[h])?;
        }
    }
    if !plan.tied {
        expect(src, names.lm_head, &[cfg.vocab, h])?;
    }

    // Under `int8` the output layer still multiplies in f32 (dequantised tiles): its
    // product is the logits that P(yes) − P(no) is read from, so rounding the last hidden
    // state to 8 bits would add its error straight to the answer. It runs once per answer
    // position, a small share of the work. The embedding is held the same way, so a tied
    // output layer shares it.
    let head_precision = if precision == WeightPrecision::Int8 { WeightPrecision::Quantized } else { precision };
    // Kept-quantised on the CPU, the embedding stays quantised too (for SmolLM2-135M it is
    // a fifth of the weights, 113 MB in f32); elsewhere it is f32, as candle looks rows up.
    let quantized_cpu = head_precision == WeightPrecision::Quantized && device.is_cpu();
    let embed_matrix = if quantized_cpu { Some(src.matrix(names.embed, head_precision, device)?) } else { None };
    let embed = match &embed_matrix {
        Some(Matrix::Quantized(m)) => Embedding::Quantized(m.clone()),
        _ => Embedding::Dense(src.dense(names.embed, device)?),
    };
    let norm = src.dense(names.norm, device)?;
    let lm_head = if !plan.tied {
        src.matrix(names.lm_head, head_precision, device)?
    } else {
        match (embed_matrix, &embed) {
            (Some(m), _) => m,
            (None, Embedding::Dense(t)) if precision == WeightPrecision::F32 => {
                Matrix::Candle(QMatMul::Tensor(t.clone()))
            }
            (None, _) => src.matrix(names.embed, head_precision, device)?,
        }
    };
    let mut blocks = Vec::with_capacity(cfg.layers);
    for i in 0..cfg.layers {
        let l = |p: &str| (names.layer)(i, p);
        let mut linear = |w: &str, b: Option<&str>| -> Result<Linear, JudgeLoadError> {
            let weight = src.matrix(&l(w), precision, device)?;
            let bias = match b {
                Some(b) => Some(src.dense(&l(b), device)?),
                None => None,
            };
            Ok(Linear { weight, bias })
        };
        let qkv_bias = cfg.qkv_bias;
        let block = Block {
            q: linear("q", qkv_bias.then_some("q_bias"))?,
            k: linear("k", qkv_bias.then_some("k_bias"))?,
            v: linear("v", qkv_bias.then_some("v_bias"))?,
            o: linear("o", cfg.o_bias.then_some("o_bias"))?,
            gate: linear("gate", None)?,
            up: linear("up", None)?,
            down: linear("down", None)?,
            attn_norm: src.dense(&l("attn_norm"), device)?,
            ffn_norm: src.dense(&l("ffn_norm"), device)?,
        };
        blocks.push(block);
    }
    let (cos, sin) =
        rope_tables(cfg.head_dim, cfg.rope_theta, positions, plan.freq_factors.as_deref(), plan.llama3, device)
            .map_err(|e| candle_err(&path, e))?;
    Ok(Transformer {
        cfg,
        precision,
        embed,
        blocks,
        norm,
        lm_head,
        cos,
        sin,
        device: device.clone(),
        params: plan.params,
    })
}

/// A GGUF checkpoint's configuration, read from its metadata.
pub struct GgufPlan {
    plan: Plan,
}

impl GgufPlan {
    pub fn config(&self) -> &ModelConfig {
        &self.plan.cfg
    }

    pub fn params(&self) -> usize {
        self.plan.params
    }
}

/// Reads the model configuration from a GGUF's metadata and checks that this module can run
/// it.
pub fn plan_gguf(content: &gguf_file::Content, path: &Path) -> Result<GgufPlan, JudgeLoadError> {
    let missing =
        |key: &str| JudgeLoadError::MissingSetting { path: path.into(), key: key.into(), source_name: "GGUF metadata" };
    let bad = |key: &str, reason: String| JudgeLoadError::BadSetting { path: path.into(), key: key.into(), reason };
    let arch_name = content
        .metadata
        .get("general.architecture")
        .ok_or_else(|| missing("general.architecture"))?
        .to_string()
        .map_err(|_| bad("general.architecture", "not a string".into()))?
        .clone();
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => {
            return Err(JudgeLoadError::UnsupportedArchitecture {
                path: path.into(),
                architecture: other.into(),
                supported: SUPPORTED_ARCHITECTURES,
            });
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let number = |k: &str| -> Result<Option<f64>, JudgeLoadError> {
        let k = key(k);
        match content.metadata.get(&k) {
            None => Ok(None),
            Some(v) => {
                let x = match v {
                    gguf_file::Value::U8(x) => f64::from(*x),
                    gguf_file::Value::I8(x) => f64::from(*x),
                    gguf_file::Value::U16(x) => f64::from(*x),
                    gguf_file::Value::I16(x) => f64::from(*x),
                    gguf_file::Value::U32(x) => f64::from(*x),
                    gguf_file::Value::I32(x) => f64::from(*x),
                    gguf_file::Value::U64(x) => *x as f64,
                    gguf_file::Value::I64(x) => *x as f64,
                    gguf_file::Value::F32(x) => f64::from(*x),
                    gguf_file::Value::F64(x) => *x,
                    other => return Err(bad(&k, format!("expected a number, found {other:?}"))),
                };
                Ok(Some(x))
            }
        }
    };
    let count = |k: &str| -> Result<usize, JudgeLoadError> {
        match number(k)? {
            Some(x) if x >= 1.0 && x.fract() == 0.0 && x < 1e9 => Ok(x as usize),
            Some(x) => Err(bad(&key(k), format!("expected a positive integer, found {x}"))),
            None => Err(missing(&key(k))),
        }
    };
    if number("expert_count")?.unwrap_or(0.0) > 1.0 {
        return Err(JudgeLoadError::UnsupportedArchitecture {
            path: path.into(),
            architecture: format!("{arch_name} (mixture of experts)"),
            supported: SUPPORTED_ARCHITECTURES,
        });
    }
    if let Some(v) = content.metadata.get(&key("rope.scaling.type"))
        && let Ok(kind) = v.to_string()
        && kind != "none"
    {
        return Err(bad(&key("rope.scaling.type"), format!("RoPE scaling `{kind}` is not supported")));
    }
    let layers = count("block_count")?;
    let hidden = count("embedding_length")?;
    let ffn = count("feed_forward_length")?;
    let heads = count("attention.head_count")?;
    let kv_heads = match number("attention.head_count_kv")? {
        Some(_) => count("attention.head_count_kv")?,
        None => heads,
    };
    let head_dim = match number("attention.key_length")? {
        Some(_) => count("attention.key_length")?,
        None => hidden / heads,
    };
    if !heads.is_multiple_of(kv_heads) {
        return Err(bad(&key("attention.head_count_kv"), format!("{kv_heads} does not divide {heads} heads")));
    }
    if let Some(rope_dim) = number("rope.dimension_count")?
        && rope_dim as usize != head_dim
    {
        return Err(bad(
            &key("rope.dimension_count"),
            format!("partial RoPE ({rope_dim} of {head_dim}) is not supported"),
        ));
    }
    let rms_eps =
        number("attention.layer_norm_rms_epsilon")?.ok_or_else(|| missing(&key("attention.layer_norm_rms_epsilon")))?;
    let rope_theta = number("rope.freq_base")?.unwrap_or(10_000.0) as f32;
    let context_length = match number("context_length")? {
        Some(_) => count("context_length")?,
        None => 2048,
    };
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims()[0])
        .ok_or_else(|| JudgeLoadError::MissingTensor { path: path.into(), name: "token_embd.weight".into() })?;
    let qkv_bias = architecture == Architecture::Qwen2 || content.tensor_infos.contains_key("blk.0.attn_q.bias");
    let o_bias = content.tensor_infos.contains_key("blk.0.attn_output.bias");
    let tied = !content.tensor_infos.contains_key("output.weight");
    let params = content.tensor_infos.values().map(|t| t.shape.elem_count()).sum();
    let cfg = ModelConfig {
        architecture,
        layers,
        hidden,
        ffn,
        heads,
        kv_heads,
        head_dim,
        vocab,
        rms_eps,
        rope_theta,
        // llama.cpp's converter permutes llama's q/k rows for interleaved RoPE; qwen2 keeps
        // the half-split layout.
        rope_interleaved: architecture == Architecture::Llama,
        context_length,
        qkv_bias,
        o_bias,
    };
    Ok(GgufPlan { plan: Plan { cfg, names: GGUF_NAMES, tied, freq_factors: None, llama3: None, params } })
}

/// Loads the weights of a planned GGUF.
pub fn load_gguf<R: Read + Seek>(
    plan: GgufPlan,
    content: &gguf_file::Content,
    reader: &mut R,
    path: &Path,
    precision: WeightPrecision,
    positions: usize,
    device: &Device,
) -> Result<Transformer, JudgeLoadError> {
    let mut plan = plan.plan;
    let mut src = GgufSource { path: path.to_path_buf(), content, reader };
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        let factors = src.dense("rope_freqs.weight", &Device::Cpu)?;
        plan.freq_factors =
            Some(factors.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| candle_err(path, e))?);
    }
    build(plan, &mut src, precision, positions, device)
}

/// The weights of a planned llama/qwen2 GGUF as dense f32 tensors under HF's names
/// (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, …,
/// `model.norm.weight`; no `lm_head`), with llama.cpp's permutation of llama's q/k rows
/// undone so that HF's half-split RoPE applies to them. This is how the reward model takes a
/// GGUF as its decoder backbone (`crate::reward::decoder`). RoPE frequency factors
/// (`rope_freqs.weight`, llama 3.1's scaling) are refused: HF's config would need them back
/// as `rope_scaling`, which the GGUF does not record.
pub fn gguf_as_hf_tensors<R: Read + Seek>(
    plan: &GgufPlan,
    content: &gguf_file::Content,
    reader: &mut R,
    path: &Path,
) -> Result<Vec<(String, Tensor)>, JudgeLoadError> {
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(JudgeLoadError::Config {
            path: path.into(),
            reason: "RoPE frequency factors (rope_freqs.weight) are not supported for a reward-model backbone".into(),
        });
    }
    let cfg = &plan.plan.cfg;
    let mut src = GgufSource { path: path.to_path_buf(), content, reader };
    let cpu = Device::Cpu;
    let mut dense = |name: &str| -> Result<Tensor, JudgeLoadError> {
        src.read(name, &cpu)?.dequantize(&cpu).map_err(|e| candle_err(path, e))
    };
    // llama.cpp stores row r of head h at (h, r mod 2, r / 2) → (h, r / 2, r mod 2): undo it.
    let unpermute = |t: Tensor, heads: usize| -> Result<Tensor, JudgeLoadError> {
        if !cfg.rope_interleaved {
            return Ok(t);
        }
        let dims = t.dims().to_vec();
        let half = dims[0] / heads / 2;
        let swap = || -> candle_core::Result<Tensor> {
            match dims.as_slice() {
                [rows, cols] => {
                    t.reshape((heads, half, 2, *cols))?.transpose(1, 2)?.contiguous()?.reshape((*rows, *cols))
                }
                _ => t.reshape((heads, half, 2))?.transpose(1, 2)?.contiguous()?.reshape(dims[0]),
            }
        };
        swap().map_err(|e| candle_err(path, e))
    };
    let mut out = vec![("model.embed_tokens.weight".to_string(), dense(GGUF_NAMES.embed)?)];
    for l in 0..cfg.layers {
        let gguf = |part: &str| (GGUF_NAMES.layer)(l, part);
        let hf = |name: &str| format!("model.layers.{l}.{name}");
        out.push((hf("input_layernorm.weight"), dense(&gguf("attn_norm"))?));
        for (part, name, heads) in [("q", "q_proj", cfg.heads), ("k", "k_proj", cfg.kv_heads), ("v", "v_proj", 0)] {
            let weight = dense(&gguf(part))?;
            out.push((
                hf(&format!("self_attn.{name}.weight")),
                if heads > 0 { unpermute(weight, heads)? } else { weight },
            ));
            if cfg.qkv_bias {
                let bias = dense(&gguf(&format!("{part}_bias")))?;
                out.push((
                    hf(&format!("self_attn.{name}.bias")),
                    if heads > 0 { unpermute(bias, heads)? } else { bias },
                ));
            }
        }
        out.push((hf("self_attn.o_proj.weight"), dense(&gguf("o"))?));
        if cfg.o_bias {
            out.push((hf("self_attn.o_proj.bias"), dense(&gguf("o_bias"))?));
        }
        out.push((hf("post_attention_layernorm.weight"), dense(&gguf("ffn_norm"))?));
        for (part, name) in [("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")] {
            out.push((hf(&format!("mlp.{name}.weight")), dense(&gguf(part))?));
        }
    }
    out.push(("model.norm.weight".to_string(), dense(GGUF_NAMES.norm)?));
    Ok(out)
}

/// A safetensors checkpoint: the files to read and its configuration.
pub struct SafetensorsPlan {
    plan: Plan,
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl SafetensorsPlan {
    pub fn config(&self) -> &ModelConfig {
        &self.plan.cfg
    }

    /// The weight files, in the order they are read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Reads `config.json` and finds the weight files of a safetensors checkpoint at `path` (a
/// folder, or one `.safetensors` file with `config.json` beside it).
pub fn plan_safetensors(path: &Path) -> Result<SafetensorsPlan, JudgeLoadError> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let config_path = dir.join("config.json");
    let io = |p: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            JudgeLoadError::NotFound { path: p.into() }
        } else {
            JudgeLoadError::Io { path: p.into(), source: e }
        }
    };
    let text = std::fs::read_to_string(&config_path).map_err(|e| io(&config_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| JudgeLoadError::Config { path: config_path.clone(), reason: e.to_string() })?;
    let cfg_err = |reason: String| JudgeLoadError::Config { path: config_path.clone(), reason };
    let field = |k: &str| json.get(k).filter(|v| !v.is_null());
    let count = |k: &str| -> Result<usize, JudgeLoadError> {
        field(k)
            .and_then(serde_json::Value::as_u64)
            .filter(|&x| x > 0)
            .map(|x| x as usize)
            .ok_or_else(|| cfg_err(format!("`{k}` must be a positive integer")))
    };
    let float = |k: &str, default: Option<f64>| -> Result<f64, JudgeLoadError> {
        match field(k) {
            Some(v) => v.as_f64().ok_or_else(|| cfg_err(format!("`{k}` must be a number"))),
            None => default.ok_or_else(|| cfg_err(format!("`{k}` is missing"))),
        }
    };
    let flag = |k: &str, default: bool| field(k).and_then(serde_json::Value::as_bool).unwrap_or(default);

    let model_type = field("model_type").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let architecture = match model_type.as_str() {
        "llama" | "mistral" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => {
            return Err(JudgeLoadError::UnsupportedArchitecture {
                path: config_path.clone(),
                architecture: if other.is_empty() { "(no model_type)".into() } else { other.into() },
                supported: SUPPORTED_ARCHITECTURES,
            });
        }
    };
    let hidden = count("hidden_size")?;
    let heads = count("num_attention_heads")?;
    let kv_heads = if field("num_key_value_heads").is_some() { count("num_key_value_heads")? } else { heads };
    let head_dim = if field("head_dim").is_some() { count("head_dim")? } else { hidden / heads };
    if !heads.is_multiple_of(kv_heads) {
        return Err(cfg_err(format!("num_key_value_heads {kv_heads} does not divide {heads} heads")));
    }
    if flag("mlp_bias", false) {
        return Err(cfg_err("`mlp_bias = true` is not supported".into()));
    }
    let llama3 = match field("rope_scaling") {
        None => None,
        Some(scaling) => {
            let kind = scaling
                .get("rope_type")
                .or_else(|| scaling.get("type"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let num = |k: &str| {
                scaling
                    .get(k)
                    .and_then(serde_json::Value::as_f64)
                    .map(|x| x as f32)
                    .ok_or_else(|| cfg_err(format!("rope_scaling.{k} must be a number")))
            };
            match kind {
                "default" => None,
                "llama3" => Some(Llama3Scaling {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_context: num("original_max_position_embeddings")?,
                }),
                other => return Err(cfg_err(format!("rope_scaling type `{other}` is not supported"))),
            }
        }
    };
    let attention_bias = flag("attention_bias", false);
    let cfg = ModelConfig {
        architecture,
        layers: count("num_hidden_layers")?,
        hidden,
        ffn: count("intermediate_size")?,
        heads,
        kv_heads,
        head_dim,
        vocab: count("vocab_size")?,
        rms_eps: float("rms_norm_eps", Some(1e-6))?,
        rope_theta: float("rope_theta", Some(10_000.0))? as f32,
        rope_interleaved: false,
        context_length: if field("max_position_embeddings").is_some() {
            count("max_position_embeddings")?
        } else {
            2048
        },
        qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
        o_bias: architecture == Architecture::Llama && attention_bias,
    };

    let files = if path.is_file() {
        vec![path.to_path_buf()]
    } else if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else {
        let index_path = dir.join("model.safetensors.index.json");
        let text = std::fs::read_to_string(&index_path).map_err(|e| io(&index_path, e))?;
        let index: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| JudgeLoadError::Config { path: index_path.clone(), reason: e.to_string() })?;
        let map = index.get("weight_map").and_then(serde_json::Value::as_object).ok_or_else(|| {
            JudgeLoadError::Config { path: index_path.clone(), reason: "no `weight_map` object".into() }
        })?;
        let mut files: Vec<PathBuf> = map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        files
    };
    let tied = flag("tie_word_embeddings", false);
    Ok(SafetensorsPlan { plan: Plan { cfg, names: HF_NAMES, tied, freq_factors: None, llama3, params: 0 }, dir, files })
}

/// Loads the weights of a planned safetensors checkpoint (always as f32).
pub fn load_safetensors(
    plan: SafetensorsPlan,
    positions: usize,
    device: &Device,
) -> Result<Transformer, JudgeLoadError> {
    let files_path = match plan.files.as_slice() {
        [one] => one.clone(),
        _ => plan.dir.clone(),
    };
    let mut tensors = HashMap::new();
    for file in &plan.files {
        let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| match e {
            candle_core::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                JudgeLoadError::NotFound { path: file.clone() }
            }
            other => JudgeLoadError::UnknownFormat {
                path: file.clone(),
                reason: format!("not a readable safetensors file: {other}"),
            },
        })?;
        tensors.extend(loaded);
    }
    let mut plan = plan.plan;
    // A checkpoint may carry lm_head.weight even with tied embeddings; use it if present.
    if tensors.contains_key(HF_NAMES.lm_head) {
        plan.tied = false;
    }
    plan.params = tensors.values().map(Tensor::elem_count).sum();
    let mut src = SafetensorsSource { path: files_path, tensors };
    build(plan, &mut src, WeightPrecision::F32, positions, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::testkit::{Tiny, Weights, write_both};

    fn open_gguf(path: &Path, precision: WeightPrecision) -> Transformer {
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let plan = plan_gguf(&content, path).unwrap();
        load_gguf(plan, &content, &mut reader, path, precision, 64, &Device::Cpu).unwrap()
    }

    fn open_safetensors(dir: &Path) -> Transformer {
        load_safetensors(plan_safetensors(dir).unwrap(), 64, &Device::Cpu).unwrap()
    }

    fn logits(model: &Transformer, tokens: &[u32], past: Option<&KvCache>, chunk: usize) -> Vec<f32> {
        model.forward(tokens, past, chunk, true, false).unwrap().logits.unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    const TOKENS: [u32; 11] = [1, 60, 70, 80, 90, 100, 3, 200, 7, 260, 2];

    #[test]
    fn both_formats_and_both_rope_layouts_match_a_naive_reference() {
        for tiny in [Tiny::llama(), Tiny::qwen2()] {
            let weights = Weights::random(tiny, 7);
            let (_dir, st, gguf) = write_both(&weights);
            let reference = weights.reference_logits(&TOKENS);
            let from_st = open_safetensors(&st);
            let from_gguf = open_gguf(&gguf, WeightPrecision::F32);
            assert_eq!(from_gguf.config().rope_interleaved, !tiny.qwen2);
            assert_eq!(from_gguf.config().qkv_bias, tiny.qwen2);
            let st_logits = logits(&from_st, &TOKENS, None, 512);
            let gguf_logits = logits(&from_gguf, &TOKENS, None, 512);
            let spread = reference.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                - reference.iter().copied().fold(f32::INFINITY, f32::min);
            assert!(spread > 1.0, "the test model should not be flat ({spread})");
            assert!(max_diff(&st_logits, &reference) < 1e-4, "{tiny:?}: {}", max_diff(&st_logits, &reference));
            assert!(max_diff(&gguf_logits, &reference) < 1e-4, "{tiny:?}: {}", max_diff(&gguf_logits, &reference));
        }
    }

    #[test]
    fn continuing_a_cache_equals_running_everything() {
        let weights = Weights::random(Tiny::llama(), 11);
        let (_dir, _, gguf) = write_both(&weights);
        let model = open_gguf(&gguf, WeightPrecision::F32);
        let whole = logits(&model, &TOKENS, None, 512);
        for split in [1, 4, 10] {
            let prefix = model.forward(&TOKENS[..split], None, 3, false, true).unwrap();
            assert!(prefix.logits.is_none());
            let cache = prefix.cache.unwrap();
            assert_eq!(cache.len(), split);
            let cont = logits(&model, &TOKENS[split..], Some(&cache), 512);
            assert!(max_diff(&cont, &whole) < 5e-5, "split {split}: {}", max_diff(&cont, &whole));
            // The cache is not changed by continuing it.
            let again = logits(&model, &TOKENS[split..], Some(&cache), 2);
            assert!(max_diff(&again, &whole) < 5e-5, "split {split}, chunk 2: {}", max_diff(&again, &whole));
        }
        for chunk in [1, 2, 5] {
            assert!(max_diff(&logits(&model, &TOKENS, None, chunk), &whole) < 5e-5, "chunk {chunk}");
        }
        let err = model.forward(&[1; 65], None, 512, true, false).err().unwrap();
        assert!(err.to_string().contains("exceed"), "{err}");
    }

    #[test]
    fn branches_in_one_pass_equal_separate_continuations() {
        let weights = Weights::random(Tiny::qwen2(), 13);
        let (_dir, _, gguf) = write_both(&weights);
        let model = open_gguf(&gguf, WeightPrecision::F32);
        let cache = model.forward(&TOKENS[..5], None, 512, false, true).unwrap().cache.unwrap();
        let branches: [&[u32]; 3] = [&TOKENS[5..], &[7], &[200, 3, 60]];
        let together = model.forward_branches(&branches, &cache).unwrap();
        assert_eq!(together.len(), 3);
        for (branch, logits_together) in branches.iter().zip(&together) {
            let alone = logits(&model, branch, Some(&cache), 512);
            assert!(max_diff(&alone, logits_together) < 5e-5, "{branch:?}: {}", max_diff(&alone, logits_together));
        }
        assert!(model.forward_branches(&[&[1], &[]], &cache).is_err());
    }

    #[test]
    fn masks_are_causal_within_each_sequence() {
        let mask = causal_mask(&[2, 1, 2], &Device::Cpu).unwrap().unwrap().to_vec2::<f32>().unwrap();
        let allowed: Vec<Vec<u8>> = mask.iter().map(|row| row.iter().map(|&v| u8::from(v == 0.0)).collect()).collect();
        assert_eq!(
            allowed,
            [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]].map(Vec::from)
        );
        assert!(causal_mask(&[1], &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn fused_branch_attention_matches_candle_ops() {
        // 6 query heads over 2 kv heads, two cached blocks (4 and 2 positions), three
        // branches of 3, 1 and 2 new positions; and one branch with no cache (a prefill).
        let mut rng = crate::reward::rng::SplitMix64::new(9);
        let mut random = |shape: (usize, usize, usize, usize)| {
            let n = shape.0 * shape.1 * shape.2 * shape.3;
            Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
        };
        let past = [(random((1, 2, 4, 8)), random((1, 2, 4, 8))), (random((1, 2, 2, 8)), random((1, 2, 2, 8)))];
        let (q, k, v) = (random((1, 6, 6, 8)), random((1, 2, 6, 8)), random((1, 2, 6, 8)));
        for (past, lens) in [(&past[..], &[3usize, 1, 2][..]), (&[][..], &[6][..])] {
            let segments = Segments { lens, mask: None };
            let fused = super::super::attention::attention(&q, past, &k, &v, lens, 0.3).unwrap().unwrap();
            let reference = composed_attention(&q, past, &k, &v, &segments, 0.3).unwrap();
            assert_eq!(fused.dims(), &[1, 6, 48]);
            let diff = (fused - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    /// Kept-quantised weights multiply in f32 on the CPU, so they give the numbers of the
    /// same file dequantised at load, up to summation order.
    #[test]
    fn quantized_weights_give_the_dequantised_numbers() {
        let weights = Weights::random(Tiny::llama(), 3);
        let dir = tempfile::tempdir().unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1] {
            let path = dir.path().join(format!("{dtype:?}.gguf"));
            weights.write_gguf(&path, dtype);
            let f32_model = open_gguf(&path, WeightPrecision::F32);
            let q_model = open_gguf(&path, WeightPrecision::Quantized);
            assert!(matches!(q_model.blocks[0].q.weight, Matrix::Quantized(_)));
            assert!(matches!(f32_model.blocks[0].q.weight, Matrix::Candle(QMatMul::Tensor(_))));
            assert_eq!((f32_model.arithmetic(), q_model.arithmetic()), ("f32", "quantized-f32"));
            let (a, b) = (logits(&f32_model, &TOKENS, None, 512), logits(&q_model, &TOKENS, None, 512));
            assert!(max_diff(&a, &b) < 1e-4, "{dtype:?}: max |Δ| {}", max_diff(&a, &b));
            assert_eq!(f32_model.params(), q_model.params());
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let weights = Weights::random(Tiny::llama(), 5);
        let (dir, st, gguf) = write_both(&weights);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&gguf).unwrap());
        let mut content = gguf_file::Content::read(&mut reader).unwrap();
        content.metadata.remove("llama.block_count");
        let err = plan_gguf(&content, &gguf).err().unwrap().to_string();
        assert!(err.contains("tiny.gguf") && err.contains("llama.block_count"), "{err}");
        content.metadata.insert("llama.block_count".into(), gguf_file::Value::String("two".into()));
        let err = plan_gguf(&content, &gguf).err().unwrap().to_string();
        assert!(err.contains("expected a number"), "{err}");
        content.metadata.insert("llama.block_count".into(), gguf_file::Value::U32(3));
        let plan = plan_gguf(&content, &gguf).unwrap();
        let err = load_gguf(plan, &content, &mut reader, &gguf, WeightPrecision::F32, 64, &Device::Cpu).err().unwrap();
        assert!(
            matches!(&err, JudgeLoadError::MissingTensor { name, .. } if name == "blk.2.attn_norm.weight"),
            "{err}"
        );
        content.metadata.insert("llama.block_count".into(), gguf_file::Value::U32(2));
        content.metadata.insert("llama.embedding_length".into(), gguf_file::Value::U32(32));
        let plan = plan_gguf(&content, &gguf).unwrap();
        let err = load_gguf(plan, &content, &mut reader, &gguf, WeightPrecision::F32, 64, &Device::Cpu).err().unwrap();
        assert!(matches!(err, JudgeLoadError::TensorShape { .. }), "{err}");

        std::fs::write(st.join("config.json"), r#"{"model_type": "gpt_neox"}"#).unwrap();
        let err = plan_safetensors(&st).err().unwrap();
        assert!(
            matches!(err, JudgeLoadError::UnsupportedArchitecture { .. }) && err.to_string().contains("gpt_neox"),
            "{err}"
        );
        std::fs::write(st.join("config.json"), r#"{"model_type": "llama", "hidden_size": 64"#).unwrap();
        let err = plan_safetensors(&st).err().unwrap();
        assert!(matches!(err, JudgeLoadError::Config { .. }) && err.to_string().contains("config.json"), "{err}");
        std::fs::write(st.join("config.json"), r#"{"model_type": "llama", "hidden_size": 64}"#).unwrap();
        let err = plan_safetensors(&st).err().unwrap().to_string();
        assert!(err.contains("num_attention_heads"), "{err}");
        drop(dir);
    }

    #[test]
    fn llama3_rope_scaling_changes_only_low_frequencies() {
        let plain = rope_tables(64, 500_000.0, 16, None, None, &Device::Cpu).unwrap();
        let scaling =
            Llama3Scaling { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192.0 };
        let scaled = rope_tables(64, 500_000.0, 16, None, Some(scaling), &Device::Cpu).unwrap();
        let (a, b) = (plain.1.to_vec2::<f32>().unwrap(), scaled.1.to_vec2::<f32>().unwrap());
        assert_eq!(a[15][0], b[15][0], "the highest frequency is untouched");
        assert!((a[15][31] / b[15][31] - 32.0).abs() < 0.01, "the lowest frequency is divided by the factor");
    }
}
