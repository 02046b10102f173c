//! Tiny models built in-test: random weights in the Hugging Face layout, written as a
//! safetensors checkpoint (with config.json) and as a GGUF (with the tiny byte-level
//! tokenizer of [`tokenizer::tests`](super::tokenizer::tests)), plus a naive reference forward
//! pass in plain Rust to check the candle model against.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

use super::tokenizer::tests::tiny_gguf_metadata;

/// The shape of a tiny model. `hidden` and `ffn` are multiples of 32 so the matrices can
/// be stored as Q8_0.
#[derive(Clone, Copy, Debug)]
pub struct Tiny {
    pub qwen2: bool,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub theta: f32,
    pub eps: f64,
}

impl Tiny {
    pub fn llama() -> Tiny {
        // The vocabulary of the tiny tokenizer: 3 specials, 256 bytes, 9 merges.
        Tiny {
            qwen2: false,
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            ffn: 96,
            vocab: 268,
            theta: 10_000.0,
            eps: 1e-5,
        }
    }

    pub fn qwen2() -> Tiny {
        Tiny { qwen2: true, theta: 1_000_000.0, eps: 1e-6, ..Tiny::llama() }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// Weights in the Hugging Face layout: name -> (shape, values).
pub struct Weights {
    pub tiny: Tiny,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

impl Weights {
    /// Deterministic random weights (tied embeddings).
    pub fn random(tiny: Tiny, seed: u64) -> Weights {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut tensors = HashMap::new();
        let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let values = (0..n).map(|_| offset + scale * rng.next()).collect();
            tensors.insert(name, (shape, values));
        };
        let (h, hd) = (tiny.hidden, tiny.head_dim());
        let (qd, kvd) = (tiny.heads * hd, tiny.kv_heads * hd);
        add("model.embed_tokens.weight".into(), vec![tiny.vocab, h], 1.0, 0.0);
        add("model.norm.weight".into(), vec![h], 0.2, 1.0);
        for i in 0..tiny.layers {
            let p = format!("model.layers.{i}");
            add(format!("{p}.input_layernorm.weight"), vec![h], 0.2, 1.0);
            add(format!("{p}.post_attention_layernorm.weight"), vec![h], 0.2, 1.0);
            add(format!("{p}.self_attn.q_proj.weight"), vec![qd, h], 0.3, 0.0);
            add(format!("{p}.self_attn.k_proj.weight"), vec![kvd, h], 0.3, 0.0);
            add(format!("{p}.self_attn.v_proj.weight"), vec![kvd, h], 0.3, 0.0);
            add(format!("{p}.self_attn.o_proj.weight"), vec![h, qd], 0.2, 0.0);
            add(format!("{p}.mlp.gate_proj.weight"), vec![tiny.ffn, h], 0.2, 0.0);
            add(format!("{p}.mlp.up_proj.weight"), vec![tiny.ffn, h], 0.2, 0.0);
            add(format!("{p}.mlp.down_proj.weight"), vec![h, tiny.ffn], 0.2, 0.0);
            if tiny.qwen2 {
                add(format!("{p}.self_attn.q_proj.bias"), vec![qd], 0.5, 0.0);
                add(format!("{p}.self_attn.k_proj.bias"), vec![kvd], 0.5, 0.0);
                add(format!("{p}.self_attn.v_proj.bias"), vec![kvd], 0.5, 0.0);
            }
        }
        Weights { tiny, tensors }
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn write_safetensors(&self, dir: &Path) {
        let t = &self.tiny;
        let config = serde_json::json!({
            "model_type": if t.qwen2 { "qwen2" } else { "llama" },
            "hidden_size": t.hidden,
            "intermediate_size": t.ffn,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "num_key_value_heads": t.kv_heads,
            "vocab_size": t.vocab,
            "rms_norm_eps": t.eps,
            "rope_theta": t.theta,
            "max_position_embeddings": 512,
            "tie_word_embeddings": true,
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let tensors: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(name, (shape, values))| {
                (name.clone(), Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu).unwrap())
            })
            .collect();
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    }

    /// Writes a GGUF with llama.cpp's names, q/k rows permuted for interleaved RoPE (llama),
    /// matrices stored as `matrix_dtype`, and the tiny tokenizer's metadata.
    pub fn write_gguf(&self, path: &Path, matrix_dtype: GgmlDType) {
        use gguf_file::Value;
        let t = &self.tiny;
        let arch = if t.qwen2 { "qwen2" } else { "llama" };
        let mut metadata: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(arch.into())),
            (format!("{arch}.block_count"), Value::U32(t.layers as u32)),
            (format!("{arch}.context_length"), Value::U32(512)),
            (format!("{arch}.embedding_length"), Value::U32(t.hidden as u32)),
            (format!("{arch}.feed_forward_length"), Value::U32(t.ffn as u32)),
            (format!("{arch}.attention.head_count"), Value::U32(t.heads as u32)),
            (format!("{arch}.attention.head_count_kv"), Value::U32(t.kv_heads as u32)),
            (format!("{arch}.rope.freq_base"), Value::F32(t.theta)),
            (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(t.eps as f32)),
        ];
        metadata.extend(tiny_gguf_metadata());

        let hd = t.head_dim();
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        let mut add = |name: String, hf: &str, permute_heads: Option<usize>| {
            let (shape, values) = &self.tensors[hf];
            let values = match permute_heads {
                Some(heads) if !t.qwen2 => permute(values, shape[0], shape[1], heads, hd),
                _ => values.clone(),
            };
            let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
            let dtype = if shape.len() == 2 { matrix_dtype } else { GgmlDType::F32 };
            tensors.push((name, QTensor::quantize(&tensor, dtype).unwrap()));
        };
        add("token_embd.weight".into(), "model.embed_tokens.weight", None);
        add("output_norm.weight".into(), "model.norm.weight", None);
        for i in 0..t.layers {
            let (b, p) = (format!("blk.{i}"), format!("model.layers.{i}"));
            add(format!("{b}.attn_norm.weight"), &format!("{p}.input_layernorm.weight"), None);
            add(format!("{b}.ffn_norm.weight"), &format!("{p}.post_attention_layernorm.weight"), None);
            add(format!("{b}.attn_q.weight"), &format!("{p}.self_attn.q_proj.weight"), Some(t.heads));
            add(format!("{b}.attn_k.weight"), &format!("{p}.self_attn.k_proj.weight"), Some(t.kv_heads));
            add(format!("{b}.attn_v.weight"), &format!("{p}.self_attn.v_proj.weight"), None);
            add(format!("{b}.attn_output.weight"), &format!("{p}.self_attn.o_proj.weight"), None);
            add(format!("{b}.ffn_gate.weight"), &format!("{p}.mlp.gate_proj.weight"), None);
            add(format!("{b}.ffn_up.weight"), &format!("{p}.mlp.up_proj.weight"), None);
            add(format!("{b}.ffn_down.weight"), &format!("{p}.mlp.down_proj.weight"), None);
            if t.qwen2 {
                add(format!("{b}.attn_q.bias"), &format!("{p}.self_attn.q_proj.bias"), None);
                add(format!("{b}.attn_k.bias"), &format!("{p}.self_attn.k_proj.bias"), None);
                add(format!("{b}.attn_v.bias"), &format!("{p}.self_attn.v_proj.bias"), None);
            }
        }
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut file = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut file, &metadata, &tensors).unwrap();
    }

    /// Logits at the last position, computed naively (Hugging Face semantics: RMSNorm, RoPE
    /// on halves, grouped-query attention, SwiGLU, tied output).
    pub fn reference_logits(&self, tokens: &[u32]) -> Vec<f32> {
        let t = &self.tiny;
        let (h, hd, rep) = (t.hidden, t.head_dim(), t.heads / t.kv_heads);
        let matvec = |w: &[f32], x: &[f32], rows: usize| -> Vec<f32> {
            (0..rows).map(|r| w[r * x.len()..(r + 1) * x.len()].iter().zip(x).map(|(a, b)| a * b).sum()).collect()
        };
        let rmsnorm = |x: &[f32], g: &[f32]| -> Vec<f32> {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
            let scale = 1.0 / (ms + t.eps as f32).sqrt();
            x.iter().zip(g).map(|(v, g)| v * scale * g).collect()
        };
        let rope = |x: &mut [f32], pos: usize| {
            for head in x.chunks_mut(hd) {
                for i in 0..hd / 2 {
                    let angle = pos as f32 / t.theta.powf((2 * i) as f32 / hd as f32);
                    let (a, b) = (head[i], head[i + hd / 2]);
                    head[i] = a * angle.cos() - b * angle.sin();
                    head[i + hd / 2] = b * angle.cos() + a * angle.sin();
                }
            }
        };
        let embed = self.get("model.embed_tokens.weight");
        let mut xs: Vec<Vec<f32>> =
            tokens.iter().map(|&id| embed[id as usize * h..(id as usize + 1) * h].to_vec()).collect();
        for l in 0..t.layers {
            let w = |n: &str| self.get(&format!("model.layers.{l}.{n}"));
            let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
            for (pos, x) in xs.iter().enumerate() {
                let xn = rmsnorm(x, w("input_layernorm.weight"));
                let mut q = matvec(w("self_attn.q_proj.weight"), &xn, t.heads * hd);
                let mut k = matvec(w("self_attn.k_proj.weight"), &xn, t.kv_heads * hd);
                let mut v = matvec(w("self_attn.v_proj.weight"), &xn, t.kv_heads * hd);
                if t.qwen2 {
                    for (out, b) in [(&mut q, "q"), (&mut k, "k"), (&mut v, "v")] {
                        for (o, b) in out.iter_mut().zip(w(&format!("self_attn.{b}_proj.bias"))) {
                            *o += b;
                        }
                    }
                }
                rope(&mut q, pos);
                rope(&mut k, pos);
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            for pos in 0..xs.len() {
                let mut attn = vec![0.0f32; t.heads * hd];
                for head in 0..t.heads {
                    let kv = head / rep;
                    let q = &qs[pos][head * hd..(head + 1) * hd];
                    let scores: Vec<f32> = (0..=pos)
                        .map(|j| {
                            q.iter().zip(&ks[j][kv * hd..(kv + 1) * hd]).map(|(a, b)| a * b).sum::<f32>()
                                / (hd as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let z: f32 = exps.iter().sum();
                    for (j, e) in exps.iter().enumerate() {
                        for d in 0..hd {
                            attn[head * hd + d] += e / z * vs[j][kv * hd + d];
                        }
                    }
                }
                let o = matvec(w("self_attn.o_proj.weight"), &attn, h);
                for (x, o) in xs[pos].iter_mut().zip(o) {
                    *x += o;
                }
                let xn = rmsnorm(&xs[pos], w("post_attention_layernorm.weight"));
                let gate = matvec(w("mlp.gate_proj.weight"), &xn, t.ffn);
                let up = matvec(w("mlp.up_proj.weight"), &xn, t.ffn);
                let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
                let down = matvec(w("mlp.down_proj.weight"), &act, h);
                for (x, d) in xs[pos].iter_mut().zip(down) {
                    *x += d;
                }
            }
        }
        let last = rmsnorm(xs.last().unwrap(), self.get("model.norm.weight"));
        matvec(embed, &last, t.vocab)
    }
}

/// llama.cpp's q/k row permutation for interleaved RoPE: within each head, row `i·d/2 + j`
/// (half `i`, pair `j`) moves to row `2j + i`.
fn permute(values: &[f32], rows: usize, cols: usize, heads: usize, hd: usize) -> Vec<f32> {
    assert_eq!(rows, heads * hd);
    let mut out = vec![0.0; values.len()];
    for head in 0..heads {
        for i in 0..2 {
            for j in 0..hd / 2 {
                let from = head * hd + i * hd / 2 + j;
                let to = head * hd + 2 * j + i;
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// A temporary folder holding both checkpoints of `weights`: `dir/st/` (safetensors) and
/// `dir/tiny.gguf` (f32 matrices).
pub fn write_both(weights: &Weights) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("st");
    std::fs::create_dir(&st).unwrap();
    weights.write_safetensors(&st);
    let gguf = dir.path().join("tiny.gguf");
    weights.write_gguf(&gguf, GgmlDType::F32);
    (dir, st, gguf)
}
