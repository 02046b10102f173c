//! Calibration cards: what each rule of a pack is worth, measured on gold preferences.
//!
//! For every rule, the gold pairs are labelled by **that rule alone** (strategy `all` over
//! a one-rule score table, tie policy `drop`), and the labels are compared with gold
//! ([`crate::labeling::rule_agreement`], which `engine eval-labels --per-rule` prints too):
//!
//! - `agreement`: decided pairs whose label matches gold (a tie counts half), with a 95%
//!   bootstrap interval;
//! - `abstain_rate`: gold pairs the rule cannot decide (it scores both responses alike,
//!   does not apply, or failed);
//! - `mean_relevance`: over every scored response;
//! - `judge_calls_per_evaluation`: the judge cost of one evaluation;
//! - `error_rate`: evaluations that failed (timeout, crash, judge unavailable, ...).
//!
//! A card names the gold file by sha256 and the component by sha256, so anyone with the
//! same gold file can reproduce it, and a card can never be attached to another build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{MarketError, read, sha256_hex};
use crate::config::PackConfig;
use crate::data::{self, Format, ReadOptions};
use crate::labeling::{self, ScoreTable};
use crate::plugin::{PluginSpec, Registry, Runtime, SandboxLimits};
use crate::score::{self, Outcome, ScoreOptions, Shard};

/// A pack's calibration card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCard {
    pub pack: String,
    /// The pack version measured (empty for a pack with no manifest).
    pub version: String,
    /// sha256 of the component measured.
    pub wasm_sha256: String,
    pub gold: GoldSet,
    /// The engine that measured it.
    pub engine: String,
    pub rules: Vec<RuleCard>,
}

/// The gold preferences a card was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoldSet {
    /// The file's name (not its path).
    pub file: String,
    pub sha256: String,
    /// Pairs with a gold label.
    pub pairs: usize,
}

/// One rule's line of a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleCard {
    pub rule: String,
    /// Agreement with gold on the pairs the rule decides.
    pub agreement: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Pairs the rule decided (chosen/rejected or tie).
    pub decided: usize,
    pub abstain_rate: f64,
    pub mean_relevance: f64,
    pub judge_calls_per_evaluation: f64,
    pub error_rate: f64,
}

impl CalibrationCard {
    /// Whether the card describes pack `name` with component hash `wasm_sha256`.
    pub fn check_for(&self, name: &str, wasm_sha256: &str) -> Result<(), String> {
        if self.pack != name {
            return Err(format!("the card is for pack {:?}, not {name:?}", self.pack));
        }
        if self.wasm_sha256 != wasm_sha256 {
            return Err(format!(
                "the card measured component {} but this pack's component is {wasm_sha256}; calibrate it again",
                self.wasm_sha256
            ));
        }
        Ok(())
    }

    /// The card as a table, one line per rule.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "calibration of {}{} on {} ({} gold pairs, sha256 {}…):",
            self.pack,
            if self.version.is_empty() { String::new() } else { format!(" {}", self.version) },
            self.gold.file,
            self.gold.pairs,
            &self.gold.sha256[..self.gold.sha256.len().min(12)]
        );
        let width = self.rules.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            text,
            "  {:width$}  {:>9}  {:>13}  {:>7}  {:>7}  {:>9}  {:>10}  {:>6}",
            "RULE", "AGREEMENT", "95% CI", "DECIDED", "ABSTAIN", "RELEVANCE", "JUDGE/EVAL", "ERRORS"
        );
        for r in &self.rules {
            let _ = writeln!(
                text,
                "  {:width$}  {:>9.3}  {:>13}  {:>7}  {:>7.3}  {:>9.3}  {:>10.2}  {:>6.3}",
                r.rule,
                r.agreement,
                format!("{:.3}–{:.3}", r.ci_low, r.ci_high),
                r.decided,
                r.abstain_rate,
                r.mean_relevance,
                r.judge_calls_per_evaluation,
                r.error_rate
            );
        }
        text
    }
}

/// How to run a calibration.
#[derive(Clone, Debug, Default)]
pub struct CalibrateOptions {
    pub limits: SandboxLimits,
    pub cache_dir: Option<PathBuf>,
    pub threads: Option<usize>,
}

/// Scores the gold pairs of `gold` under every rule of the pack `spec` and measures each
/// rule alone against the gold labels. `version` is recorded on the card.
pub fn measure(
    spec: &PluginSpec,
    version: &str,
    gold: &Path,
    opts: &CalibrateOptions,
) -> Result<CalibrationCard, MarketError> {
    let gold_bytes = read(gold)?;
    let pairs = data::read_pairs(gold, &ReadOptions { format: Format::Auto, skip_invalid: false })?.pairs;
    let with_gold = pairs.iter().filter(|p| p.gold.is_some()).count();
    if with_gold == 0 {
        return Err(MarketError::Other(format!(
            "{}: no pair has a gold label (use a labelled format such as chosen/rejected pairs)",
            gold.display()
        )));
    }
    let runtime = Runtime::new(opts.limits.clone(), opts.cache_dir.clone(), None)?;
    let registry = Registry::load(&runtime, &[PackConfig { spec: spec.clone(), disable: Vec::new() }], &spec.path)?;
    let wasm_sha256 = registry.plugins[0].sha256.clone();

    let index = data::unique_samples(&pairs);
    let scratch = tempfile::tempdir().map_err(|source| MarketError::Io { path: std::env::temp_dir(), source })?;
    let out = scratch.path().join("scores.jsonl");
    let score_opts = ScoreOptions {
        out: out.clone(),
        shard: Shard::ALL,
        threads: opts.threads,
        quarantine_after: 0,
        progress: false,
        only: None,
    };
    score::score(&registry, &index.samples, &score_opts)?;
    let records = score::read_strict(&out)?;

    let table = ScoreTable::from_records(&records)?;
    let measured = labeling::rule_agreement(&pairs, &table)?;
    let mut rules = Vec::new();
    for rule in &registry.rules {
        let id = &rule.meta.id;
        let mine: Vec<&score::ScoreRecord> = records.iter().filter(|r| &r.rule == id).collect();
        let a = match measured.iter().find(|m| &m.rule == id) {
            Some(m) => m.agreement.clone(),
            // A rule with no record at all (no samples): nothing decided.
            None => labeling::agreement(&[], 0),
        };
        let relevances: Vec<f64> = mine
            .iter()
            .filter_map(|r| match r.outcome {
                Outcome::Ok { relevance, .. } => Some(f64::from(relevance)),
                Outcome::Error { .. } => None,
            })
            .collect();
        let n = mine.len().max(1) as f64;
        rules.push(RuleCard {
            rule: id.clone(),
            agreement: a.accuracy,
            ci_low: a.ci_low,
            ci_high: a.ci_high,
            decided: a.decided,
            abstain_rate: a.abstain_rate,
            mean_relevance: if relevances.is_empty() {
                0.0
            } else {
                relevances.iter().sum::<f64>() / relevances.len() as f64
            },
            judge_calls_per_evaluation: mine.iter().map(|r| f64::from(r.judge_calls)).sum::<f64>() / n,
            error_rate: mine.iter().filter(|r| r.outcome.failure_kind().is_some()).count() as f64 / n,
        });
    }
    Ok(CalibrationCard {
        pack: spec.name.clone(),
        version: version.to_string(),
        wasm_sha256,
        gold: GoldSet {
            file: gold.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            sha256: sha256_hex(&gold_bytes),
            pairs: with_gold,
        },
        engine: format!("engine {}", env!("CARGO_PKG_VERSION")),
        rules,
    })
}

/// What `engine rules calibrate` did.
#[derive(Clone, Debug)]
pub struct CalibrateReport {
    pub card: CalibrationCard,
    /// The bundle the card was written into, and whether its signature had to be dropped
    /// (the manifest changed: sign it again).
    pub bundle: Option<(PathBuf, bool)>,
    /// The index whose entry got the card.
    pub index: Option<PathBuf>,
}

/// `engine rules calibrate PACK --gold F`: `target` is a bundle file (the card is written
/// into it) or the name of a pack of the job `config` (whose sandbox limits and cache are
/// used in both cases when it exists). With `index` (a local index
/// file), the card also replaces that of the entry with the pack's name and version.
pub fn calibrate(
    target: &str,
    gold: &Path,
    config: &Path,
    index: Option<&Path>,
    threads: Option<usize>,
) -> Result<CalibrateReport, MarketError> {
    let scratch = tempfile::tempdir().map_err(|source| MarketError::Io { path: std::env::temp_dir(), source })?;
    let path = Path::new(target);
    let (card, bundle) = if path.is_file() {
        let mut bundle = super::Bundle::read(path)?;
        let wasm = scratch.path().join(&bundle.manifest.wasm);
        std::fs::write(&wasm, bundle.wasm()).map_err(super::io(&wasm))?;
        let spec = PluginSpec {
            name: bundle.manifest.name.clone(),
            path: wasm,
            sha256: Some(sha256_hex(bundle.wasm())),
            config: Vec::new(),
            grants: crate::plugin::Grants { judge: bundle.manifest.capabilities.iter().any(|c| c == "judge") },
        };
        // The job's sandbox limits and compiled-plugin cache, when there is a job.
        let opts = if config.exists() {
            let job = super::install::load_job(config)?;
            CalibrateOptions { limits: job.limits, cache_dir: job.cache_dir, threads }
        } else {
            CalibrateOptions { threads, ..CalibrateOptions::default() }
        };
        let card = measure(&spec, &bundle.manifest.version, gold, &opts)?;
        let dropped = bundle.set_card(card.clone())?;
        super::write_atomic(path, &bundle.to_bytes())?;
        (card, Some((path.to_path_buf(), dropped)))
    } else {
        let job = super::install::load_job(config)?;
        let pack = job.packs.iter().find(|p| p.spec.name == target).ok_or_else(|| MarketError::Usage {
            config: config.to_path_buf(),
            message: format!(
                "{target:?} is neither a bundle file nor an enabled pack (packs: {})",
                job.packs.iter().map(|p| p.spec.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        let market = super::MarketConfig::load(config)?;
        let lock = super::Lock::load(&market.lock_path)?;
        let version = lock.get(target).map(|l| l.version.clone()).unwrap_or_default();
        let opts = CalibrateOptions { limits: job.limits.clone(), cache_dir: job.cache_dir.clone(), threads };
        (measure(&pack.spec, &version, gold, &opts)?, None)
    };
    if let Some(index_path) = index {
        let bytes = read(index_path)?;
        let mut idx: super::Index = serde_json::from_slice(&bytes).map_err(|e| MarketError::Invalid {
            file: index_path.display().to_string(),
            message: format!("not an index: {e}"),
        })?;
        let entry =
            idx.packs.iter_mut().find(|e| e.name == card.pack && e.version == card.version).ok_or_else(|| {
                MarketError::Invalid {
                    file: index_path.display().to_string(),
                    message: format!("has no entry {} {} to attach the card to", card.pack, card.version),
                }
            })?;
        entry.calibration = Some(card.clone());
        super::index::write_index(index_path, &idx)?;
    }
    Ok(CalibrateReport { card, bundle, index: index.map(Path::to_path_buf) })
}
