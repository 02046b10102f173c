//! `engine train`: the arguments and the library call behind them.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::optim::Decay;
use super::train::{TrainDevice, TrainOptions, TrainReport};
use super::{PairStats, RewardError, TrainPair, load_train_pairs};

/// Train a reward model (MiniLM + a scalar head) with the Bradley–Terry loss and export it
/// for HF transformers.
///
/// Without --labels, the pairs' own gold labels are used (a pair's `chosen` wins). With
/// --labels (the labeled.jsonl of `engine label`), the rule labels decide: ties train toward
/// 0.5, abstentions are left out, and --margin uses each label's normalized margin.
///
/// The output folder loads in Python with
/// `AutoModelForSequenceClassification.from_pretrained(OUT)`; checkpoints go to
/// OUT/checkpoint/ and --resume continues an interrupted run from the last one.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  engine train --data ../shared/data/hh-harmless-train.jsonl --dev ../shared/data/hh-harmless-dev.jsonl --out runs/rm
  engine train --data pairs.jsonl --labels runs/demo/labeled.jsonl --margin --out runs/rm-rules
  engine train --data pairs.jsonl --out runs/rm --resume          continue after an interruption
  engine train --config ../rules.toml --data pairs.jsonl --out rm   the job's [train] encoder
  engine train --data pairs.jsonl --out runs/rm --epochs 3 --batch-size 8 --accumulate 4 --lr 2e-5 --decay cosine
  engine train --data pairs.jsonl --out runs/rm --device cuda       on GPU 0 (an engine built with --features cuda)
  engine train --data pairs.jsonl --out runs/rm-qwen --backbone models/Qwen2.5-0.5B-Instruct --device cuda --batch-size 4")]
pub struct TrainArgs {
    /// Pairs to train on, in any format `engine score` reads (gold labels unless --labels).
    #[arg(long)]
    pub data: PathBuf,
    /// Rule labels for --data from `engine label` (labeled.jsonl).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Pairs with gold labels to report accuracy on after each epoch.
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// The export folder (config.json, model.safetensors, tokenizer, reward_model.json).
    #[arg(long, short)]
    pub out: PathBuf,
    /// The backbone to start from: a BERT folder (the embedded all-MiniLM-L6-v2 by default),
    /// or a Llama/Qwen2 decoder (last-token pooling; meant for a GPU, slow on a CPU): a folder
    /// with safetensors weights, config.json and tokenizer.json, or a GGUF file (dequantised
    /// to f32). Told apart by config.json's model_type, or the GGUF magic. Default: --config's
    /// `[train] encoder`, else models/all-minilm-l6-v2 (relative to --config's folder, or to
    /// the working directory without --config).
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// A job file (rules.toml) whose `[train] encoder` is the default --backbone, resolved
    /// relative to the job file as `engine run` does.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch-size × accumulate).
    #[arg(long, default_value_t = 1)]
    pub accumulate: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-5)]
    pub lr: f64,
    /// Share of the steps spent warming up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// After warm-up: linear | cosine | constant.
    #[arg(long, default_value = "linear")]
    pub decay: Decay,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Tokens per item (conversation + response); longer items are truncated and counted.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Seed of the head's initialisation and the data order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Continue from OUT/checkpoint/ if it exists.
    #[arg(long)]
    pub resume: bool,
    /// Optimizer steps between checkpoints (0: at epoch ends only).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: u64,
    /// Use the labels' normalized margins in the loss: −log σ(r_c − r_r − margin).
    #[arg(long)]
    pub margin: bool,
    /// Weight of the center-rewards regulariser, coef · (r_c + r_r)².
    #[arg(long, default_value_t = 0.0)]
    pub center_coef: f64,
    /// Micro-batches per length-sorted bucket (1 turns bucketing off).
    #[arg(long, default_value_t = 32)]
    pub bucket: usize,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j')]
    pub threads: Option<usize>,
    /// Where to train: cpu | cuda | cuda:N (CUDA needs an engine built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: TrainDevice,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `engine train` did, for the command to print.
#[derive(Debug)]
pub struct TrainOutcome {
    pub stats: PairStats,
    pub report: TrainReport,
}

impl std::fmt::Display for TrainOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, r) = (&self.stats, &self.report);
        let mut line = format!(
            "trained on {} of {} pairs ({} ties, {} unlabeled, {} without a label record); {} steps",
            s.used, s.pairs, s.ties, s.skipped_unlabeled, s.skipped_missing, r.steps
        );
        if s.extra_labels > 0 {
            let _ = write!(line, "; ignored {} label records for pairs not in --data", s.extra_labels);
        }
        if s.skipped_identical > 0 {
            let _ = write!(line, "; skipped {} pairs whose chosen and rejected are the same text", s.skipped_identical);
        }
        if r.resumed_from > 0 {
            let _ = write!(line, " (resumed from step {})", r.resumed_from);
        }
        writeln!(f, "{line}")?;
        writeln!(
            f,
            "truncated items: {} of {} train, {} of {} dev; padding efficiency {:.2}; {:.2} pairs/s",
            r.truncated,
            2 * r.pairs,
            r.dev_truncated,
            2 * r.dev_pairs,
            r.padding_efficiency,
            r.pairs_per_s
        )?;
        for e in &r.epochs {
            write!(f, "epoch {}: train loss {:.4}, train accuracy {:.4}", e.epoch, e.train_loss, e.train_accuracy)?;
            if let (Some(a), Some(l)) = (e.dev_accuracy, e.dev_loss) {
                write!(f, ", dev accuracy {a:.4} ({} pairs), dev loss {l:.4}", r.dev_pairs)?;
            }
            writeln!(f)?;
        }
        write!(f, "wrote {}", r.out.display())
    }
}

/// Runs `engine train`.
pub fn run_train(args: &TrainArgs) -> Result<TrainOutcome, RewardError> {
    // An --out over an input is refused before the model is looked up: it is the mistake to
    // name first, whatever else is missing.
    let mut inputs = vec![("--data", args.data.as_path())];
    inputs.extend(args.labels.as_deref().map(|l| ("--labels", l)));
    inputs.extend(args.dev.as_deref().map(|d| ("--dev", d)));
    crate::fsio::refuse_output_dir_over_inputs(("--out", &args.out), &inputs)
        .map_err(|e| RewardError::Invalid(e.to_string()))?;
    let backbone = crate::models::encoder("--backbone", args.backbone.as_deref(), args.config.as_deref())
        .map_err(|e| RewardError::Invalid(e.to_string()))?
        .path;
    crate::fsio::refuse_output_dir_over_inputs(("--out", &args.out), &[("--backbone", backbone.as_path())])
        .map_err(|e| RewardError::Invalid(e.to_string()))?;
    let (train, stats) = load_train_pairs(&args.data, args.labels.as_deref(), args.margin)?;
    let dev = match &args.dev {
        Some(path) => TrainPair::from_gold(&super::data::read_pairs(path)?).0,
        None => Vec::new(),
    };
    let opts = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        accumulate: args.accumulate,
        lr: args.lr,
        warmup: args.warmup,
        decay: args.decay,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        max_len: args.max_len,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        resume: args.resume,
        use_margin: args.margin,
        center_coef: args.center_coef,
        bucket: args.bucket,
        threads: args.threads,
        device: args.device,
        progress: !args.quiet,
        ..TrainOptions::new(&backbone, &args.out)
    };
    let report = super::train(&opts, &train, &dev)?;
    Ok(TrainOutcome { stats, report })
}
