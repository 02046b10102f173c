//! The adapter's MLP: features → hidden (ReLU) → one logit per rule, with its file format.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use super::{AdapterError, TrainOptions};
use crate::select::rng::SplitMix64;

/// Version of the adapter files; bumped when their meaning changes.
pub const FORMAT_VERSION: u32 = 1;

/// `adapter.json`: everything needed to use the weights, and what they were trained for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterMeta {
    pub version: u32,
    /// The output columns, in order.
    pub rule_ids: Vec<String>,
    pub k: usize,
    pub lambda: f64,
    pub hidden: usize,
    pub input_dim: usize,
    /// The encoder that made the features ([`super::Embedder::id`]).
    pub encoder: String,
    pub trained_pairs: usize,
    pub seed: u64,
}

/// A trained Rule Adapter.
#[derive(Debug)]
pub struct RuleAdapter {
    meta: AdapterMeta,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

const NAMES: [&str; 4] = ["w1", "b1", "w2", "b2"];

impl RuleAdapter {
    pub fn meta(&self) -> &AdapterMeta {
        &self.meta
    }

    /// Weights drawn uniformly in ±1/√fan_in (as PyTorch's `nn.Linear`) from `seed`.
    fn init(meta: AdapterMeta) -> Result<RuleAdapter, AdapterError> {
        let mut rng = SplitMix64::new(meta.seed);
        let mut uniform = |rows: usize, cols: usize, fan_in: usize| -> Result<Var, AdapterError> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let values: Vec<f32> = (0..rows * cols).map(|_| rng.range(-bound, bound) as f32).collect();
            let shape: Vec<usize> = if cols == 1 { vec![rows] } else { vec![rows, cols] };
            Ok(Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)?)
        };
        let (input, hidden, rules) = (meta.input_dim, meta.hidden, meta.rule_ids.len());
        Ok(RuleAdapter {
            w1: uniform(hidden, input, input)?,
            b1: uniform(hidden, 1, input)?,
            w2: uniform(rules, hidden, hidden)?,
            b2: uniform(rules, 1, hidden)?,
            meta,
        })
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor, AdapterError> {
        let h = x.matmul(&self.w1.as_tensor().t()?)?.broadcast_add(self.b1.as_tensor())?.relu()?;
        Ok(h.matmul(&self.w2.as_tensor().t()?)?.broadcast_add(self.b2.as_tensor())?)
    }

    /// Trains a fresh adapter; returns it with the last epoch's mean loss.
    pub(super) fn fit(
        meta: AdapterMeta,
        xs: &[Vec<f32>],
        ys: &[Vec<f32>],
        opts: &TrainOptions,
    ) -> Result<(RuleAdapter, f64), AdapterError> {
        let adapter = RuleAdapter::init(meta)?;
        let params = ParamsAdamW { lr: opts.learning_rate, weight_decay: opts.weight_decay, ..Default::default() };
        let vars = vec![adapter.w1.clone(), adapter.b1.clone(), adapter.w2.clone(), adapter.b2.clone()];
        let mut optimizer = AdamW::new(vars, params)?;
        let mut rng = SplitMix64::new(opts.seed ^ 0x5eed);
        let mut order: Vec<usize> = (0..xs.len()).collect();
        let mut last = 0.0;
        for _ in 0..opts.epochs {
            // Fisher–Yates with the seeded generator.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let (mut total, mut batches) = (0.0, 0usize);
            for batch in order.chunks(opts.batch_size) {
                let x = stack(batch.iter().map(|&i| &xs[i]))?;
                let y = stack(batch.iter().map(|&i| &ys[i]))?;
                let loss = bce_with_logits(&adapter.logits(&x)?, &y)?;
                optimizer.backward_step(&loss)?;
                total += f64::from(loss.to_scalar::<f32>()?);
                batches += 1;
            }
            last = total / batches as f64;
        }
        Ok((adapter, last))
    }

    /// Every rule's column index per input, best first (ties: lower column first).
    pub fn rank(&self, xs: &[Vec<f32>]) -> Result<Vec<Vec<usize>>, AdapterError> {
        if xs.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = xs.iter().find(|x| x.len() != self.meta.input_dim) {
            return Err(AdapterError::Encoder(format!(
                "features have {} values, the adapter expects {} (was it trained with another encoder? it used {})",
                bad.len(),
                self.meta.input_dim,
                self.meta.encoder
            )));
        }
        let logits = self.logits(&stack(xs.iter())?)?.to_vec2::<f32>()?;
        Ok(logits
            .into_iter()
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx
            })
            .collect())
    }

    /// Writes `adapter.json` and `adapter.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), AdapterError> {
        std::fs::create_dir_all(dir).map_err(|source| AdapterError::Io { path: dir.to_path_buf(), source })?;
        let meta_path = dir.join("adapter.json");
        let json = serde_json::to_string_pretty(&self.meta).expect("metadata serialises");
        write_atomic(&meta_path, json.as_bytes())?;
        let tensors: Vec<(&str, Tensor)> = NAMES
            .iter()
            .zip([&self.w1, &self.b1, &self.w2, &self.b2])
            .map(|(name, var)| (*name, var.as_tensor().clone()))
            .collect();
        let weights = dir.join("adapter.safetensors");
        let tmp = dir.join("adapter.safetensors.tmp");
        candle_core::safetensors::save(&tensors.into_iter().collect(), &tmp)?;
        crate::fsio::persist(&tmp, &weights).map_err(|source| AdapterError::Io { path: weights.clone(), source })
    }

    /// Reads an adapter written by [`RuleAdapter::save`].
    pub fn load(dir: &Path) -> Result<RuleAdapter, AdapterError> {
        let meta_path = dir.join("adapter.json");
        let text = crate::fsio::read_to_string(&meta_path)
            .map_err(|source| AdapterError::Io { path: meta_path.clone(), source })?;
        let meta: AdapterMeta = serde_json::from_str(&text)
            .map_err(|e| AdapterError::Format { path: meta_path.clone(), message: e.to_string() })?;
        if meta.version != FORMAT_VERSION {
            return Err(AdapterError::Format {
                path: meta_path,
                message: format!("format version {} (this engine reads {FORMAT_VERSION})", meta.version),
            });
        }
        let weights = dir.join("adapter.safetensors");
        let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| AdapterError::Format { path: weights.clone(), message: e.to_string() })?;
        let (input, hidden, rules) = (meta.input_dim, meta.hidden, meta.rule_ids.len());
        let shapes: [&[usize]; 4] = [&[hidden, input], &[hidden], &[rules, hidden], &[rules]];
        let mut vars = Vec::new();
        for (name, shape) in NAMES.iter().zip(shapes) {
            let tensor = tensors.remove(*name).ok_or_else(|| AdapterError::Format {
                path: weights.clone(),
                message: format!("missing tensor {name:?}"),
            })?;
            if tensor.dims() != shape || tensor.dtype() != DType::F32 {
                return Err(AdapterError::Format {
                    path: weights.clone(),
                    message: format!(
                        "tensor {name:?} is {:?} {:?}, expected f32 {shape:?}",
                        tensor.dtype(),
                        tensor.dims()
                    ),
                });
            }
            vars.push(Var::from_tensor(&tensor)?);
        }
        let mut vars = vars.into_iter();
        let mut next = || vars.next().expect("four tensors");
        Ok(RuleAdapter { w1: next(), b1: next(), w2: next(), b2: next(), meta })
    }
}

fn stack<'a>(rows: impl Iterator<Item = &'a Vec<f32>>) -> Result<Tensor, AdapterError> {
    let rows: Vec<&Vec<f32>> = rows.collect();
    let cols = rows.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu)?)
}

/// Mean binary cross-entropy on logits, in the stable form
/// `max(z, 0) − z·t + log(1 + e^{−|z|})`.
pub(super) fn bce_with_logits(z: &Tensor, t: &Tensor) -> Result<Tensor, AdapterError> {
    let softplus = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let loss = (z.relu()? - (z * t)?)?.add(&softplus)?;
    Ok(loss.mean_all()?)
}

/// [`crate::fsio::write_atomic`], naming `path` on failure.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AdapterError> {
    crate::fsio::write_atomic(path, bytes).map_err(|source| AdapterError::Io { path: path.to_path_buf(), source })
}
