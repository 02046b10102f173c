//! `engine eval`: the arguments and the library call behind them.

use std::path::PathBuf;

use super::{EvalError, EvalOptions, EvalReport, Written, evaluate, load_model, write_report};
use crate::data::Format;

/// Evaluate a reward model RewardBench-style: accuracy per subset (ties count as wrong),
/// overall accuracy with a 95% bootstrap interval, and the Safety section score.
///
/// A pair's subset is its row's `subset` field (RewardBench rows) or else its file's
/// stem. The Safety score weights the accuracies of the safety subsets present
/// (refusals-dangerous, refusals-offensive, xstest-should-refuse, xstest-should-respond,
/// donotanswer) by RewardBench's example counts for them (100, 100, 154, 250, 136).
///
/// Writes eval.json, eval.md (a markdown table) and eval-rewards.jsonl (both rewards of
/// every pair) to --out, by default the model's folder.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  engine eval --model runs/rm --data ../shared/data/hh-harmless-dev.jsonl
  engine eval --model runs/rm --data reward-bench-filtered.jsonl --out runs/rm/rewardbench
  engine eval --model runs/rm --data a.jsonl b.jsonl --json > eval.json")]
pub struct EvalArgs {
    /// The reward model: an export folder written by `engine train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Pairs with gold labels (our schema, RewardBench rows, HH-RLHF); unlabeled pairs are
    /// left out and counted.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Where to write eval.json, eval.md and eval-rewards.jsonl (default: the model folder).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print eval.json to stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Force one input format (default: detect per line).
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Skip malformed input lines (counted in the report) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Responses per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of the bootstrap intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `engine eval` did.
#[derive(Debug)]
pub struct EvalOutcome {
    pub report: EvalReport,
    pub written: Written,
}

/// Loads the model, evaluates it on the data, and writes the reports.
pub fn run_eval(args: &EvalArgs) -> Result<EvalOutcome, EvalError> {
    // Refuse before the (slow) scoring: no report may be written over a data file.
    let w = super::written_in(args.out.as_deref().unwrap_or(&args.model));
    let inputs: Vec<(&str, &std::path::Path)> = args.data.iter().map(|d| ("--data", d.as_path())).collect();
    for out in [&w.json, &w.markdown, &w.rewards] {
        crate::fsio::refuse_overwriting_inputs(("the report", out), &inputs)?;
    }
    let model = load_model(&args.model)?;
    let opts = EvalOptions {
        format: args.format,
        skip_invalid: args.skip_invalid,
        batch_size: args.batch_size,
        seed: args.seed,
        progress: !args.quiet,
    };
    let report = evaluate(&model, &args.data, &opts)?;
    let written = write_report(&report, args.out.as_deref().unwrap_or(&args.model))?;
    Ok(EvalOutcome { report, written })
}
