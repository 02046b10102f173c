//! The subcommands as library calls: `main.rs` only parses arguments and dispatches here,
//! so every command can be exercised from a test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{ConfigError, Job};
use crate::data::{self, DataError, Format, ReadOptions};
use crate::judge::{CandleJudge, Judge, JudgeLoadError, JudgeStats, OpenAiJudge};
use crate::label::{Labeler, TiePolicy};
use crate::labeling::{self, Agreement, AuditRecord, Calibration, LabelingError, RuleAgreement, ScoreTable};
use crate::pairwise::PairwiseRecord;
use crate::plugin::{PluginError, Registry, RegistryError, Runtime, abi};
use crate::score::{self, ScoreError, ScoreOptions, ScoreSummary, Shard};
use crate::select::Strategy;

/// Every error a command can end with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Rules(#[from] RegistryError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Labeling(#[from] LabelingError),
    #[error(transparent)]
    Market(#[from] crate::market::MarketError),
    #[error("rule adapter: {0}")]
    Adapter(#[from] crate::adapter::AdapterError),
    /// The judge model named at `line` of the config would not load.
    #[error("{}:{line}: judge: {source}", config.display())]
    Judge {
        config: PathBuf,
        line: usize,
        #[source]
        source: JudgeLoadError,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: not a label record: {message}", path.display())]
    BadRecord { path: PathBuf, line: usize, message: String },
    #[error(transparent)]
    SameFile(#[from] crate::fsio::SameFileError),
    #[error("{0}")]
    Usage(String),
}

/// A job with its packs loaded and verified.
pub struct Loaded {
    pub job: Job,
    pub runtime: Runtime,
    pub registry: Registry,
    /// The judge model, loaded only when an enabled pack is granted `judge`.
    pub judge: Option<Arc<dyn Judge>>,
}

/// Reads rules.toml, verifies and loads every enabled pack, and the judge model if a pack
/// is granted it.
pub fn load(config: &Path) -> Result<Loaded, AppError> {
    let mut job = Job::load(config)?;
    crate::market::apply_lock(&mut job)?;
    let judge = if job.packs.iter().any(|p| p.spec.grants.judge) { Some(load_judge(&job)?) } else { None };
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), judge.clone())?;
    let registry = Registry::load_enabled(&runtime, &job.packs, &job.enable, &job.config_path)?;
    Ok(Loaded { job, runtime, registry, judge })
}

/// Loads the job's `[judge]`: the candle model, or a client of the remote server.
pub fn load_judge(job: &Job) -> Result<Arc<dyn Judge>, AppError> {
    let error = |source| AppError::Judge { config: job.config_path.clone(), line: job.judge.line, source };
    let Some(remote) = &job.judge.remote else {
        return Ok(Arc::new(CandleJudge::load(&job.judge.model, job.judge.options.clone()).map_err(error)?));
    };
    let mut options = remote.options.clone();
    if let Some(var) = &remote.api_key_env {
        options.api_key = Some(std::env::var(var).map_err(|_| {
            error(JudgeLoadError::Options {
                path: job.config_path.clone(),
                reason: format!("judge.api_key_env: the environment variable {var} is not set"),
            })
        })?);
    }
    // The tokenizer of the server's model: judge.tokenizer, the GGUF, or a checkpoint folder's.
    let tokenizer = match &job.judge.options.tokenizer {
        Some(file) => file.clone(),
        None if job.judge.model.is_dir() => job.judge.model.join("tokenizer.json"),
        None => job.judge.model.clone(),
    };
    Ok(Arc::new(OpenAiJudge::with_tokenizer_file(&tokenizer, options).map_err(error)?))
}

/// The file beside a scores file that names the judge behind it: `scores.jsonl` ->
/// `scores.judge.json`. `engine label` reads it to put the judge id into audit records.
pub fn judge_sidecar(scores: &Path) -> PathBuf {
    scores.with_extension("judge.json")
}

/// What [`judge_sidecar`] holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JudgeSidecar {
    /// [`Judge::id`]: backend, model file, checkpoint hash prefix, precision, settings.
    pub judge: String,
    /// The packs granted the judge in the job that wrote the scores.
    pub packs: Vec<String>,
}

/// Arguments of `engine score` that override rules.toml.
#[derive(Clone, Debug, Default)]
pub struct ScoreArgs {
    pub input: Option<PathBuf>,
    pub format: Option<Format>,
    pub skip_invalid: bool,
    pub out: Option<PathBuf>,
    pub shard: Option<Shard>,
    pub threads: Option<usize>,
    pub progress: bool,
}

/// What `engine score` reports.
#[derive(Debug)]
pub struct ScoreReport {
    pub out: PathBuf,
    pub pairs: usize,
    pub skipped: usize,
    pub summary: ScoreSummary,
    pub load_seconds: f64,
    /// The judge's id and what it did, when the job had one.
    pub judge: Option<(String, JudgeStats)>,
}

/// `engine score`: reads the pairs, scores their unique samples under every rule.
pub fn score(config: &Path, args: &ScoreArgs) -> Result<ScoreReport, AppError> {
    let started = Instant::now();
    let Loaded { job, runtime: _runtime, registry, judge } = load(config)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let input = args.input.clone().or(job.input.clone()).ok_or_else(|| {
        AppError::Usage(format!("no input: pass --input FILE or set job.input in {}", job.config_path.display()))
    })?;
    let out = args.out.clone().unwrap_or_else(|| job.output_dir.join("scores.jsonl"));
    let sidecar_path = judge_sidecar(&out);
    for output in [("--out", out.as_path()), ("the judge sidecar", sidecar_path.as_path())] {
        crate::fsio::refuse_overwriting_inputs(output, &[("--input", &input), ("--config", config)])?;
    }
    let read = data::read_pairs(
        &input,
        &ReadOptions { format: args.format.unwrap_or(job.format), skip_invalid: args.skip_invalid },
    )?;
    data::warn_skipped(&read.skipped);
    let index = data::unique_samples(&read.pairs);
    let opts = ScoreOptions {
        out: out.clone(),
        shard: args.shard.unwrap_or(Shard::ALL),
        threads: args.threads.or(job.threads),
        quarantine_after: job.quarantine_after,
        progress: args.progress,
        only: adapter_plan(&job, &read.pairs)?,
    };
    if let Some(judge) = &judge {
        let sidecar = JudgeSidecar {
            judge: judge.id().to_string(),
            packs: job.packs.iter().filter(|p| p.spec.grants.judge).map(|p| p.spec.name.clone()).collect(),
        };
        let text = serde_json::to_string_pretty(&sidecar).expect("the sidecar serialises") + "\n";
        crate::fsio::write_atomic(&sidecar_path, text.as_bytes())
            .map_err(|source| AppError::Io { path: sidecar_path.clone(), source })?;
    }
    let summary = score::score(&registry, &index.samples, &opts)?;
    let judge = judge.map(|j| (j.id().to_string(), j.stats()));
    Ok(ScoreReport { out, pairs: read.pairs.len(), skipped: read.skipped.len(), summary, load_seconds, judge })
}

/// `engine rules list`: one line per enabled rule.
pub fn rules_list(config: &Path) -> Result<String, AppError> {
    let Loaded { registry, .. } = load(config)?;
    let mut text = String::new();
    let width = registry.rules.iter().map(|r| r.meta.id.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(text, "{:width$}  {:8}  {:10}  TITLE", "RULE", "VERSION", "PACK");
    for rule in &registry.rules {
        let pack = &registry.plugin_of(rule).name;
        let _ = writeln!(text, "{:width$}  {:8}  {:10}  {}", rule.meta.id, rule.meta.version, pack, rule.meta.title);
    }
    let _ = write!(text, "{} rules from {} packs", registry.rules.len(), registry.plugins.len());
    Ok(text)
}

/// One pack's result in `engine rules verify`.
#[derive(Debug)]
pub struct Verified {
    pub pack: String,
    pub path: PathBuf,
    pub result: Result<String, String>,
}

/// `engine rules verify`: checks every pack's pin, ABI and imports, and that it loads;
/// then, when all load, the checks `engine score` makes of the rule set as a whole
/// ([`Registry::assemble`]: enable/disable lists name existing rules, rule ids are unique),
/// reported as one more entry named [`RULE_SET`]. Every pack is checked even after a
/// failure; the caller exits non-zero on any.
pub fn rules_verify(config: &Path) -> Result<Vec<Verified>, AppError> {
    let mut job = Job::load(config)?;
    crate::market::apply_lock(&mut job)?;
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None)?;
    let loaded: Vec<Result<Arc<crate::plugin::Plugin>, PluginError>> =
        job.packs.iter().map(|pack| runtime.load(&pack.spec).map_err(|e| e.pinned_by(&job.config_path))).collect();
    let mut verified: Vec<Verified> = job
        .packs
        .iter()
        .zip(&loaded)
        .map(|(pack, loaded)| Verified {
            pack: pack.spec.name.clone(),
            path: pack.spec.path.clone(),
            result: match loaded {
                Ok(p) => Ok(format!("sha256 {} ok, ABI {}, {} rules", p.sha256, p.abi, p.rules.len())),
                Err(e) => Err(e.to_string()),
            },
        })
        .collect();
    if let Ok(plugins) = loaded.into_iter().collect::<Result<Vec<_>, _>>() {
        let result = Registry::assemble(&runtime, &job.packs, plugins, &job.enable, &job.config_path)
            .map(|r| format!("{} rules enabled, ids unique", r.rules.len()))
            .map_err(|e| e.to_string());
        verified.push(Verified { pack: RULE_SET.to_string(), path: job.config_path.clone(), result });
    }
    Ok(verified)
}

/// The name [`rules_verify`] gives its check of the rule set as a whole.
pub const RULE_SET: &str = "(rule set)";

/// `engine rules inspect RULE`: everything known about one rule and its pack.
pub fn rules_inspect(config: &Path, rule_id: &str) -> Result<String, AppError> {
    let Loaded { job, registry, judge, .. } = load(config)?;
    let rule = registry.rules.iter().find(|r| r.meta.id == rule_id).ok_or_else(|| {
        let known: Vec<&str> = registry.rules.iter().map(|r| r.meta.id.as_str()).collect();
        AppError::Usage(format!(
            "no enabled rule {rule_id:?} in {}; rules: {}",
            job.config_path.display(),
            known.join(", ")
        ))
    })?;
    let plugin = registry.plugin_of(rule);
    let spec = &job.packs.iter().find(|p| p.spec.name == plugin.name).expect("every plugin comes from a pack").spec;
    let bytes =
        crate::fsio::read(&plugin.path).map_err(|source| PluginError::Io { path: plugin.path.clone(), source })?;
    let header = abi::check(&bytes).map_err(|source| PluginError::Abi { path: plugin.path.clone(), source })?;
    let mut text = String::new();
    let m = &rule.meta;
    let _ = writeln!(text, "rule         {}", m.id);
    let _ = writeln!(text, "title        {}", m.title);
    let _ = writeln!(text, "version      {}", m.version);
    let _ = writeln!(text, "categories   {}", m.categories.join(", "));
    let _ = writeln!(text, "description  {}", m.description);
    let _ = writeln!(text, "rule hash    {}", rule.rule_hash);
    let _ = writeln!(text, "pack         {} ({} rules)", plugin.name, plugin.rules.len());
    let _ = writeln!(text, "file         {}", plugin.path.display());
    let _ = writeln!(text, "sha256       {} (pinned, verified)", plugin.sha256);
    let _ = writeln!(text, "ABI          safety:rules@{} (engine accepts {})", header.abi, abi::supported_range());
    let _ = writeln!(
        text,
        "imports      {}",
        if header.imports.is_empty() { "none".into() } else { header.imports.join(", ") }
    );
    let _ = writeln!(text, "grants       {}", if spec.grants.judge { "judge" } else { "none" });
    if let (true, Some(judge)) = (spec.grants.judge, &judge) {
        let _ = writeln!(text, "judge        {}", judge.id());
    }
    let files = job.config_files.get(&plugin.name);
    let config: Vec<String> = spec
        .config
        .iter()
        .map(|(k, v)| match files.and_then(|f| f.iter().find(|(key, _)| key == k)) {
            Some((_, file)) => format!("{k}=<{} bytes from {}>", v.len(), file.display()),
            None => format!("{k}={v}"),
        })
        .collect();
    let _ = write!(text, "config       {}", if config.is_empty() { "none".into() } else { config.join(", ") });
    Ok(text)
}

/// Under the adapter strategy, the rules to score per sample: the adapter's first k
/// predictions for each pair the sample is in. `None` (every rule) otherwise.
type ScoringPlan = std::sync::Arc<std::collections::HashMap<data::SampleHash, std::collections::BTreeSet<String>>>;

fn adapter_plan(job: &Job, pairs: &[data::Pair]) -> Result<Option<ScoringPlan>, AppError> {
    let (Some(k), true) = (job.strategy.k(), job.strategy.needs_predictions()) else {
        return Ok(None);
    };
    let dir = job.adapter.as_ref().ok_or_else(|| {
        AppError::Usage(format!("the adapter strategy needs [selection] adapter in {}", job.config_path.display()))
    })?;
    let predictions = crate::adapter::predictions_for(dir, &job.run.train.encoder, pairs)?;
    Ok(Some(std::sync::Arc::new(crate::adapter::scoring_plan(pairs, &predictions, k))))
}

/// Arguments of `engine label` that override rules.toml.
#[derive(Clone, Debug, Default)]
pub struct LabelArgs {
    pub scores: Option<PathBuf>,
    pub pairs: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub strategy: Option<Strategy>,
    pub tie_policy: Option<TiePolicy>,
    pub calibrate: Option<Calibration>,
}

/// What `engine label` did.
#[derive(Debug)]
pub struct LabelReport {
    pub out: PathBuf,
    pub records: Vec<AuditRecord>,
    /// Agreement with gold labels, when the pairs have them.
    pub agreement: Option<Agreement>,
}

fn pack_hashes(job: &Job) -> BTreeMap<String, String> {
    job.packs.iter().filter_map(|p| p.spec.sha256.clone().map(|h| (p.spec.name.clone(), h))).collect()
}

fn read_pairs_for(job: &Job, pairs: Option<&Path>) -> Result<Vec<data::Pair>, AppError> {
    let input = pairs.map(Path::to_path_buf).or(job.input.clone()).ok_or_else(|| {
        AppError::Usage(format!("no pairs: pass --pairs FILE or set job.input in {}", job.config_path.display()))
    })?;
    Ok(data::read_pairs(&input, &ReadOptions { format: job.format, skip_invalid: false })?.pairs)
}

/// The Rule Adapter's predicted rules per pair id (see [`crate::adapter::predictions_for`]).
type Predictions = HashMap<String, Vec<String>>;

/// What `engine label` and `engine pairwise` both start from: the pairs and, per pair, the
/// rules the strategy selects from the pointwise scores and the label those rules give.
struct Selection {
    /// The scores file the selection read.
    scores: PathBuf,
    pairs: Vec<data::Pair>,
    /// One per pair, in the pairs' order.
    audits: Vec<AuditRecord>,
}

/// Reads the pairs (`pairs`, else job.input) and the scores (`scores`, else
/// `<job.output>/scores.jsonl`), calibrates the scores, and labels every pair under
/// `strategy`. `predictions` gives the Rule Adapter's predictions for the pairs when the
/// strategy needs them; it is called after the scores are read.
fn select_and_label(
    job: &Job,
    scores: Option<&Path>,
    pairs: Option<&Path>,
    strategy: &Strategy,
    tie_policy: TiePolicy,
    calibration: Calibration,
    predictions: impl FnOnce(&[data::Pair]) -> Result<Option<Predictions>, AppError>,
) -> Result<Selection, AppError> {
    let scores = scores.map(Path::to_path_buf).unwrap_or_else(|| job.output_dir.join("scores.jsonl"));
    let pairs = read_pairs_for(job, pairs)?;
    let table = ScoreTable::from_records(&score::read_strict(&scores)?)?.calibrated(calibration);
    let labeler =
        Labeler::new(tie_policy, crate::label::DEFAULT_EPSILON).map_err(|e| AppError::Usage(e.to_string()))?;
    let predictions = predictions(&pairs)?;
    let audits = labeling::label_pairs(&pairs, &table, strategy, &labeler, &pack_hashes(job), predictions.as_ref())?;
    Ok(Selection { scores, pairs, audits })
}

/// `engine label`: selects rules per pair, labels it, writes one audit record per pair.
pub fn label(config: &Path, args: &LabelArgs) -> Result<LabelReport, AppError> {
    let job = Job::load(config)?;
    let out = args.out.clone().unwrap_or_else(|| job.output_dir.join("labeled.jsonl"));
    refuse_overwriting_selection_inputs(&job, config, &out, args.scores.as_deref(), args.pairs.as_deref())?;
    let strategy = args.strategy.clone().unwrap_or(job.strategy.clone());
    let predictions = |pairs: &[data::Pair]| -> Result<Option<Predictions>, AppError> {
        match (&strategy, &job.adapter) {
            (s, Some(dir)) if s.needs_predictions() => {
                Ok(Some(crate::adapter::predictions_for(dir, &job.run.train.encoder, pairs)?))
            }
            (s, None) if s.needs_predictions() => Err(AppError::Usage(format!(
                "the adapter strategy needs [selection] adapter = \"<folder>\" in {}",
                job.config_path.display()
            ))),
            _ => Ok(None),
        }
    };
    let Selection { scores: scores_path, audits: mut records, .. } = select_and_label(
        &job,
        args.scores.as_deref(),
        args.pairs.as_deref(),
        &strategy,
        args.tie_policy.unwrap_or(job.tie_policy),
        args.calibrate.unwrap_or(job.calibration),
        predictions,
    )?;
    attach_judge(&mut records, &scores_path)?;
    let mut text = String::new();
    for record in &records {
        text.push_str(&serde_json::to_string(record).expect("audit records serialise"));
        text.push('\n');
    }
    crate::fsio::write_atomic(&out, text.as_bytes()).map_err(|source| AppError::Io { path: out.clone(), source })?;
    let agreement = records.iter().any(|r| r.gold.is_some()).then(|| labeling::agreement(&records, 0));
    Ok(LabelReport { out, records, agreement })
}

/// Fails when `out` (an output of `engine label` or `engine pairwise`) is one of the files
/// the selection reads: the scores (`--scores`, else `<job.output>/scores.jsonl`), their
/// judge sidecar, the pairs (`--pairs`, else job.input) or the config.
fn refuse_overwriting_selection_inputs(
    job: &Job,
    config: &Path,
    out: &Path,
    scores: Option<&Path>,
    pairs: Option<&Path>,
) -> Result<(), AppError> {
    let scores = scores.map(Path::to_path_buf).unwrap_or_else(|| job.output_dir.join("scores.jsonl"));
    let sidecar = judge_sidecar(&scores);
    let mut inputs = vec![("--scores", scores.as_path()), ("judge sidecar", sidecar.as_path()), ("--config", config)];
    if let Some(pairs) = pairs.or(job.input.as_deref()) {
        inputs.push(("--pairs", pairs));
    }
    crate::fsio::refuse_overwriting_inputs(("--out", out), &inputs)?;
    Ok(())
}

/// Names the judge in every audit record whose voting rules came from a pack that asked it,
/// as recorded by `engine score` beside the scores (see [`judge_sidecar`]).
fn attach_judge(records: &mut [AuditRecord], scores: &Path) -> Result<(), AppError> {
    let path = judge_sidecar(scores);
    let text = match crate::fsio::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(AppError::Io { path, source }),
    };
    let sidecar: JudgeSidecar = serde_json::from_str(&text).map_err(|e| AppError::BadRecord {
        path: path.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    for record in records {
        let mut voted = record.selected.iter().chain(&record.fallback);
        if voted.any(|r| sidecar.packs.contains(&r.pack)) {
            record.judge = Some(sidecar.judge.clone());
        }
    }
    Ok(())
}

/// `engine rules judge-probe`: the AUC of the job's judge on a labelled probe set, once per
/// layout (see [`crate::judge::probe`]). The judge is loaded from `[judge]` once per layout.
pub fn judge_probe(
    config: &Path,
    data: &Path,
    layouts: &[crate::judge::Layout],
) -> Result<Vec<(crate::judge::Layout, crate::judge::probe::ProbeReport)>, AppError> {
    use crate::judge::probe;
    let mut job = Job::load(config)?;
    let items = probe::read_items(data).map_err(|e| AppError::Usage(e.to_string()))?;
    let mut reports = Vec::new();
    for &layout in layouts {
        job.judge.options.layout = layout;
        let judge = load_judge(&job)?;
        let report = probe::probe(judge.as_ref(), &items, probe::DEFAULT_QUESTION)
            .map_err(|e| AppError::Usage(e.to_string()))?;
        reports.push((layout, report));
    }
    Ok(reports)
}

/// Reads labeled.jsonl.
pub fn read_labels(path: &Path) -> Result<Vec<AuditRecord>, AppError> {
    let text = crate::fsio::read_to_string(path).map_err(|source| AppError::Io { path: path.to_path_buf(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| AppError::BadRecord {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// `engine explain PAIR`: why a pair got its label.
pub fn explain(labels: &Path, pair: &str) -> Result<String, AppError> {
    let records = read_labels(labels)?;
    let record = records.iter().find(|r| r.pair == pair).ok_or_else(|| {
        AppError::Usage(format!("{}: no pair {pair:?} ({} pairs labeled)", labels.display(), records.len()))
    })?;
    Ok(labeling::explain(record))
}

/// `engine eval-labels`: agreement of rule labels with gold labels, per calibration and
/// strategy (rows in that order), and with `per_rule` each rule's own agreement (raw scores).
pub fn eval_labels(
    config: &Path,
    scores: Option<&Path>,
    gold: &Path,
    strategies: &[Strategy],
    calibrations: &[Calibration],
    tie_policy: Option<TiePolicy>,
    per_rule: bool,
) -> Result<(Vec<Agreement>, Option<Vec<RuleAgreement>>), AppError> {
    let job = Job::load(config)?;
    let scores_path = scores.map(Path::to_path_buf).unwrap_or_else(|| job.output_dir.join("scores.jsonl"));
    let pairs = read_pairs_for(&job, Some(gold))?;
    if pairs.iter().all(|p| p.gold.is_none()) {
        return Err(AppError::Usage(format!("{}: no pair has a gold label", gold.display())));
    }
    let table = ScoreTable::from_records(&score::read_strict(&scores_path)?)?;
    let labeler = Labeler::new(tie_policy.unwrap_or(job.tie_policy), crate::label::DEFAULT_EPSILON)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let hashes = pack_hashes(&job);
    let mut rows = Vec::new();
    for &calibration in calibrations {
        let table = table.calibrated(calibration);
        for strategy in strategies {
            let records = labeling::label_pairs(&pairs, &table, strategy, &labeler, &hashes, None)?;
            let mut row = labeling::agreement(&records, 0);
            if calibration != Calibration::None {
                row.strategy = format!("{} ({calibration}-calibrated)", row.strategy);
            }
            rows.push(row);
        }
    }
    let rules = if per_rule { Some(labeling::rule_agreement(&pairs, &table)?) } else { None };
    Ok((rows, rules))
}

/// Each rule's own agreement with gold labels as markdown: the rules that take a side,
/// most accurate first, then the silent ones; ties by id.
pub fn rule_agreement_table(rules: &[RuleAgreement]) -> String {
    let mut sorted: Vec<&RuleAgreement> = rules.iter().collect();
    sorted.sort_by(|a, b| {
        let (a_, b_) = (&a.agreement, &b.agreement);
        (b_.decided > 0)
            .cmp(&(a_.decided > 0))
            .then(b_.accuracy.total_cmp(&a_.accuracy))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    let mut text = String::from(
        "| rule | pack | takes a side | agrees with gold | 95% CI | abstain rate | mean relevance |\n\
         |---|---|---:|---:|---|---:|---:|\n",
    );
    for r in sorted {
        let a = &r.agreement;
        let (accuracy, ci) = if a.decided > 0 {
            (format!("{:.3}", a.accuracy), format!("{:.3}–{:.3}", a.ci_low, a.ci_high))
        } else {
            ("n/a".to_string(), "n/a".to_string())
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {accuracy} | {ci} | {:.3} | {:.3} |",
            r.rule, r.pack, a.decided, a.abstain_rate, r.mean_relevance
        );
    }
    text
}

/// The agreement table as markdown.
pub fn agreement_table(rows: &[Agreement]) -> String {
    let mut text = String::from(
        "| strategy | pairs | decided | accuracy | 95% CI | abstain rate | ties | rule evaluations / pair | judge calls / pair |\n\
         |---|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for a in rows {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {:.3} | {} | {:.1} | {:.1} |",
            a.strategy,
            a.pairs,
            a.decided,
            a.accuracy,
            a.ci_low,
            a.ci_high,
            a.abstain_rate,
            a.ties,
            a.evaluations_per_pair,
            a.judge_calls_per_pair
        );
    }
    text
}

/// What `engine pairwise` is asked to do.
#[derive(Debug, Default)]
pub struct PairwiseArgs {
    pub scores: Option<PathBuf>,
    pub pairs: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub strategy: Option<Strategy>,
    pub calibrate: Option<Calibration>,
    /// A progress bar (or log lines where stderr is not a terminal).
    pub progress: bool,
}

/// `engine pairwise`: asks the judge to compare the two responses of each pair under the
/// rules the strategy selects from the pointwise scores (see [`crate::pairwise`]), writing
/// one record per pair. Resumes: pairs already in the output (rated by the same judge) are
/// kept, a torn last line is dropped (see [`crate::jsonl`]).
pub fn pairwise(config: &Path, args: &PairwiseArgs) -> Result<(PathBuf, Vec<PairwiseRecord>), AppError> {
    let mut job = Job::load(config)?;
    crate::market::apply_lock(&mut job)?;
    let out = args.out.clone().unwrap_or_else(|| job.output_dir.join("pairwise.jsonl"));
    refuse_overwriting_selection_inputs(&job, config, &out, args.scores.as_deref(), args.pairs.as_deref())?;
    let strategy = args.strategy.clone().unwrap_or(job.strategy.clone());
    if strategy.needs_predictions() {
        return Err(AppError::Usage("pairwise rating selects from scores; the adapter strategy is not offered".into()));
    }
    // The rules' texts are their packs' descriptions: reading them needs no judge.
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None)?;
    let registry = Registry::load_enabled(&runtime, &job.packs, &job.enable, &job.config_path)?;
    job.judge.options.prompt = crate::pairwise::pairwise_prompt(&job.judge.options.prompt);
    if let Some(remote) = &mut job.judge.remote {
        remote.options.prompt = crate::pairwise::pairwise_prompt(&remote.options.prompt);
    }
    let judge = load_judge(&job)?;

    let Selection { pairs, audits, .. } = select_and_label(
        &job,
        args.scores.as_deref(),
        args.pairs.as_deref(),
        &strategy,
        job.tie_policy,
        args.calibrate.unwrap_or(job.calibration),
        |_| Ok(None),
    )?;

    // Keep what an earlier run finished with this judge; rewrite the file without the rest.
    let mut done =
        crate::jsonl::resume(&out, |record: &PairwiseRecord| (record.judge == judge.id()).then(|| record.pair.clone()))
            .map_err(jsonl_error)?;

    let todo: Vec<(&data::Pair, &AuditRecord)> =
        pairs.iter().zip(&audits).filter(|(p, _)| !done.kept.contains_key(&p.id)).collect();
    let bar =
        if args.progress { indicatif::ProgressBar::new(todo.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("pairwise {bar:32.cyan/blue} {pos}/{len} pairs  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let mut log = crate::progress::LogLines::new(args.progress);
    for (i, (pair, audit)) in todo.iter().enumerate() {
        let rules: Vec<crate::pairwise::RuleToAsk> = audit
            .selected
            .iter()
            .map(|s| {
                let meta = registry.rules.iter().find(|r| r.meta.id == s.rule).map(|r| &r.meta);
                let text = meta.map_or(s.rule.as_str(), |m| {
                    if m.description.trim().is_empty() { &m.title } else { &m.description }
                });
                crate::pairwise::RuleToAsk { rule: s.rule.clone(), pack: s.pack.clone(), text: text.to_string() }
            })
            .collect();
        let mut record = crate::pairwise::rate(judge.as_ref(), pair, &rules);
        record.pointwise = audit.label.winner();
        let line = serde_json::to_string(&record).expect("pairwise records serialise");
        done.append(record.pair.clone(), record, line).map_err(jsonl_error)?;
        bar.inc(1);
        log.tick("pairwise", i as u64 + 1, todo.len() as u64);
    }
    bar.finish_and_clear();
    // In the pairs file's order.
    let records = pairs.iter().filter_map(|p| done.kept.remove(&p.id).map(|(record, _)| record)).collect();
    Ok((out, records))
}

fn jsonl_error(e: crate::jsonl::JsonlError) -> AppError {
    AppError::Io { path: e.path, source: e.source }
}
