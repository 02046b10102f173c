//! Bradley–Terry training of a [`RewardModel`], with checkpoints and exact resume.
//!
//! # The loss
//!
//! For a pair with rewards `r_c` (chosen) and `r_r` (rejected), `d = r_c − r_r`:
//!
//! ```text
//! preference:  −log σ(d − margin)                        (margin = 0 unless --margin)
//! tie:         −½ log σ(d) − ½ log σ(−d)                 (BCE toward σ(d) = 0.5; minimal at d = 0)
//! centering:   + center_coef · (r_c + r_r)²              (optional; keeps rewards near 0)
//! ```
//!
//! averaged over the pairs of an optimizer step (`batch_size × accumulate` pairs).
//! `−log σ(x)` is computed as `softplus(−x) = relu(−x) + log(1 + e^{−|x|})`, stable for any x.
//!
//! # One epoch
//!
//! 1. The pairs are shuffled with a generator seeded by `(seed, epoch)` ([`SplitMix64`]).
//! 2. **Length bucketing**: windows of `batch_size × bucket` pairs are sorted by length and
//!    cut into micro-batches, and the micro-batches are shuffled again; each micro-batch is
//!    padded only to its own longest item, so little compute goes to padding.
//! 3. Each micro-batch runs chosen and rejected items as one forward pass of `2 × batch_size`
//!    rows; gradients of `accumulate` micro-batches are summed, clipped to `max_grad_norm`
//!    (global L2 norm), and AdamW takes a step at the scheduled learning rate
//!    ([`optim::learning_rate`]: linear warm-up, then linear or cosine decay to 0).
//! 4. After the epoch, accuracy on the dev pairs (reward of chosen > rejected; equal rewards
//!    count as wrong) is printed and recorded.
//!
//! # Checkpoints and resume
//!
//! Every `checkpoint_every` optimizer steps (and at the end of each epoch) the trainer writes
//! `OUT/checkpoint/step-N.safetensors` (weights, AdamW `m` and `v`) and then
//! `OUT/checkpoint/state.json` (step, epoch, position in the epoch, running epoch sums,
//! the options that must not change), each through a temporary file and a rename; the
//! previous weights file is removed after. `resume` reads `state.json`, loads its weights file,
//! rebuilds the epoch's batch order from the seed and skips the batches already done.
//! There is no other randomness (no dropout), and candle's CPU kernels are deterministic for a
//! fixed thread count, so a resumed run ends **within 1e-5 of the uninterrupted run's
//! rewards** (in practice identical; `tests/reward.rs` checks the tolerance on a tiny run).
//!
//! # Devices
//!
//! [`TrainOptions::device`] (`engine train --device cpu|cuda|cuda:N`) picks where the model,
//! the batches, the losses, the AdamW moments and the accumulated gradients live
//! ([`optim`] keeps its state as tensors on a GPU, as host vectors on the CPU). Only
//! per-step scalars (loss sums, rewards for accuracy) and checkpoints come back to the host;
//! checkpoints are CPU tensors, so a run may resume on another device. CUDA needs an engine
//! built with `--features cuda`; its kernels are not promised to be bit-for-bit
//! deterministic, so the resume guarantee above is the CPU's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::bert::Batch;
use super::data::TrainPair;
use super::layout::Encoded;
use super::model::{RewardModel, tmp_path, write_atomic};
use super::optim::{self, AdamW, AdamWConfig, Decay, GradAccumulator};
use super::rng::SplitMix64;
use super::{CandleContext, RewardError};

/// Where [`train`] runs: `cpu` (the default), `cuda` (device 0) or `cuda:N`.
pub type TrainDevice = crate::device::DeviceSpec;

/// Opens `device` for training; a clear error when this engine was built without CUDA.
fn open_device(device: TrainDevice) -> Result<Device, RewardError> {
    match device {
        TrainDevice::Cpu => Ok(Device::Cpu),
        TrainDevice::Cuda(_) if !cfg!(feature = "cuda") => Err(RewardError::Invalid(format!(
            "--device {device}: this engine was built without CUDA support; \
             rebuild it with `cargo build --release -p engine --features cuda`"
        ))),
        TrainDevice::Cuda(ordinal) => {
            Device::new_cuda(ordinal).ctx(format!("--device {device}: opening CUDA device {ordinal}"))
        }
    }
}

/// Settings of [`train`]; [`TrainOptions::new`] has the defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The encoder to start from (config.json, model.safetensors, tokenizer.json).
    pub backbone: PathBuf,
    /// The export folder; checkpoints go to `out/checkpoint/`.
    pub out: PathBuf,
    pub epochs: usize,
    /// Pairs per forward pass (each pair is two rows).
    pub batch_size: usize,
    /// Micro-batches summed per optimizer step.
    pub accumulate: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of all optimizer steps spent warming up.
    pub warmup: f64,
    pub decay: Decay,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub max_len: usize,
    pub seed: u64,
    /// Optimizer steps between checkpoints (0: only at the end of each epoch).
    pub checkpoint_every: u64,
    /// Continue from `out/checkpoint/` when it exists.
    pub resume: bool,
    /// Use each pair's margin in the loss.
    pub use_margin: bool,
    pub center_coef: f64,
    /// Micro-batches per length-sorted window (1: no bucketing).
    pub bucket: usize,
    /// Worker threads (default: rayon's, i.e. all cores or RAYON_NUM_THREADS).
    pub threads: Option<usize>,
    /// Where the model trains (see the [module docs](self#devices)). Left out of the recorded
    /// options when it is the CPU, so CPU runs record what they did before the option existed.
    #[serde(default, skip_serializing_if = "TrainDevice::is_cpu")]
    pub device: TrainDevice,
    pub progress: bool,
    /// Stop after this many optimizer steps in this process (as if interrupted); for tests.
    #[serde(skip)]
    pub stop_after: Option<u64>,
}

impl TrainOptions {
    pub fn new(backbone: impl Into<PathBuf>, out: impl Into<PathBuf>) -> TrainOptions {
        TrainOptions {
            backbone: backbone.into(),
            out: out.into(),
            epochs: 2,
            batch_size: 16,
            accumulate: 1,
            lr: 3e-5,
            warmup: 0.1,
            decay: Decay::Linear,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            max_len: 256,
            seed: 42,
            checkpoint_every: 50,
            resume: false,
            use_margin: false,
            center_coef: 0.0,
            bucket: 32,
            threads: None,
            device: TrainDevice::Cpu,
            progress: true,
            stop_after: None,
        }
    }

    fn validate(&self) -> Result<(), RewardError> {
        let bad = |m: &str| Err(RewardError::Invalid(m.to_string()));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1");
        }
        if self.batch_size == 0 || self.accumulate == 0 || self.bucket == 0 {
            return bad("--batch-size, --accumulate and --bucket must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("--warmup must be a fraction in [0, 1)");
        }
        if self.max_len < 8 {
            return bad("--max-len must be at least 8");
        }
        Ok(())
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    /// Mean loss over the epoch's pairs.
    pub train_loss: f64,
    /// Fraction of non-tie pairs with r_c > r_r during training.
    pub train_accuracy: f64,
    pub dev_accuracy: Option<f64>,
    pub dev_loss: Option<f64>,
}

/// What [`train`] did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainReport {
    pub pairs: usize,
    pub ties: usize,
    pub dev_pairs: usize,
    /// Items (a prompt with one response) cut to `max_len`, of 2 × pairs.
    pub truncated: usize,
    pub dev_truncated: usize,
    pub steps: u64,
    /// Step the run resumed from (0: a fresh start).
    pub resumed_from: u64,
    pub epochs: Vec<EpochReport>,
    /// Time this process spent in training steps (forward, backward, optimizer; not
    /// evaluation or checkpoints), and pairs trained per second of it.
    pub seconds: f64,
    pub pairs_per_s: f64,
    /// Real tokens / padded tokens over the batches this process ran.
    pub padding_efficiency: f64,
    pub out: PathBuf,
}

/// What a checkpoint's `state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct CheckpointState {
    /// Optimizer steps done.
    step: u64,
    /// The epoch in progress and the micro-batches of it already done.
    epoch: usize,
    batch: usize,
    /// Running sums of the epoch in progress: loss, correct, decided, pairs.
    sums: [f64; 4],
    epochs: Vec<EpochReport>,
    weights: String,
    /// Options that must match to resume.
    fingerprint: String,
    /// [`data_hash`] of the training pairs: a checkpoint resumes only on the same data
    /// and labels. (Checkpoints from before it was recorded have none and do not resume.)
    #[serde(default)]
    data: String,
    seed: u64,
}

/// A pair, laid out.
struct Item {
    chosen: Encoded,
    rejected: Encoded,
    margin: f32,
    tie: bool,
}

impl Item {
    fn len(&self) -> usize {
        self.chosen.ids.len().max(self.rejected.ids.len())
    }
}

fn encode_all(rm: &RewardModel, pairs: &[TrainPair]) -> Result<(Vec<Item>, usize), RewardError> {
    let mut truncated = 0;
    let items = pairs
        .iter()
        .map(|p| {
            let chosen = rm.encode(&p.prompt, &p.chosen)?;
            let rejected = rm.encode(&p.prompt, &p.rejected)?;
            truncated += chosen.truncated as usize + rejected.truncated as usize;
            Ok(Item { chosen, rejected, margin: p.margin, tie: p.tie })
        })
        .collect::<Result<Vec<_>, RewardError>>()?;
    Ok((items, truncated))
}

/// The micro-batches of one epoch (indices into the items), from the seed alone.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, bucket: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * bucket) {
        let mut window = window.to_vec();
        window.sort_by_key(|&i| lengths[i]); // stable: ties keep the shuffled order
        batches.extend(window.chunks(batch_size).map(|c| c.to_vec()));
    }
    if bucket > 1 {
        rng.shuffle(&mut batches);
    }
    batches
}

/// Numbers from one micro-batch.
struct MicroStats {
    loss_sum: f64,
    correct: usize,
    decided: usize,
    real_tokens: usize,
    padded_tokens: usize,
}

/// Loss per pair (see the module docs) for rewards `r` = [chosen…, rejected…].
fn pair_losses(r: &Tensor, items: &[&Item], use_margin: bool, center_coef: f64) -> candle_core::Result<Tensor> {
    let n = items.len();
    let device = r.device();
    let rc = r.narrow(0, 0, n)?;
    let rr = r.narrow(0, n, n)?;
    let d = (&rc - &rr)?;
    let margins: Vec<f32> = items.iter().map(|it| if use_margin && !it.tie { it.margin } else { 0.0 }).collect();
    let w_pos: Vec<f32> = items.iter().map(|it| if it.tie { 0.5 } else { 1.0 }).collect();
    let w_neg: Vec<f32> = items.iter().map(|it| if it.tie { 0.5 } else { 0.0 }).collect();
    let dm = (&d - Tensor::from_vec(margins, n, device)?)?;
    // −log σ(x) = softplus(−x)
    let pos = softplus(&dm.neg()?)?.mul(&Tensor::from_vec(w_pos, n, device)?)?;
    let neg = softplus(&d)?.mul(&Tensor::from_vec(w_neg, n, device)?)?;
    let mut loss = (pos + neg)?;
    if center_coef > 0.0 {
        loss = (loss + ((&rc + &rr)?.sqr()? * center_coef)?)?;
    }
    Ok(loss)
}

/// `softplus(x) = log(1 + eˣ) = relu(x) + log(1 + e^{−|x|})`.
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

fn fingerprint(opts: &TrainOptions, pairs: usize) -> String {
    format!(
        "pairs={pairs} epochs={} batch={} accumulate={} bucket={} lr={} warmup={} decay={:?} wd={} clip={} max_len={} margin={} center={}",
        opts.epochs,
        opts.batch_size,
        opts.accumulate,
        opts.bucket,
        opts.lr,
        opts.warmup,
        opts.decay,
        opts.weight_decay,
        opts.max_grad_norm,
        opts.max_len,
        opts.use_margin,
        opts.center_coef
    )
}

/// The sha256 of the training pairs as the trainer sees them (conversation, chosen,
/// rejected, margin, tie, in order), so it changes with the data file and with the labels
/// applied to it. `engine run` keys its stages on its inputs' hashes the same way; a
/// checkpoint is resumed only by a run on the same pairs.
pub fn data_hash(pairs: &[TrainPair]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for p in pairs {
        field(&(p.prompt.len() as u64).to_le_bytes());
        for m in &p.prompt {
            field(format!("{:?}", m.role).as_bytes());
            field(m.content.as_bytes());
        }
        field(p.chosen.as_bytes());
        field(p.rejected.as_bytes());
        field(&p.margin.to_bits().to_le_bytes());
        field(&[u8::from(p.tie)]);
    }
    hex::encode(hasher.finalize())
}

/// Trains a reward model on `train` (dev accuracy on `dev` after each epoch) and writes the
/// export to `opts.out`; see the [module docs](self).
pub fn train(opts: &TrainOptions, train: &[TrainPair], dev: &[TrainPair]) -> Result<TrainReport, RewardError> {
    opts.validate()?;
    if train.is_empty() {
        return Err(RewardError::Invalid("no training pairs (are the labels all abstentions?)".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| RewardError::Invalid(format!("cannot start {:?} threads: {e}", opts.threads)))?;
    pool.install(|| run(opts, train, dev))
}

fn run(opts: &TrainOptions, train: &[TrainPair], dev: &[TrainPair]) -> Result<TrainReport, RewardError> {
    let device = open_device(opts.device)?;
    let mut rm = RewardModel::from_backbone(&opts.backbone, &device, opts.seed, opts.max_len)?;
    let (items, truncated) = encode_all(&rm, train)?;
    let (dev_items, dev_truncated) = encode_all(&rm, dev)?;
    let lengths: Vec<usize> = items.iter().map(Item::len).collect();
    let batches_per_epoch = items.len().div_ceil(opts.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(opts.accumulate) as u64;
    let total_steps = steps_per_epoch * opts.epochs as u64;
    let warmup_steps = (opts.warmup * total_steps as f64).round() as u64;
    let fingerprint = fingerprint(opts, items.len());
    let data = data_hash(train);

    let mut adam = AdamW::new(rm.params(), AdamWConfig { weight_decay: opts.weight_decay, ..Default::default() })
        .ctx("optimizer state")?;
    let checkpoint_dir = opts.out.join("checkpoint");
    let mut state = CheckpointState {
        step: 0,
        epoch: 0,
        batch: 0,
        sums: [0.0; 4],
        epochs: Vec::new(),
        weights: String::new(),
        fingerprint: fingerprint.clone(),
        data: data.clone(),
        seed: opts.seed,
    };
    let mut resumed_from = 0;
    if opts.resume && checkpoint_dir.join("state.json").exists() {
        state = load_checkpoint(&checkpoint_dir, &rm, &mut adam)?;
        if state.data != data {
            return Err(RewardError::Invalid(format!(
                "{}: the checkpoint was trained on other data (pairs hash {}; this run's {}): --data or --labels \
                 changed since. Pass the files it was made with, or delete {} (or drop --resume) to start over",
                checkpoint_dir.join("state.json").display(),
                if state.data.is_empty() { "not recorded" } else { &state.data[..16] },
                &data[..16],
                checkpoint_dir.display()
            )));
        }
        if state.fingerprint != fingerprint || state.seed != opts.seed {
            return Err(RewardError::Invalid(format!(
                "{}: the checkpoint was made with other options or data ({} seed={}); this run has {} seed={}",
                checkpoint_dir.join("state.json").display(),
                state.fingerprint,
                state.seed,
                fingerprint,
                opts.seed
            )));
        }
        resumed_from = state.step;
        if opts.progress {
            eprintln!("resuming from step {} (epoch {}, batch {})", state.step, state.epoch + 1, state.batch);
        }
    }

    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::new(total_steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "train {bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("the template is valid"),
        );
        bar.set_position(state.step);
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // Where stderr is not a terminal (a log file, CI) the bar is not drawn; print lines.
    let log_lines = crate::progress::LogLines::new(opts.progress).enabled();
    let started = Instant::now();
    let mut acc = GradAccumulator::new(rm.params()).ctx("gradient accumulators")?;
    let mut step_seconds = 0f64;
    let (mut pairs_done, mut real_tokens, mut padded_tokens) = (0usize, 0usize, 0usize);
    let mut steps_this_run = 0u64;
    let mut interrupted = false;
    'epochs: while state.epoch < opts.epochs {
        let batches = epoch_batches(&lengths, opts.batch_size, opts.bucket, opts.seed, state.epoch);
        while state.batch < batches.len() {
            // One optimizer step: up to `accumulate` micro-batches.
            let group_end = (state.batch + opts.accumulate).min(batches.len());
            let group = &batches[state.batch..group_end];
            let step_pairs: usize = group.iter().map(Vec::len).sum();
            let step_started = Instant::now();
            acc.clear().ctx("gradient accumulators")?;
            for batch in group {
                let chunk: Vec<&Item> = batch.iter().map(|&i| &items[i]).collect();
                let stats = micro_step(&rm, &chunk, opts, step_pairs, &mut acc)?;
                state.sums[0] += stats.loss_sum;
                state.sums[1] += stats.correct as f64;
                state.sums[2] += stats.decided as f64;
                state.sums[3] += chunk.len() as f64;
                real_tokens += stats.real_tokens;
                padded_tokens += stats.padded_tokens;
                pairs_done += chunk.len();
            }
            acc.clip(opts.max_grad_norm).ctx("gradient clipping")?;
            let lr = optim::learning_rate(opts.lr, warmup_steps, total_steps, state.step, opts.decay);
            adam.update(rm.params(), &acc.grads, lr).ctx("optimizer step")?;
            step_seconds += step_started.elapsed().as_secs_f64();
            state.step += 1;
            state.batch = group_end;
            steps_this_run += 1;
            bar.set_position(state.step);
            bar.set_message(format!(
                "epoch {} loss {:.4} acc {:.3} lr {:.2e}",
                state.epoch + 1,
                state.sums[0] / state.sums[3].max(1.0),
                state.sums[1] / state.sums[2].max(1.0),
                lr
            ));
            let at_epoch_end = state.batch == batches.len();
            if !at_epoch_end && opts.checkpoint_every > 0 && state.step.is_multiple_of(opts.checkpoint_every) {
                save_checkpoint(&checkpoint_dir, &rm, &adam, &mut state)?;
                if log_lines {
                    // No bar is drawn into a log file: a line per checkpoint instead.
                    eprintln!("train step {}/{total_steps} ({:.0?}): {}", state.step, started.elapsed(), bar.message());
                }
            }
            if opts.stop_after.is_some_and(|n| steps_this_run >= n) && !at_epoch_end {
                save_checkpoint(&checkpoint_dir, &rm, &adam, &mut state)?;
                interrupted = true;
                break 'epochs;
            }
        }
        // End of the epoch: evaluate, record, checkpoint.
        let (dev_accuracy, dev_loss) = if dev_items.is_empty() {
            (None, None)
        } else {
            let (a, l) = evaluate(&rm, &dev_items)?;
            (Some(a), Some(l))
        };
        let report = EpochReport {
            epoch: state.epoch + 1,
            train_loss: state.sums[0] / state.sums[3].max(1.0),
            train_accuracy: state.sums[1] / state.sums[2].max(1.0),
            dev_accuracy,
            dev_loss,
        };
        let line = format!(
            "epoch {}: train loss {:.4}, train accuracy {:.4}{}",
            report.epoch,
            report.train_loss,
            report.train_accuracy,
            match (dev_accuracy, dev_loss) {
                (Some(a), Some(l)) => format!(", dev accuracy {a:.4} ({} pairs), dev loss {l:.4}", dev_items.len()),
                _ => String::new(),
            }
        );
        if log_lines {
            eprintln!("{line}");
        } else if opts.progress {
            bar.println(line);
        }
        state.epochs.push(report);
        state.epoch += 1;
        state.batch = 0;
        state.sums = [0.0; 4];
        save_checkpoint(&checkpoint_dir, &rm, &adam, &mut state)?;
        if opts.stop_after.is_some_and(|n| steps_this_run >= n) && state.epoch < opts.epochs {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = step_seconds;
    let report = TrainReport {
        pairs: items.len(),
        ties: items.iter().filter(|i| i.tie).count(),
        dev_pairs: dev_items.len(),
        truncated,
        dev_truncated,
        steps: state.step,
        resumed_from,
        epochs: state.epochs.clone(),
        seconds,
        pairs_per_s: pairs_done as f64 / seconds.max(1e-9),
        padding_efficiency: real_tokens as f64 / padded_tokens.max(1) as f64,
        out: opts.out.clone(),
    };
    if !interrupted {
        rm.meta.training = serde_json::json!({ "options": opts, "report": report });
        rm.save(&opts.out)?;
    }
    Ok(report)
}

/// Forward and backward of one micro-batch; adds its gradients (scaled by 1/`step_pairs`) to `acc`.
fn micro_step(
    rm: &RewardModel,
    chunk: &[&Item],
    opts: &TrainOptions,
    step_pairs: usize,
    acc: &mut GradAccumulator,
) -> Result<MicroStats, RewardError> {
    let rows: Vec<(&[u32], &[u32])> = chunk
        .iter()
        .map(|it| (it.chosen.ids.as_slice(), it.chosen.type_ids.as_slice()))
        .chain(chunk.iter().map(|it| (it.rejected.ids.as_slice(), it.rejected.type_ids.as_slice())))
        .collect();
    let longest = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let real_tokens = rows.iter().map(|(ids, _)| ids.len()).sum();
    let batch = Batch::new(&rows, rm.pad_id(), rm.device()).ctx("building a batch")?;
    let r = rm.rewards(&batch).ctx("forward pass")?;
    let losses = pair_losses(&r, chunk, opts.use_margin, opts.center_coef).ctx("loss")?;
    let total = (losses.sum_all().ctx("loss")? / step_pairs as f64).ctx("loss")?;
    let grads = total.backward().ctx("backward pass")?;
    acc.add(rm.params(), &grads).ctx("accumulating gradients")?;
    let loss_sum = losses.sum_all().and_then(|t| t.to_scalar::<f32>()).ctx("loss")? as f64;
    let r = r.to_vec1::<f32>().ctx("rewards")?;
    let n = chunk.len();
    let (mut correct, mut decided) = (0, 0);
    for (i, it) in chunk.iter().enumerate() {
        if !it.tie {
            decided += 1;
            correct += (r[i] > r[n + i]) as usize;
        }
    }
    Ok(MicroStats { loss_sum, correct, decided, real_tokens, padded_tokens: longest * rows.len() })
}

/// Accuracy (r_c > r_r; equal counts as wrong; ties are left out) and mean loss on `items`.
fn evaluate(rm: &RewardModel, items: &[Item]) -> Result<(f64, f64), RewardError> {
    let encoded: Vec<Encoded> = items.iter().flat_map(|it| [it.chosen.clone(), it.rejected.clone()]).collect();
    let r = rm.score_encoded(&encoded)?;
    let (mut correct, mut decided, mut loss) = (0usize, 0usize, 0f64);
    for (i, it) in items.iter().enumerate() {
        let d = (r[2 * i] - r[2 * i + 1]) as f64;
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        if it.tie {
            loss += 0.5 * softplus(-d) + 0.5 * softplus(d);
        } else {
            decided += 1;
            correct += (d > 0.0) as usize;
            loss += softplus(-d);
        }
    }
    Ok((correct as f64 / decided.max(1) as f64, loss / items.len().max(1) as f64))
}

fn save_checkpoint(dir: &Path, rm: &RewardModel, adam: &AdamW, state: &mut CheckpointState) -> Result<(), RewardError> {
    std::fs::create_dir_all(dir).map_err(|e| RewardError::io(dir, e))?;
    let mut tensors = std::collections::HashMap::new();
    for (i, (name, var)) in rm.params().iter().enumerate() {
        let shape = var.shape().clone();
        let cpu = Device::Cpu;
        tensors.insert(format!("param.{name}"), var.as_tensor().to_device(&cpu).ctx(name)?);
        tensors.insert(format!("m.{name}"), adam.m.to_cpu_tensor(i, &shape).ctx(name)?);
        tensors.insert(format!("v.{name}"), adam.v.to_cpu_tensor(i, &shape).ctx(name)?);
    }
    let previous = std::mem::replace(&mut state.weights, format!("step-{:06}.safetensors", state.step));
    let path = dir.join(&state.weights);
    let tmp = tmp_path(&path);
    candle_core::safetensors::save(&tensors, &tmp).ctx(tmp.display())?;
    crate::fsio::persist(&tmp, &path).map_err(|e| RewardError::io(&path, e))?;
    let json = serde_json::to_vec_pretty(&*state).expect("checkpoint state serialises");
    write_atomic(&dir.join("state.json"), &json)?;
    if !previous.is_empty() && previous != state.weights {
        let _ = std::fs::remove_file(dir.join(previous));
    }
    Ok(())
}

fn load_checkpoint(dir: &Path, rm: &RewardModel, adam: &mut AdamW) -> Result<CheckpointState, RewardError> {
    let state_path = dir.join("state.json");
    let text = crate::fsio::read_to_string(&state_path).map_err(|e| RewardError::io(&state_path, e))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| RewardError::Format { path: state_path.clone(), message: e.to_string() })?;
    let path = dir.join(&state.weights);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).ctx(path.display())?;
    let take = |key: String| {
        tensors
            .get(&key)
            .cloned()
            .ok_or_else(|| RewardError::MissingTensor { name: format!("{key} in {}", path.display()) })
    };
    for (i, (name, var)) in rm.params().iter().enumerate() {
        let p = take(format!("param.{name}"))?;
        if p.dims() != var.dims() {
            return Err(RewardError::Shape {
                name: name.clone(),
                found: p.dims().to_vec(),
                expected: var.dims().to_vec(),
            });
        }
        var.set(&p.to_device(var.device()).ctx(name)?).ctx(name)?;
        adam.m.set(i, &take(format!("m.{name}"))?).ctx(format!("m.{name} in {}", path.display()))?;
        adam.v.set(i, &take(format!("v.{name}"))?).ctx(format!("v.{name} in {}", path.display()))?;
    }
    adam.step = state.step;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_is_stable_and_exact() {
        let x = Tensor::new(&[-100f32, -1.0, 0.0, 2.0, 100.0], &Device::Cpu).unwrap();
        let y = softplus(&x).unwrap().to_vec1::<f32>().unwrap();
        let expected = [0.0f32, 0.313_261_7, std::f32::consts::LN_2, 2.126_928, 100.0];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
    }

    fn item(tie: bool, margin: f32) -> Item {
        let e = Encoded { ids: vec![1], type_ids: vec![0], truncated: false };
        Item { chosen: e.clone(), rejected: e, margin, tie }
    }

    #[test]
    fn losses_match_hand_computed_values() {
        // r = [r_c0, r_c1, r_c2, r_r0, r_r1, r_r2]
        let r = Tensor::new(&[1.0f32, 0.5, 2.0, 0.0, 0.5, -1.0], &Device::Cpu).unwrap();
        let (a, b, c) = (item(false, 0.5), item(true, 0.0), item(false, 1.0));
        let l = pair_losses(&r, &[&a, &b, &c], true, 0.0).unwrap().to_vec1::<f32>().unwrap();
        let sp = |x: f64| (1.0 + x.exp()).ln() as f32;
        // pair 0: −log σ(1 − 0 − 0.5) = softplus(−0.5)
        assert!((l[0] - sp(-0.5)).abs() < 1e-6);
        // pair 1 (tie, d = 0): ½ softplus(0) + ½ softplus(0) = ln 2
        assert!((l[1] - std::f32::consts::LN_2).abs() < 1e-6);
        // pair 2: −log σ(3 − 1) = softplus(−2)
        assert!((l[2] - sp(-2.0)).abs() < 1e-6);
        // Without margins and with centering 0.1: pair 0 = softplus(−1) + 0.1·(1 + 0)²
        let l = pair_losses(&r, &[&a, &b, &c], false, 0.1).unwrap().to_vec1::<f32>().unwrap();
        assert!((l[0] - (sp(-1.0) + 0.1)).abs() < 1e-6);
        assert!((l[1] - (std::f32::consts::LN_2 + 0.1 * 1.0)).abs() < 1e-6);
        assert!((l[2] - (sp(-3.0) + 0.1 * 1.0)).abs() < 1e-6);
    }

    #[test]
    fn devices_are_recorded_only_when_not_the_cpu() {
        // The CPU is left out of the recorded options (they read back as the CPU); CUDA is kept.
        let mut opts = TrainOptions::new("backbone", "out");
        let json = serde_json::to_value(&opts).unwrap();
        assert!(json.get("device").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<TrainOptions>(json).unwrap().device, TrainDevice::Cpu);
        opts.device = TrainDevice::Cuda(1);
        let json = serde_json::to_value(&opts).unwrap();
        assert_eq!(json["device"], "cuda:1");
        assert_eq!(serde_json::from_value::<TrainOptions>(json).unwrap().device, TrainDevice::Cuda(1));
        assert!(matches!(open_device(TrainDevice::Cpu), Ok(Device::Cpu)));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = open_device(TrainDevice::Cuda(0)).unwrap_err().to_string();
        assert!(err.contains("--device cuda:0") && err.contains("--features cuda"), "{err}");
        // And train() stops there, before reading anything.
        let opts =
            TrainOptions { device: TrainDevice::Cuda(0), progress: false, ..TrainOptions::new("missing", "out") };
        let pair = TrainPair { prompt: Vec::new(), chosen: "a".into(), rejected: "b".into(), margin: 0.0, tie: false };
        let err = train(&opts, &[pair], &[]).unwrap_err().to_string();
        assert!(err.contains("built without CUDA support"), "{err}");
    }

    #[test]
    fn epoch_batches_are_seeded_bucketed_permutations() {
        let lengths: Vec<usize> = (0..100).map(|i| (i * 37) % 91).collect();
        let a = epoch_batches(&lengths, 8, 4, 5, 0);
        assert_eq!(a, epoch_batches(&lengths, 8, 4, 5, 0));
        assert_ne!(a, epoch_batches(&lengths, 8, 4, 5, 1));
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Within a batch, lengths are close: each batch is a slice of a sorted window.
        for b in &a {
            let lens: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
            assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
        }
    }
}
