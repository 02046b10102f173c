//! The subcommands as library calls: `main.rs` only parses arguments and dispatches here,
//! so every command can be exercised from a test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{ConfigError, Job};
use crate::data::{self, DataError, Format, ReadOptions};
use crate::plugin::{PluginError, Registry, RegistryError, Runtime, abi};
use crate::score::{self, ScoreError, ScoreOptions, ScoreSummary, Shard};

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
    #[error("{0}")]
    Usage(String),
}

/// A job with its packs loaded and verified.
pub struct Loaded {
    pub job: Job,
    pub runtime: Runtime,
    pub registry: Registry,
}

/// Reads rules.toml, verifies and loads every enabled pack.
pub fn load(config: &Path) -> Result<Loaded, AppError> {
    let job = Job::load(config)?;
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None)?;
    let registry = Registry::load(&runtime, &job.packs, &job.config_path)?;
    Ok(Loaded { job, runtime, registry })
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
}

/// `engine score`: reads the pairs, scores their unique samples under every rule.
pub fn score(config: &Path, args: &ScoreArgs) -> Result<ScoreReport, AppError> {
    let started = Instant::now();
    let Loaded { job, runtime: _runtime, registry } = load(config)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let input = args.input.clone().or(job.input.clone()).ok_or_else(|| {
        AppError::Usage(format!("no input: pass --input FILE or set job.input in {}", job.config_path.display()))
    })?;
    let read = data::read_pairs(
        &input,
        &ReadOptions { format: args.format.unwrap_or(job.format), skip_invalid: args.skip_invalid },
    )?;
    for skipped in read.skipped.iter().take(10) {
        eprintln!("warning: skipped {skipped}");
    }
    let index = data::unique_samples(&read.pairs);
    let out = args.out.clone().unwrap_or_else(|| job.output_dir.join("scores.jsonl"));
    let opts = ScoreOptions {
        out: out.clone(),
        shard: args.shard.unwrap_or(Shard::ALL),
        threads: args.threads.or(job.threads),
        quarantine_after: job.quarantine_after,
        progress: args.progress,
    };
    let summary = score::score(&registry, &index.samples, &opts)?;
    Ok(ScoreReport { out, pairs: read.pairs.len(), skipped: read.skipped.len(), summary, load_seconds })
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

/// `engine rules verify`: checks every pack's pin, ABI and imports, and that it loads.
/// Every pack is checked even after a failure; the caller exits non-zero on any.
pub fn rules_verify(config: &Path) -> Result<Vec<Verified>, AppError> {
    let job = Job::load(config)?;
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None)?;
    Ok(job
        .packs
        .iter()
        .map(|pack| Verified {
            pack: pack.spec.name.clone(),
            path: pack.spec.path.clone(),
            result: runtime
                .load(&pack.spec)
                .map(|p| format!("sha256 {} ok, ABI {}, {} rules", p.sha256, p.abi, p.rules.len()))
                .map_err(|e| e.to_string()),
        })
        .collect())
}

/// `engine rules inspect RULE`: everything known about one rule and its pack.
pub fn rules_inspect(config: &Path, rule_id: &str) -> Result<String, AppError> {
    let Loaded { job, registry, .. } = load(config)?;
    let rule = registry.rules.iter().find(|r| r.meta.id == rule_id).ok_or_else(|| {
        let known: Vec<&str> = registry.rules.iter().map(|r| r.meta.id.as_str()).collect();
        AppError::Usage(format!("no enabled rule {rule_id:?} in {}; rules: {}", job.config_path.display(), known.join(", ")))
    })?;
    let plugin = registry.plugin_of(rule);
    let spec = &job.packs.iter().find(|p| p.spec.name == plugin.name).expect("every plugin comes from a pack").spec;
    let bytes = std::fs::read(&plugin.path).map_err(|source| PluginError::Io { path: plugin.path.clone(), source })?;
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
    let _ = writeln!(text, "imports      {}", if header.imports.is_empty() { "none".into() } else { header.imports.join(", ") });
    let _ = writeln!(text, "grants       {}", if spec.grants.judge { "judge" } else { "none" });
    let config: Vec<String> = spec.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = write!(text, "config       {}", if config.is_empty() { "none".into() } else { config.join(", ") });
    Ok(text)
}
