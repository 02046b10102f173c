//! The Rule Adapter: predicts the max-discrepancy top-k rules of a pair from its text alone.
//!
//! Scoring every response under every rule is where the judge spends its time. The paper's
//! Rule Adapter learns, from pairs that *were* fully scored, which k rules max-discrepancy
//! selection would keep, so that on new pairs the judge is asked about those k rules only.
//!
//! # Model
//!
//! A pair is embedded by a sentence encoder (the embedded all-MiniLM-L6-v2 by default): the
//! conversation `p`, response A `a` and response B `b`, each a unit vector. The features are
//!
//! ```text
//! x = [ p , |a − b| , (a + b) / 2 ]
//! ```
//!
//! all symmetric in A and B, so swapping the responses cannot change a prediction (the
//! selection itself is symmetric, see [`crate::select`]). A two-layer MLP (`x → hidden → ReLU
//! → one logit per rule`) is trained with binary cross-entropy against multi-hot targets: the
//! rules max-discrepancy top-k selected on the fully scored pair. Prediction ranks rules by
//! logit; the `adapter` strategy then keeps the first k predicted rules that have verdicts.
//!
//! # What is reported
//!
//! [`train`] holds out a seeded share of the pairs and reports, on them:
//! recall@k (|predicted top-k ∩ full-scoring top-k| / |full-scoring top-k|), label agreement
//! with the labels full scoring gives, and the judge calls the predicted rules need against
//! the calls full scoring made (from the score records' `judge_calls`).

mod features;
mod model;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use features::{Embedder, EncoderEmbedder, pair_features, prompt_text};
pub use model::{AdapterMeta, RuleAdapter};

use crate::data::{Pair, SampleHash};
use crate::label::Labeler;
use crate::labeling::{LabelingError, ScoreTable};
use crate::select::{PairScores, Selector, Strategy};

/// Errors of the Rule Adapter.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("encoder: {0}")]
    Encoder(String),
    #[error(transparent)]
    Labeling(#[from] LabelingError),
    #[error("adapter training: {0}")]
    Options(String),
}

/// How to train an adapter.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOptions {
    /// Rules per pair (the k of max-discrepancy top-k).
    pub k: usize,
    /// The λ of max-discrepancy.
    pub lambda: f64,
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub seed: u64,
    /// Share of the pairs held out for the report (0 ≤ holdout < 1).
    pub holdout: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            k: 5,
            lambda: 0.5,
            hidden: 256,
            epochs: 60,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            batch_size: 64,
            seed: 17,
            holdout: 0.2,
        }
    }
}

/// What training measured on the held-out pairs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdapterReport {
    pub rules: usize,
    pub k: usize,
    pub train_pairs: usize,
    pub heldout_pairs: usize,
    pub final_train_loss: f64,
    /// Mean over held-out pairs of |predicted top-k ∩ full top-k| / |full top-k|.
    pub recall_at_k: f64,
    /// The same for a random ranking, as a baseline (k / selectable rules, averaged).
    pub random_recall_at_k: f64,
    /// Held-out pairs whose adapter label equals the full max-discrepancy label.
    pub label_agreement: f64,
    /// Judge calls full scoring made on the held-out pairs' responses.
    pub judge_calls_full: u64,
    /// Judge calls the predicted rules alone made on them.
    pub judge_calls_adapter: u64,
    /// Rule evaluations (both responses) per pair, full against adapter.
    pub evaluations_full: u64,
    pub evaluations_adapter: u64,
    /// Held-out agreement with gold labels, when the pairs have them: (full, adapter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold_agreement: Option<(f64, f64)>,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Rule Adapter: {} rules, k = {}, trained on {} pairs, measured on {} held-out pairs",
            self.rules, self.k, self.train_pairs, self.heldout_pairs
        )?;
        writeln!(f, "  final training loss        {:.4}", self.final_train_loss)?;
        writeln!(
            f,
            "  recall@k                   {:.3} (random ranking: {:.3})",
            self.recall_at_k, self.random_recall_at_k
        )?;
        writeln!(f, "  label agreement with full  {:.3}", self.label_agreement)?;
        writeln!(
            f,
            "  rule evaluations           {} full -> {} adapter ({})",
            self.evaluations_full,
            self.evaluations_adapter,
            fewer(self.evaluations_full, self.evaluations_adapter)
        )?;
        writeln!(
            f,
            "  judge calls                {} full -> {} adapter ({})",
            self.judge_calls_full,
            self.judge_calls_adapter,
            fewer(self.judge_calls_full, self.judge_calls_adapter)
        )?;
        if let Some((full, adapter)) = self.gold_agreement {
            writeln!(f, "  agreement with gold        {full:.3} full, {adapter:.3} adapter")?;
        }
        Ok(())
    }
}

/// "2.6x fewer", or "n/a" when there is nothing to compare (deterministic rules make no
/// judge calls).
fn fewer(full: u64, adapter: u64) -> String {
    if adapter == 0 { "n/a".into() } else { format!("{:.1}x fewer", full as f64 / adapter as f64) }
}

/// A pair's text, embedded: the adapter's input.
pub fn embed_pairs(embedder: &dyn Embedder, pairs: &[Pair]) -> Result<Vec<Vec<f32>>, AdapterError> {
    let mut texts = Vec::with_capacity(pairs.len() * 3);
    for pair in pairs {
        texts.push(prompt_text(&pair.prompt));
        texts.push(pair.a.clone());
        texts.push(pair.b.clone());
    }
    let embeddings = embedder.embed(&texts)?;
    if embeddings.len() != texts.len() {
        return Err(AdapterError::Encoder(format!("{} texts gave {} embeddings", texts.len(), embeddings.len())));
    }
    Ok(embeddings.chunks(3).map(|e| pair_features(&e[0], &e[1], &e[2])).collect())
}

/// Whether a pair is held out: a seeded hash of its id, so the split does not depend on
/// the order of the file.
pub fn is_heldout(pair_id: &str, seed: u64, holdout: f64) -> bool {
    let h = crate::select::rng::SplitMix64::new(seed ^ crate::select::rng::fnv1a(pair_id.as_bytes())).next_f64();
    h < holdout
}

/// Trains an adapter on fully scored pairs (`table` must hold every rule's verdict on
/// both responses of each pair) and reports on a held-out share.
pub fn train(
    pairs: &[Pair],
    features: &[Vec<f32>],
    table: &ScoreTable,
    encoder_id: &str,
    opts: &TrainOptions,
) -> Result<(RuleAdapter, AdapterReport), AdapterError> {
    if !(0.0..1.0).contains(&opts.holdout) {
        return Err(AdapterError::Options(format!("holdout must be in [0, 1), found {}", opts.holdout)));
    }
    if opts.k == 0 || opts.epochs == 0 || opts.batch_size == 0 || opts.hidden == 0 {
        return Err(AdapterError::Options("k, epochs, batch size and hidden size must be at least 1".into()));
    }
    let strategy = Strategy::max_discrepancy(opts.k, opts.lambda)
        .map_err(|e| AdapterError::Options(format!("selection settings: {e}")))?;
    let selector = Selector::new(strategy, table.rule_ids.clone(), None).map_err(LabelingError::from)?;
    let rules = table.rule_ids.len();

    // Targets: the rules full max-discrepancy selection keeps.
    let mut train_x = Vec::new();
    let mut train_y = Vec::new();
    let mut heldout = Vec::new();
    for (pair, x) in pairs.iter().zip(features) {
        let (a, b) = table.pair_scores(pair)?;
        let selection = selector.select(&pair.id, PairScores::new(a, b), None).map_err(LabelingError::from)?;
        let top: Vec<usize> = selection.indices();
        if is_heldout(&pair.id, opts.seed, opts.holdout) {
            heldout.push((pair, x, top));
        } else if !top.is_empty() {
            let mut y = vec![0f32; rules];
            for &r in &top {
                y[r] = 1.0;
            }
            train_x.push(x.clone());
            train_y.push(y);
        }
    }
    if train_x.is_empty() {
        return Err(AdapterError::Options("no training pairs with a selection (score the pairs first)".into()));
    }
    let meta = AdapterMeta {
        version: model::FORMAT_VERSION,
        rule_ids: table.rule_ids.clone(),
        k: opts.k,
        lambda: opts.lambda,
        hidden: opts.hidden,
        input_dim: train_x[0].len(),
        encoder: encoder_id.to_owned(),
        trained_pairs: train_x.len(),
        seed: opts.seed,
    };
    let (adapter, loss) = RuleAdapter::fit(meta, &train_x, &train_y, opts)?;

    // Held-out report.
    let mut report = AdapterReport {
        rules,
        k: opts.k,
        train_pairs: train_x.len(),
        heldout_pairs: heldout.len(),
        final_train_loss: loss,
        ..Default::default()
    };
    if heldout.is_empty() {
        return Ok((adapter, report));
    }
    let xs: Vec<Vec<f32>> = heldout.iter().map(|(_, x, _)| (*x).clone()).collect();
    let ranked = adapter.rank(&xs)?;
    let adapter_selector =
        Selector::new(Strategy::Adapter { k: opts.k }, table.rule_ids.clone(), None).map_err(LabelingError::from)?;
    let labeler = Labeler::default();
    let (mut recall, mut random_recall, mut agree) = (0.0, 0.0, 0usize);
    let (mut gold_full, mut gold_adapter, mut gold_n) = (0usize, 0usize, 0usize);
    for ((pair, _, top), order) in heldout.iter().zip(&ranked) {
        let (a, b) = table.pair_scores(pair)?;
        let scores = PairScores::new(a, b);
        let selectable = (0..rules).filter(|&r| a[r].is_some() && b[r].is_some()).count();
        let predicted: Vec<usize> =
            order.iter().copied().filter(|&r| a[r].is_some() && b[r].is_some()).take(opts.k).collect();
        if !top.is_empty() {
            let hits = predicted.iter().filter(|r| top.contains(r)).count();
            recall += hits as f64 / top.len() as f64;
            random_recall += (opts.k.min(selectable) as f64 / selectable as f64).min(1.0);
        }
        let (_, full) = labeler.label_pair(&selector, &pair.id, scores, None).map_err(LabelingError::from)?;
        let (_, fast) =
            labeler.label_pair(&adapter_selector, &pair.id, scores, Some(order)).map_err(LabelingError::from)?;
        agree += usize::from(full.label == fast.label);
        if let Some(gold) = pair.gold {
            gold_n += 1;
            gold_full += usize::from(full.label.winner() == Some(gold));
            gold_adapter += usize::from(fast.label.winner() == Some(gold));
        }
        // Cost: full scoring evaluated every rule on both responses; the adapter only
        // the first k predictions (its judge calls are those cells' calls).
        let asked: BTreeSet<usize> = order.iter().copied().take(opts.k).collect();
        report.evaluations_full += 2 * rules as u64;
        report.evaluations_adapter += 2 * asked.len() as u64;
        report.judge_calls_full += u64::from(table.judge_calls(pair)?);
        report.judge_calls_adapter += u64::from(table.judge_calls_of(pair, &asked)?);
    }
    let n = heldout.len() as f64;
    let with_top = heldout.iter().filter(|(_, _, top)| !top.is_empty()).count().max(1) as f64;
    report.recall_at_k = recall / with_top;
    report.random_recall_at_k = random_recall / with_top;
    report.label_agreement = agree as f64 / n;
    if gold_n > 0 {
        report.gold_agreement = Some((gold_full as f64 / gold_n as f64, gold_adapter as f64 / gold_n as f64));
    }
    Ok((adapter, report))
}

/// The rules to score per sample when only the adapter's first `n` predictions per pair
/// are asked (a sample in several pairs gets the union), for
/// [`crate::score::ScoreOptions::only`].
pub fn scoring_plan(
    pairs: &[Pair],
    predictions: &HashMap<String, Vec<String>>,
    n: usize,
) -> HashMap<SampleHash, BTreeSet<String>> {
    let mut plan: HashMap<SampleHash, BTreeSet<String>> = HashMap::new();
    for pair in pairs {
        let rules: Vec<String> =
            predictions.get(&pair.id).map(|p| p.iter().take(n).cloned().collect()).unwrap_or_default();
        for side in [crate::data::Pref::A, crate::data::Pref::B] {
            plan.entry(pair.sample(side).hash()).or_default().extend(rules.iter().cloned());
        }
    }
    plan
}

/// Predicts, for every pair, the rules ranked best first (all rules of the adapter).
pub fn predict(
    adapter: &RuleAdapter,
    pairs: &[Pair],
    features: &[Vec<f32>],
) -> Result<HashMap<String, Vec<String>>, AdapterError> {
    let ranked = adapter.rank(features)?;
    Ok(pairs
        .iter()
        .zip(ranked)
        .map(|(pair, order)| (pair.id.clone(), order.into_iter().map(|r| adapter.meta().rule_ids[r].clone()).collect()))
        .collect())
}

/// The files `engine adapter train` works on.
#[derive(Clone, Debug)]
pub struct TrainFiles {
    /// Full scores of every rule on both responses of every pair (`engine score`).
    pub scores: PathBuf,
    /// The pairs those scores are of.
    pub pairs: PathBuf,
    /// The sentence encoder's folder (all-MiniLM-L6-v2 by default).
    pub encoder: PathBuf,
    /// Where the adapter is written (`adapter.json`, `adapter.safetensors`, `report.json`).
    pub out: PathBuf,
}

/// `engine adapter train`: reads the pairs and their full scores, embeds the pairs, trains,
/// writes the adapter and its held-out report into `files.out`.
pub fn train_files(files: &TrainFiles, opts: &TrainOptions) -> Result<AdapterReport, AdapterError> {
    let inputs =
        [("--scores", files.scores.as_path()), ("--pairs", files.pairs.as_path()), ("--encoder", &files.encoder)];
    crate::fsio::refuse_output_dir_over_inputs(("--out", &files.out), &inputs)
        .map_err(|e| AdapterError::Options(e.to_string()))?;
    let read = crate::data::read_pairs(&files.pairs, &Default::default())
        .map_err(|e| AdapterError::Format { path: files.pairs.clone(), message: e.to_string() })?;
    let records = crate::score::read_strict(&files.scores)
        .map_err(|e| AdapterError::Format { path: files.scores.clone(), message: e.to_string() })?;
    let table = ScoreTable::from_records(&records)?;
    let embedder = EncoderEmbedder::load(&files.encoder)?;
    let features = embed_pairs(&embedder, &read.pairs)?;
    let (adapter, report) = train(&read.pairs, &features, &table, &embedder.id(), opts)?;
    adapter.save(&files.out)?;
    let path = files.out.join("report.json");
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    crate::fsio::write_atomic(&path, json.as_bytes()).map_err(|source| AdapterError::Io { path, source })?;
    Ok(report)
}

/// What the adapter in `adapter_dir` predicts for `pairs` (pair id → every rule, best
/// first), embedding them with the encoder in `encoder_dir`, which must be the one the
/// adapter was trained with.
pub fn predictions_for(
    adapter_dir: &Path,
    encoder_dir: &Path,
    pairs: &[Pair],
) -> Result<HashMap<String, Vec<String>>, AdapterError> {
    let adapter = RuleAdapter::load(adapter_dir)?;
    let embedder = EncoderEmbedder::load(encoder_dir)?;
    if embedder.id() != adapter.meta().encoder {
        return Err(AdapterError::Format {
            path: adapter_dir.join("adapter.json"),
            message: format!(
                "trained with encoder {}, but {} is {}; retrain the adapter or point [train] encoder at the right model",
                adapter.meta().encoder,
                encoder_dir.display(),
                embedder.id()
            ),
        });
    }
    let features = embed_pairs(&embedder, pairs)?;
    predict(&adapter, pairs, &features)
}

/// Reads an adapter from `dir` (`adapter.json` + `adapter.safetensors`).
pub fn load(dir: &Path) -> Result<RuleAdapter, AdapterError> {
    RuleAdapter::load(dir)
}

#[cfg(test)]
mod tests;
