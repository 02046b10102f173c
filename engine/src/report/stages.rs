//! The train and eval stages of `engine run`, over the reward and eval modules.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::run::{RunError, RunOptions, TrainExample, write_atomic};
use crate::config::Job;
use crate::eval::{EvalOptions, EvalReport};
use crate::reward::{RewardModel, TrainOptions, TrainPair, TrainReport};

/// `rm/run.json`: which data and settings the model in `rm/` was trained on.
#[derive(Serialize, Deserialize)]
struct Trained {
    fingerprint: String,
    report: TrainReport,
}

/// A hash of everything that decides the trained model: the examples (texts, labels,
/// margins) and the settings.
fn fingerprint(examples: &[TrainPair], dev: &[TrainPair], opts: &TrainOptions) -> String {
    let mut h = Sha256::new();
    for (set, pairs) in [("train", examples), ("dev", dev)] {
        h.update(set.as_bytes());
        for p in pairs {
            let row = serde_json::json!([p.prompt, p.chosen, p.rejected, p.margin, p.tie]);
            h.update(row.to_string().as_bytes());
            h.update(b"\n");
        }
    }
    let mut settings = opts.clone();
    settings.progress = false;
    settings.resume = false;
    h.update(serde_json::to_string(&settings).expect("options serialise").as_bytes());
    hex::encode(h.finalize())
}

/// Trains the reward model on the rule-labelled pairs (the held-out gold pairs are its dev
/// set). Skips training when `rm/` already holds a model of the same data and settings;
/// resumes from `rm/checkpoint/` when an earlier run of the same data was interrupted.
pub(super) fn train(
    job: &Job,
    examples: &[TrainExample<'_>],
    heldout: &[&crate::data::Pair],
    rm_dir: &Path,
    opts: &RunOptions,
) -> Result<(Option<TrainReport>, String), RunError> {
    if examples.is_empty() {
        return Ok((None, "no labelled pairs to train on".into()));
    }
    let s = &job.run.train;
    let pairs: Vec<crate::data::Pair> = examples.iter().map(|(p, _)| (*p).clone()).collect();
    let records: Vec<crate::labeling::AuditRecord> = examples.iter().map(|(_, r)| (*r).clone()).collect();
    let (train_pairs, _) = TrainPair::from_labels(&pairs, &records, s.margin)?;
    let heldout: Vec<crate::data::Pair> = heldout.iter().map(|p| (*p).clone()).collect();
    let (dev, _) = TrainPair::from_gold(&heldout);
    let mut options = TrainOptions::new(&s.encoder, rm_dir);
    options.epochs = s.epochs;
    options.batch_size = s.batch_size;
    options.lr = s.learning_rate;
    options.max_len = s.max_len;
    options.seed = s.seed;
    options.use_margin = s.margin;
    options.center_coef = s.center_coef;
    options.checkpoint_every = s.checkpoint_every as u64;
    options.threads = opts.threads;
    options.progress = opts.progress;
    options.resume = true;

    let stamp = rm_dir.join("run.json");
    let fingerprint = fingerprint(&train_pairs, &dev, &options);
    let earlier: Option<Trained> =
        crate::fsio::read_to_string(&stamp).ok().and_then(|text| serde_json::from_str(&text).ok());
    match earlier {
        Some(t) if t.fingerprint == fingerprint && rm_dir.join("model.safetensors").exists() => {
            return Ok((Some(t.report), "up to date (same data and settings)".into()));
        }
        Some(_) | None => {
            // A checkpoint of other data or settings must not be resumed.
            let checkpoint = rm_dir.join("checkpoint");
            let started_here = rm_dir.join("run.started");
            let same_start = crate::fsio::read_to_string(&started_here).is_ok_and(|f| f == fingerprint);
            if checkpoint.exists() && !same_start {
                std::fs::remove_dir_all(&checkpoint)
                    .map_err(|source| RunError::Io { path: checkpoint.clone(), source })?;
            }
            std::fs::create_dir_all(rm_dir).map_err(|source| RunError::Io { path: rm_dir.to_path_buf(), source })?;
            write_atomic(&started_here, fingerprint.as_bytes())?;
        }
    }
    let report = crate::reward::train(&options, &train_pairs, &dev)?;
    let note =
        if report.resumed_from > 0 { format!("resumed from step {}", report.resumed_from) } else { "computed".into() };
    let json = serde_json::to_string_pretty(&Trained { fingerprint, report: report.clone() }).expect("serialises");
    write_atomic(&stamp, json.as_bytes())?;
    Ok((Some(report), note))
}

/// Evaluates the model in `rm_dir` on `files` and writes `eval.json`, `eval.md`,
/// `eval-rewards.jsonl` into `out`.
pub(super) fn eval(rm_dir: &Path, files: &[PathBuf], out: &Path, opts: &RunOptions) -> Result<EvalReport, RunError> {
    let model = RewardModel::load(rm_dir)?;
    let options = EvalOptions { progress: opts.progress, ..EvalOptions::default() };
    let report = crate::eval::evaluate(&model, files, &options)?;
    crate::eval::write_report(&report, out)?;
    Ok(report)
}

/// Per-epoch curves for the training plot: train loss, train accuracy, dev accuracy.
pub(super) fn training_curves(train: &TrainReport) -> Vec<(String, Vec<(f64, f64)>)> {
    let epoch = |e: &crate::reward::EpochReport| e.epoch as f64;
    let mut curves = vec![
        ("train loss".to_string(), train.epochs.iter().map(|e| (epoch(e), e.train_loss)).collect::<Vec<_>>()),
        ("train accuracy".to_string(), train.epochs.iter().map(|e| (epoch(e), e.train_accuracy)).collect()),
    ];
    let dev: Vec<(f64, f64)> = train.epochs.iter().filter_map(|e| e.dev_accuracy.map(|a| (epoch(e), a))).collect();
    if !dev.is_empty() {
        curves.push(("held-out accuracy".to_string(), dev));
    }
    curves
}

/// The training numbers as a markdown table.
pub(super) fn train_summary(train: &TrainReport) -> String {
    let mut md = format!(
        "{} pairs ({} ties), {} optimizer steps, {:.2} pairs/s, {} of {} items truncated.\n\n\
         | epoch | train loss | train accuracy | held-out accuracy |\n|---:|---:|---:|---:|\n",
        train.pairs,
        train.ties,
        train.steps,
        train.pairs_per_s,
        train.truncated,
        2 * train.pairs
    );
    for e in &train.epochs {
        let dev = e.dev_accuracy.map_or("–".to_string(), |a| format!("{a:.3}"));
        let _ = writeln!(md, "| {} | {:.4} | {:.3} | {dev} |", e.epoch, e.train_loss, e.train_accuracy);
    }
    md
}
