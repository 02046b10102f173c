//! `engine run`: score → label → train → eval → report, into the job's output folder.
//!
//! Every stage leaves its result in a file and the next stage reads it, so an interrupted
//! run started again picks up where it stopped:
//!
//! | stage | writes | on a rerun |
//! |---|---|---|
//! | score | `scores.jsonl` | resumes (see [`crate::score`]: exact even after `kill -9`) |
//! | label | `labeled.jsonl` | recomputed (pure and fast) |
//! | split | `train-pairs.jsonl`, `heldout.jsonl` | recomputed (seeded by pair id) |
//! | train | `rm/` (+ `rm/checkpoints/`) | skipped when `rm/` was trained on the same data and settings; otherwise resumes from the last checkpoint |
//! | eval | `eval/` | recomputed |
//! | report | `report.md`, `report.json`, `plots/*.svg` | recomputed |
//!
//! The held-out pairs (`[eval] holdout`, by a seeded hash of the pair id) never reach the
//! trainer; the reward model is evaluated on them against their gold labels, and on any
//! `[eval] data` files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::svg;
use crate::app::{self, AppError, LabelArgs, ScoreArgs};
use crate::config::Job;
use crate::data::{Pair, Pref, ReadOptions};
use crate::label::Label;
use crate::labeling::{Agreement, AuditRecord};

/// What `engine run` is asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Worker threads for scoring and training (default: all cores).
    pub threads: Option<usize>,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("train stage: {0}")]
    Train(#[from] crate::reward::RewardError),
    #[error("eval stage: {0}")]
    Eval(#[from] crate::eval::EvalError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Stage(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_path_buf(), source }
}

/// One stage's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
    /// What happened: "computed", "resumed", "skipped (up to date)", ...
    pub note: String,
}

/// Label counts over the job's pairs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LabelCounts {
    pub a_preferred: usize,
    pub b_preferred: usize,
    pub ties: usize,
    pub abstained: usize,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub config: String,
    pub output: String,
    pub input: String,
    pub pairs: usize,
    pub samples: usize,
    pub rules: usize,
    pub strategy: String,
    pub tie_policy: String,
    pub stages: Vec<StageTime>,
    pub score: crate::score::ScoreSummary,
    pub labels: LabelCounts,
    /// Rule labels against the pairs' gold labels, when they have them.
    pub label_agreement: Option<Agreement>,
    /// How often each rule was among a pair's selected rules, most used first.
    pub rule_usage: Vec<(String, usize)>,
    pub train_pairs: usize,
    pub heldout_pairs: usize,
    pub settings: super::RunSettings,
    pub train: Option<crate::reward::TrainReport>,
    pub eval: Option<crate::eval::EvalReport>,
}

/// Runs the whole job; see the [module docs](self).
pub fn run(opts: &RunOptions) -> Result<RunReport, RunError> {
    let job = Job::load(&opts.config).map_err(AppError::from)?;
    let out = job.output_dir.clone();
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let mut stages = Vec::new();
    let say = |n: usize, what: &str| {
        if opts.progress {
            eprintln!("[{n}/5] {what}");
        }
    };

    // 1. Score.
    say(1, "score: every rule on every response");
    let started = Instant::now();
    let scored =
        app::score(&opts.config, &ScoreArgs { threads: opts.threads, progress: opts.progress, ..Default::default() })?;
    let note = if scored.summary.computed == 0 {
        "up to date"
    } else if scored.summary.resumed > 0 {
        "resumed"
    } else {
        "computed"
    };
    stages.push(StageTime { stage: "score".into(), seconds: started.elapsed().as_secs_f64(), note: note.into() });

    // 2. Label.
    say(2, "label: select rules per pair and sum their scores");
    let started = Instant::now();
    let labeled = app::label(&opts.config, &LabelArgs::default())?;
    stages.push(StageTime { stage: "label".into(), seconds: started.elapsed().as_secs_f64(), note: "computed".into() });
    let input = job
        .input
        .clone()
        .ok_or_else(|| RunError::Stage(format!("{}: job.input is not set", job.config_path.display())))?;
    let pairs = crate::data::read_pairs(&input, &ReadOptions { format: job.format, skip_invalid: false })
        .map_err(AppError::from)?
        .pairs;

    // Split: held-out pairs (gold-labelled, by seeded hash) for evaluation; the rest train.
    let settings = &job.run;
    let (heldout, train_set) = split(&pairs, &labeled.records, settings.eval.holdout, settings.eval.seed);
    let heldout_path = out.join("heldout.jsonl");
    write_pairs(&heldout_path, heldout.iter().copied())?;

    // 3. Train.
    say(3, "train: the reward model on the rule labels");
    let started = Instant::now();
    let (train, note) = super::stages::train(&job, &train_set, &heldout, &out.join("rm"), opts)?;
    stages.push(StageTime { stage: "train".into(), seconds: started.elapsed().as_secs_f64(), note });

    // 4. Eval.
    say(4, "eval: the reward model on held-out pairs with gold labels");
    let started = Instant::now();
    let mut files = Vec::new();
    if !heldout.is_empty() {
        files.push(heldout_path.clone());
    }
    files.extend(settings.eval.data.iter().cloned());
    let eval = if files.is_empty() {
        None
    } else {
        Some(super::stages::eval(&out.join("rm"), &files, &out.join("eval"), opts)?)
    };
    stages.push(StageTime {
        stage: "eval".into(),
        seconds: started.elapsed().as_secs_f64(),
        note: if eval.is_some() { "computed".into() } else { "no gold-labelled pairs to evaluate on".into() },
    });

    // 5. Report.
    say(5, "report");
    let mut counts = LabelCounts::default();
    let mut usage: BTreeMap<String, usize> = BTreeMap::new();
    for record in &labeled.records {
        match record.label {
            Label::Chosen { winner: Pref::A } => counts.a_preferred += 1,
            Label::Chosen { winner: Pref::B } => counts.b_preferred += 1,
            Label::Tie => counts.ties += 1,
            Label::Abstain { .. } => counts.abstained += 1,
        }
        for rule in &record.selected {
            *usage.entry(rule.rule.clone()).or_default() += 1;
        }
    }
    let mut rule_usage: Vec<(String, usize)> = usage.into_iter().collect();
    rule_usage.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let report = RunReport {
        config: job.config_path.display().to_string(),
        output: out.display().to_string(),
        input: input.display().to_string(),
        pairs: pairs.len(),
        samples: scored.summary.samples,
        rules: scored.summary.rules,
        strategy: job.strategy.to_string(),
        tie_policy: job.tie_policy.to_string(),
        stages,
        score: scored.summary,
        labels: counts,
        label_agreement: labeled.agreement,
        rule_usage,
        train_pairs: train_set.len(),
        heldout_pairs: heldout.len(),
        settings: settings.clone(),
        train,
        eval,
    };
    write_report(&report, &labeled.records, &out)?;
    Ok(report)
}

/// One training example: the pair and its rule label.
pub(super) type TrainExample<'a> = (&'a Pair, &'a AuditRecord);

/// Held-out pairs (gold-labelled, chosen by seeded hash of the id) and the labelled rest.
fn split<'a>(
    pairs: &'a [Pair],
    records: &'a [AuditRecord],
    holdout: f64,
    seed: u64,
) -> (Vec<&'a Pair>, Vec<TrainExample<'a>>) {
    let by_id: BTreeMap<&str, &AuditRecord> = records.iter().map(|r| (r.pair.as_str(), r)).collect();
    let mut heldout = Vec::new();
    let mut train = Vec::new();
    for pair in pairs {
        if pair.gold.is_some() && crate::adapter::is_heldout(&pair.id, seed, holdout) {
            heldout.push(pair);
        } else if let Some(record) = by_id.get(pair.id.as_str())
            && !matches!(record.label, Label::Abstain { .. })
        {
            train.push((pair, *record));
        }
    }
    (heldout, train)
}

/// Writes pairs in our schema (`prompt`, `chosen`, `rejected`), gold order.
fn write_pairs<'a>(path: &Path, pairs: impl Iterator<Item = &'a Pair>) -> Result<(), RunError> {
    let mut text = String::new();
    for pair in pairs {
        let (chosen, rejected) = match pair.gold {
            Some(Pref::B) => (&pair.b, &pair.a),
            _ => (&pair.a, &pair.b),
        };
        let row = serde_json::json!({ "id": pair.id, "prompt": pair.prompt, "chosen": chosen, "rejected": rejected });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// [`crate::fsio::write_atomic`], naming `path` on failure.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    crate::fsio::write_atomic(path, bytes).map_err(io(path))
}

/// `report.json`, `report.md` and the plots.
fn write_report(report: &RunReport, records: &[AuditRecord], out: &Path) -> Result<(), RunError> {
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(io(&plots))?;
    let usage: Vec<(String, f64)> = report.rule_usage.iter().map(|(r, n)| (r.clone(), *n as f64)).collect();
    write_atomic(
        &plots.join("rule-usage.svg"),
        svg::bar_chart("Rules selected per pair (count of pairs)", &usage).as_bytes(),
    )?;

    // Label margins: how decisively the selected rules separate each pair.
    let margins: Vec<f64> =
        records.iter().filter(|r| !matches!(r.label, Label::Abstain { .. })).map(|r| r.normalized_margin).collect();
    let sums_a: Vec<f64> = records.iter().map(|r| r.sum_a).collect();
    let sums_b: Vec<f64> = records.iter().map(|r| r.sum_b).collect();
    write_atomic(
        &plots.join("scores.svg"),
        svg::histogram("Summed scores of the selected rules", &[("response A", &sums_a), ("response B", &sums_b)], 20)
            .as_bytes(),
    )?;
    write_atomic(
        &plots.join("margins.svg"),
        svg::histogram("Label margins (normalised)", &[("pairs", &margins)], 20).as_bytes(),
    )?;
    if let Some(eval) = &report.eval {
        let chosen: Vec<f64> = eval.pairs.iter().map(|p| f64::from(p.chosen)).collect();
        let rejected: Vec<f64> = eval.pairs.iter().map(|p| f64::from(p.rejected)).collect();
        write_atomic(
            &plots.join("rewards.svg"),
            svg::histogram(
                "Reward-model rewards on the evaluation pairs",
                &[("gold chosen", &chosen), ("gold rejected", &rejected)],
                20,
            )
            .as_bytes(),
        )?;
    }
    if let Some(train) = &report.train {
        let curves = super::stages::training_curves(train);
        let series: Vec<(&str, &[(f64, f64)])> = curves.iter().map(|(n, p)| (n.as_str(), p.as_slice())).collect();
        write_atomic(&plots.join("training.svg"), svg::line_chart("Training", "step", &series).as_bytes())?;
    }
    let json = serde_json::to_string_pretty(report).expect("the report serialises");
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    write_atomic(&out.join("report.md"), super::markdown::render(report).as_bytes())
}
