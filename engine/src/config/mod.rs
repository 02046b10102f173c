//! The job configuration: `rules.toml`.
//!
//! Two stages, as in ripgrep: [`RawConfig`] mirrors the file exactly (unknown keys are
//! errors), then [`Job::load`] validates it into the types the engine runs, resolving
//! paths relative to the config file. Every error names the file, the line and the field.
//!
//! ```toml
//! [job]
//! input = "data/demo.jsonl"      # pairs to score (any supported format)
//! output = "runs/demo"           # folder for scores.jsonl and later stages
//!
//! [sandbox]                      # optional; defaults in plugin::SandboxLimits
//! memory_mib = 64
//!
//! [[pack]]
//! name = "core"
//! path = "plugins/dist/core-rules.wasm"
//! sha256 = "…64 hex digits…"     # the pack refuses to load if the file differs
//! grants = []                    # capabilities: only "judge" exists
//! disable = ["over-refusal"]     # rule ids not to run
//! # enable = ["pii-leak"]        # or: only these rule ids
//! [pack.config]                  # strings handed to the pack's `configure`
//! threshold = "0.5"
//! [pack.config_files]            # files the host reads and hands over as config strings
//! rules = "plugins/judge-rules/rules.toml"
//!
//! [judge]                        # the judge model, loaded only if a pack is granted "judge"
//! model = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
//! ```
//!
//! **Files for packs.** Packs cannot read files, so a pack whose settings live in a file
//! (the judge rule pack's rule texts) names it under `[pack.config_files]`: the host reads
//! each file (relative to rules.toml) when the job is loaded and passes its text to the
//! pack's `configure` under that key, exactly like a `[pack.config]` string. The text is
//! part of the config, so it is part of every rule hash: editing the file re-scores the
//! pack's rules. A missing or non-UTF-8 file is an error at the line that names it.
//!
//! **The judge.** `[judge]` ([`RawJudge`]) configures the model behind the `judge` host
//! import. It is loaded (and its file checked) only when an enabled pack is granted
//! `judge`, so jobs of deterministic rules never touch a model.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::data::Format;
use crate::judge::{CandleJudgeOptions, ChatTemplate, OpenAiJudgeOptions};
use crate::label::TiePolicy;
use crate::plugin::{Grants, PluginSpec, SandboxLimits};
use crate::select::Strategy;

/// rules.toml as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub job: RawJob,
    #[serde(default)]
    pub sandbox: SandboxLimits,
    #[serde(default, rename = "pack")]
    pub packs: Vec<RawPack>,
    #[serde(default)]
    pub selection: RawSelection,
    /// `[market]`: rule-pack index, trusted publisher keys, unsigned policy, lock file
    /// (validated by `crate::market`).
    #[serde(default)]
    pub market: crate::market::RawMarket,
    /// `[judge]`: the judge model (see [`RawJudge`]).
    #[serde(default)]
    pub judge: RawJudge,
    /// `[train]` and `[eval]`: the reward-model stages of `engine run` (validated by
    /// [`crate::report::RunSettings`]).
    #[serde(default)]
    pub train: crate::report::RawTrain,
    #[serde(default)]
    pub eval: crate::report::RawEval,
}

/// The embedded judge model, relative to rules.toml (`scripts/setup.sh` downloads it).
pub const DEFAULT_JUDGE_MODEL: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `[judge]`: the model that answers the `judge` host import. Every key is optional; the
/// defaults are [`CandleJudgeOptions::default`] and [`DEFAULT_JUDGE_MODEL`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    /// `candle` (the local backend, the default) | `openai` (a completions server with
    /// logprobs: vLLM, TGI, llama.cpp's server, `engine serve-judge`).
    pub backend: Option<Spanned<String>>,
    /// A `.gguf` file, or a safetensors checkpoint folder with config.json. With
    /// `backend = "openai"` only its tokenizer is read (it must be the server's model's).
    pub model: Option<Spanned<String>>,
    /// `auto` (f32 for small models, see `judge::AUTO_F32_MAX_PARAMS`) | `f32` | `quantized`.
    pub precision: Option<Spanned<String>>,
    /// `cpu` | `cuda` | `cuda:N`.
    pub device: Option<Spanned<String>>,
    /// The most tokens of one prompt.
    pub max_context: Option<Spanned<i64>>,
    /// Tokens of the context kept for the question part.
    pub question_reserve: Option<Spanned<i64>>,
    /// Samples whose prefix KV cache is kept (at least the number of scoring threads).
    pub prefix_cache: Option<Spanned<i64>>,
    /// Prompt tokens per forward pass.
    pub prefill_chunk: Option<Spanned<i64>>,
    /// Ask a pack's questions about a sample together, in one forward pass (default true).
    pub batch: Option<Spanned<bool>>,
    /// `auto` (from the tokenizer's special tokens) | `chatml` | `llama3`.
    pub template: Option<Spanned<String>>,
    /// `sample-first` (cached prefix, the default) | `rule-first` (the paper's order).
    pub layout: Option<Spanned<String>>,
    /// Divide P(yes) and P(no) by their sum.
    pub renormalize: Option<bool>,
    /// A tokenizer.json to use instead of the one beside the model or in the GGUF.
    pub tokenizer: Option<Spanned<String>>,
    /// `openai` backend: the server's base URL (`/v1/completions` is appended).
    pub url: Option<Spanned<String>>,
    /// `openai` backend: the request's `model` field (servers hosting one model ignore it).
    pub model_name: Option<Spanned<String>>,
    /// `openai` backend: the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<Spanned<String>>,
    /// `openai` backend: the most milliseconds one request may take.
    pub timeout_ms: Option<Spanned<i64>>,
    /// `openai` backend: extra attempts after a connection failure, 429 or 5xx.
    pub retries: Option<Spanned<i64>>,
    /// `openai` backend: milliseconds before the first retry, doubled for each further one.
    pub backoff_ms: Option<Spanned<i64>>,
    /// `openai` backend: how many top tokens to ask for.
    pub top_logprobs: Option<Spanned<i64>>,
    /// `openai` backend: `tokens` (ids, exact) | `text` (for servers that take only strings).
    pub prompt_format: Option<Spanned<String>>,
    /// `openai` backend: requests in flight at once for a pack's questions about a sample.
    pub concurrency: Option<Spanned<i64>>,
}

/// The validated `[judge]` section.
#[derive(Clone, Debug)]
pub struct JudgeConfig {
    /// The model file (candle), or the file whose tokenizer the remote model uses (openai).
    pub model: PathBuf,
    pub options: CandleJudgeOptions,
    /// `Some` when `backend = "openai"`: the server settings. The prompt settings shared
    /// with the candle judge (template, layout, renormalize, max_context) are copied in.
    pub remote: Option<RemoteJudgeConfig>,
    /// The line that names the model (or the `[judge]` header, or 1), for errors.
    pub line: usize,
}

/// `[judge] backend = "openai"`, validated.
#[derive(Clone, Debug)]
pub struct RemoteJudgeConfig {
    pub options: OpenAiJudgeOptions,
    /// Read when the judge is loaded, so that a job can be checked without the secret.
    pub api_key_env: Option<String>,
}

/// `[selection]`: how pairs are labeled from their rules' scores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelection {
    /// `NAME[:key=value,...]`, e.g. `max-discrepancy:k=5,lambda=0.5` (the default),
    /// `all`, `random-k:k=5,seed=7`, `relevance-only:k=5`, `entropy-weighted:k=5`.
    pub strategy: Option<Spanned<String>>,
    /// `drop` (default) | `half` | `fallback-all`.
    pub tie_policy: Option<Spanned<String>>,
    /// The Rule Adapter folder (`engine adapter train --out`), for `adapter:k=N`.
    pub adapter: Option<Spanned<String>>,
    /// `none` (default) | `rank`: see [`crate::labeling::Calibration`].
    pub calibrate: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub input: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub output: Option<String>,
    /// Where compiled plugins are cached (default `.cache/compiled` next to rules.toml;
    /// `""` disables the cache).
    pub cache_dir: Option<String>,
    /// Scoring threads (default: all cores).
    pub threads: Option<usize>,
    /// Consecutive failures after which a rule is quarantined (default 20; 0 = never).
    pub quarantine_after: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPack {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    pub sha256: Spanned<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub grants: Vec<Spanned<String>>,
    #[serde(default)]
    pub disable: Vec<Spanned<String>>,
    /// Only these rule ids of the pack run (default: all but `disable`).
    pub enable: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<toml::Value>>,
    /// Config keys whose value is the text of a file, read by the host.
    #[serde(default)]
    pub config_files: BTreeMap<String, Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// A pack as the engine runs it.
#[derive(Clone, Debug)]
pub struct PackConfig {
    pub spec: PluginSpec,
    /// Rule ids not to run, with the line they were named on (checked after loading).
    pub disable: Vec<(String, usize)>,
}

/// A validated job.
#[derive(Clone, Debug)]
pub struct Job {
    pub config_path: PathBuf,
    pub input: Option<PathBuf>,
    pub format: Format,
    pub output_dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub quarantine_after: u32,
    pub limits: SandboxLimits,
    pub packs: Vec<PackConfig>,
    /// Per pack name: the only rule ids to run (`enable = [...]`), with their lines.
    pub enable: BTreeMap<String, Vec<(String, usize)>>,
    /// Per pack name: config keys read from files, with the file.
    pub config_files: BTreeMap<String, Vec<(String, PathBuf)>>,
    pub judge: JudgeConfig,
    pub strategy: Strategy,
    pub tie_policy: TiePolicy,
    /// `[selection] calibrate`: how scores are calibrated before selection.
    pub calibration: crate::labeling::Calibration,
    /// `[selection] adapter`: the Rule Adapter folder, for `strategy = "adapter:k=N"`.
    pub adapter: Option<PathBuf>,
    /// `[train]` and `[eval]`.
    pub run: crate::report::RunSettings,
}

/// A configuration error, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, message: String },
}

/// Capabilities a pack can ask for, and those that are never granted.
const GRANTABLE: &[&str] = &["judge"];
const NEVER_GRANTED: &[&str] =
    &["filesystem", "fs", "network", "net", "env", "environment", "clock", "clocks", "random", "randomness"];

impl Job {
    /// Reads and validates a rules.toml.
    pub fn load(path: &Path) -> Result<Job, ConfigError> {
        let text =
            crate::fsio::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Job::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Job, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| at(e.span(), e.message().trim().to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| if p.is_empty() { base.clone() } else { base.join(p) };

        let format = match &raw.job.format {
            None => Format::Auto,
            Some(f) => f.get_ref().parse().map_err(|e| at(Some(f.span()), format!("job.format: {e}")))?,
        };
        let limits = raw.sandbox;
        if limits.memory_mib == 0 || limits.fuel_per_call == 0 || limits.timeout_ms == 0 {
            return Err(at(None, "sandbox: memory_mib, fuel_per_call and timeout_ms must be above zero".into()));
        }

        let mut packs: Vec<PackConfig> = Vec::new();
        let mut enable = BTreeMap::new();
        let mut config_files = BTreeMap::new();
        for (index, pack) in raw.packs.iter().enumerate() {
            let field = |name: &str| format!("pack[{index}].{name}");
            let name = pack.name.get_ref().trim();
            if name.is_empty() {
                return Err(at(Some(pack.name.span()), format!("{}: must not be empty", field("name"))));
            }
            if packs.iter().any(|p| p.spec.name == name) {
                return Err(at(Some(pack.name.span()), format!("{}: pack name {name:?} is used twice", field("name"))));
            }
            let sha = pack.sha256.get_ref();
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(at(
                    Some(pack.sha256.span()),
                    format!("{}: expected 64 hex digits (the file's sha256), found {sha:?}", field("sha256")),
                ));
            }
            let mut grants = Grants::default();
            for grant in &pack.grants {
                match grant.get_ref().as_str() {
                    "judge" => grants.judge = true,
                    g if NEVER_GRANTED.contains(&g) => {
                        return Err(at(
                            Some(grant.span()),
                            format!(
                                "{}: {g:?} is never granted to plugins: rules run without files, network, \
                                 environment, clocks or randomness",
                                field("grants")
                            ),
                        ));
                    }
                    g => {
                        return Err(at(
                            Some(grant.span()),
                            format!("{}: unknown grant {g:?}; available: {}", field("grants"), GRANTABLE.join(", ")),
                        ));
                    }
                }
            }
            let mut config = Vec::new();
            for (key, value) in &pack.config {
                let text = match value.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(at(
                            Some(value.span()),
                            format!("{}: value must be a string, number or boolean", field(&format!("config.{key}"))),
                        ));
                    }
                };
                config.push((key.clone(), text));
            }
            let mut files = Vec::new();
            for (key, file) in &pack.config_files {
                let here = |message: String| {
                    at(Some(file.span()), format!("{}: {message}", field(&format!("config_files.{key}"))))
                };
                if pack.config.contains_key(key) {
                    return Err(here(format!("`{key}` is also set in [pack.config]; give it in one place")));
                }
                let file_path = resolve(file.get_ref());
                let content = crate::fsio::read_to_string(&file_path)
                    .map_err(|e| here(format!("cannot read {}: {e}", file_path.display())))?;
                config.push((key.clone(), content));
                files.push((key.clone(), file_path));
            }
            if !pack.enabled {
                continue;
            }
            if let Some(only) = &pack.enable {
                if only.is_empty() {
                    return Err(at(
                        Some(pack.name.span()),
                        format!("{}: is empty; remove the pack or set `enabled = false`", field("enable")),
                    ));
                }
                if let Some(both) = only.iter().find(|e| pack.disable.iter().any(|d| d.get_ref() == e.get_ref())) {
                    return Err(at(
                        Some(both.span()),
                        format!("{}: {:?} is both enabled and disabled", field("enable"), both.get_ref()),
                    ));
                }
                enable.insert(
                    name.to_string(),
                    only.iter().map(|e| (e.get_ref().clone(), line_of(text, e.span().start))).collect::<Vec<_>>(),
                );
            }
            if !files.is_empty() {
                config_files.insert(name.to_string(), files);
            }
            packs.push(PackConfig {
                spec: PluginSpec {
                    name: name.to_string(),
                    path: resolve(pack.path.get_ref()),
                    sha256: Some(sha.to_ascii_lowercase()),
                    config,
                    grants,
                },
                disable: pack.disable.iter().map(|d| (d.get_ref().clone(), line_of(text, d.span().start))).collect(),
            });
        }

        let strategy = match &raw.selection.strategy {
            None => Strategy::default(),
            Some(s) => s.get_ref().parse().map_err(|e| at(Some(s.span()), format!("selection.strategy: {e}")))?,
        };
        let tie_policy = match &raw.selection.tie_policy {
            None => TiePolicy::default(),
            Some(t) => t.get_ref().parse().map_err(|e| at(Some(t.span()), format!("selection.tie_policy: {e}")))?,
        };
        let calibration = match &raw.selection.calibrate {
            None => crate::labeling::Calibration::None,
            Some(c) => c.get_ref().parse().map_err(|e| at(Some(c.span()), format!("selection.calibrate: {e}")))?,
        };

        let judge = judge_config(&raw.judge, text, &resolve, &at)?;
        // The remote backend needs only a tokenizer: `tokenizer` (checked above) or the model's.
        let needs_model = judge.remote.is_none() || judge.options.tokenizer.is_none();
        if packs.iter().any(|p| p.spec.grants.judge) && needs_model && !judge.model.exists() {
            let hint = if judge.remote.is_some() {
                "; backend \"openai\" reads the server model's tokenizer from it (or set judge.tokenizer)"
            } else if raw.judge.model.is_none() {
                "; run scripts/setup.sh to download the embedded models, or set [judge] model"
            } else {
                "; run scripts/setup.sh for the embedded models, or fix the path"
            };
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: judge.line,
                message: format!(
                    "judge.model: {} not found (a pack is granted \"judge\", so the job needs a judge model){hint}",
                    judge.model.display()
                ),
            });
        }

        let run = crate::report::RunSettings::from_raw(&raw.train, &raw.eval, &at, &|p: &str| resolve(p))?;
        let adapter = raw.selection.adapter.as_ref().map(|a| resolve(a.get_ref()));
        if strategy.needs_predictions() && adapter.is_none() {
            let span = raw.selection.strategy.as_ref().map(Spanned::span);
            return Err(at(span, "selection.strategy: the adapter strategy needs selection.adapter = \"<folder written by `engine adapter train`>\"".into()));
        }
        Ok(Job {
            run,
            adapter,
            enable,
            config_files,
            judge,
            strategy,
            tie_policy,
            calibration,
            config_path: path.to_path_buf(),
            input: raw.job.input.as_ref().map(|i| resolve(i.get_ref())),
            format,
            output_dir: resolve(raw.job.output.as_deref().unwrap_or("runs/default")),
            cache_dir: match raw.job.cache_dir.as_deref() {
                Some("") => None,
                Some(dir) => Some(resolve(dir)),
                None => Some(resolve(".cache/compiled")),
            },
            threads: raw.job.threads,
            quarantine_after: raw.job.quarantine_after.unwrap_or(20),
            limits,
            packs,
        })
    }

    /// An error about this job's config file at `line`.
    pub fn error_at(&self, line: usize, message: String) -> ConfigError {
        ConfigError::Invalid { path: self.config_path.clone(), line, message }
    }
}

/// Validates `[judge]` into the candle judge's options.
fn judge_config(
    raw: &RawJudge,
    text: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
    at: &dyn Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<JudgeConfig, ConfigError> {
    let mut options = CandleJudgeOptions::default();
    let bad = |span: Range<usize>, key: &str, message: String| at(Some(span), format!("judge.{key}: {message}"));
    let remote_backend = match &raw.backend {
        None => false,
        Some(b) => match b.get_ref().as_str() {
            "candle" => false,
            "openai" => true,
            other => {
                return Err(bad(b.span(), "backend", format!("unknown backend {other:?}; available: candle, openai")));
            }
        },
    };
    // Keys that belong to the other backend are errors, not silently ignored settings.
    let local_only = [
        ("precision", raw.precision.as_ref().map(Spanned::span)),
        ("device", raw.device.as_ref().map(Spanned::span)),
        ("question_reserve", raw.question_reserve.as_ref().map(Spanned::span)),
        ("prefix_cache", raw.prefix_cache.as_ref().map(Spanned::span)),
        ("prefill_chunk", raw.prefill_chunk.as_ref().map(Spanned::span)),
        ("batch", raw.batch.as_ref().map(Spanned::span)),
    ];
    let remote_only = [
        ("url", raw.url.as_ref().map(Spanned::span)),
        ("model_name", raw.model_name.as_ref().map(Spanned::span)),
        ("api_key_env", raw.api_key_env.as_ref().map(Spanned::span)),
        ("timeout_ms", raw.timeout_ms.as_ref().map(Spanned::span)),
        ("retries", raw.retries.as_ref().map(Spanned::span)),
        ("backoff_ms", raw.backoff_ms.as_ref().map(Spanned::span)),
        ("top_logprobs", raw.top_logprobs.as_ref().map(Spanned::span)),
        ("prompt_format", raw.prompt_format.as_ref().map(Spanned::span)),
        ("concurrency", raw.concurrency.as_ref().map(Spanned::span)),
    ];
    let (misplaced, backend_name): (&[_], _) =
        if remote_backend { (&local_only, "openai") } else { (&remote_only, "candle") };
    if let Some((key, Some(span))) = misplaced.iter().find(|(_, span)| span.is_some()) {
        return Err(bad(span.clone(), key, format!("does not apply to backend {backend_name:?}")));
    }
    if let Some(p) = &raw.precision {
        options.precision = p.get_ref().parse().map_err(|e: String| bad(p.span(), "precision", e))?;
    }
    if let Some(d) = &raw.device {
        options.device = d.get_ref().parse().map_err(|e| bad(d.span(), "device", e))?;
    }
    let count = |value: &Option<Spanned<i64>>, key: &str, min: i64| {
        Ok::<_, ConfigError>(at_least(value, key, min, &bad)?.map(|n| n as usize))
    };
    if let Some(n) = count(&raw.max_context, "max_context", 16)? {
        options.max_context = n;
    }
    if let Some(n) = count(&raw.question_reserve, "question_reserve", 8)? {
        options.question_reserve = n;
    }
    if let Some(n) = count(&raw.prefix_cache, "prefix_cache", 0)? {
        options.prefix_cache = n;
    }
    if let Some(n) = count(&raw.prefill_chunk, "prefill_chunk", 1)? {
        options.prefill_chunk = n;
    }
    if let Some(batch) = &raw.batch {
        options.batch = *batch.get_ref();
    }
    if let (Some(reserve), context) = (&raw.question_reserve, options.max_context)
        && options.question_reserve + 8 > context
    {
        return Err(bad(
            reserve.span(),
            "question_reserve",
            format!("{} leaves no room for the sample in max_context {context}", options.question_reserve),
        ));
    }
    if let Some(t) = &raw.template {
        options.template = ChatTemplate::by_name(t.get_ref()).ok_or_else(|| {
            bad(t.span(), "template", format!("unknown template {:?}; expected auto, chatml or llama3", t.get_ref()))
        })?;
    }
    if let Some(l) = &raw.layout {
        options.layout = l.get_ref().parse().map_err(|e: String| bad(l.span(), "layout", e))?;
    }
    if let Some(r) = raw.renormalize {
        options.renormalize = r;
    }
    if let Some(t) = &raw.tokenizer {
        let file = resolve(t.get_ref());
        if !file.is_file() {
            return Err(bad(t.span(), "tokenizer", format!("{} not found", file.display())));
        }
        options.tokenizer = Some(file);
    }
    let (model, line) = match &raw.model {
        Some(m) => (resolve(m.get_ref()), line_of(text, m.span().start)),
        None => (resolve(DEFAULT_JUDGE_MODEL), text.find("[judge]").map_or(1, |o| line_of(text, o))),
    };
    let remote = if remote_backend { Some(remote_config(raw, &options, &bad)?) } else { None };
    Ok(JudgeConfig { model, options, remote, line })
}

/// The `openai` backend's keys; `shared` carries the prompt settings both backends use.
fn remote_config(
    raw: &RawJudge,
    shared: &CandleJudgeOptions,
    bad: &dyn Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<RemoteJudgeConfig, ConfigError> {
    let url = raw.url.as_ref().ok_or_else(|| {
        let span = raw.backend.as_ref().map_or(0..0, Spanned::span);
        bad(span, "url", "backend \"openai\" needs url = \"http://HOST:PORT\"".into())
    })?;
    if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://")) {
        return Err(bad(url.span(), "url", format!("{:?} must start with http:// or https://", url.get_ref())));
    }
    let mut options = OpenAiJudgeOptions {
        url: url.get_ref().clone(),
        model: raw.model_name.as_ref().map(|m| m.get_ref().clone()),
        max_context: raw.max_context.as_ref().map(|_| shared.max_context),
        answers: shared.answers.clone(),
        renormalize: shared.renormalize,
        template: shared.template.clone(),
        prompt: shared.prompt.clone(),
        layout: shared.layout,
        ..OpenAiJudgeOptions::default()
    };
    if let Some(ms) = at_least(&raw.timeout_ms, "timeout_ms", 1, bad)? {
        options.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = at_least(&raw.retries, "retries", 0, bad)? {
        options.retries = n.min(u32::MAX as u64) as u32;
    }
    if let Some(ms) = at_least(&raw.backoff_ms, "backoff_ms", 0, bad)? {
        options.backoff = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = at_least(&raw.top_logprobs, "top_logprobs", 1, bad)? {
        options.top_logprobs = n.min(u32::MAX as u64) as u32;
    }
    if let Some(n) = at_least(&raw.concurrency, "concurrency", 1, bad)? {
        options.concurrency = n.min(1024) as usize;
    }
    if let Some(f) = &raw.prompt_format {
        options.prompt_format = f.get_ref().parse().map_err(|e: String| bad(f.span(), "prompt_format", e))?;
    }
    let api_key_env = match &raw.api_key_env {
        Some(v) if v.get_ref().is_empty() || v.get_ref().contains('=') => {
            return Err(bad(v.span(), "api_key_env", format!("{:?} is not an environment variable name", v.get_ref())));
        }
        Some(v) => Some(v.get_ref().clone()),
        None => None,
    };
    Ok(RemoteJudgeConfig { options, api_key_env })
}

/// An optional integer key that must be at least `min` (≥ 0), as `u64`.
fn at_least(
    value: &Option<Spanned<i64>>,
    key: &str,
    min: i64,
    bad: &dyn Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<Option<u64>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if *v.get_ref() < min => Err(bad(v.span(), key, format!("{} is below the minimum {min}", v.get_ref()))),
        Some(v) => Ok(Some(*v.get_ref() as u64)),
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<Job, String> {
        Job::parse(Path::new("/jobs/rules.toml"), text).map_err(|e| e.to_string())
    }

    fn pack(extra: &str) -> String {
        format!("[[pack]]\nname = \"core\"\npath = \"p/core.wasm\"\nsha256 = \"{SHA}\"\n{extra}")
    }

    #[test]
    fn minimal_pack_resolves_paths_and_grants_nothing() {
        let job = parse(&pack("")).unwrap();
        assert_eq!(job.packs.len(), 1);
        let spec = &job.packs[0].spec;
        assert_eq!(spec.path, Path::new("/jobs/p/core.wasm"));
        assert_eq!(spec.grants, Grants::default());
        assert_eq!(job.limits, SandboxLimits::default());
        assert_eq!(job.cache_dir.as_deref(), Some(Path::new("/jobs/.cache/compiled")));
    }

    #[test]
    fn judge_is_the_only_grant_and_it_is_explicit() {
        // Parsing checks only that the model file exists; any file will do here.
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let job = parse(&format!("{}\n[judge]\nmodel = \"{model}\"\n", pack("grants = [\"judge\"]"))).unwrap();
        assert!(job.packs[0].spec.grants.judge);
        let err = parse(&pack("grants = [\"judge\"]")).unwrap_err();
        assert!(err.contains("judge.model") && err.contains("scripts/setup.sh"), "{err}");
        let err = parse(&pack("grants = [\"filesystem\"]")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:5:") && err.contains("never granted"), "{err}");
        let err = parse(&pack("grants = [\"gpu\"]")).unwrap_err();
        assert!(err.contains("unknown grant \"gpu\"") && err.contains("judge"), "{err}");
    }

    #[test]
    fn the_openai_backend_reads_its_keys_and_refuses_the_other_backends() {
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let judge = |keys: &str| format!("{}\n[judge]\nmodel = \"{model}\"\n{keys}", pack("grants = [\"judge\"]"));
        let job = parse(&judge(
            "backend = \"openai\"\nurl = \"http://10.0.0.5:8000/v1\"\nmodel_name = \"qwen\"\n\
             timeout_ms = 1500\nretries = 4\nbackoff_ms = 10\ntop_logprobs = 5\nprompt_format = \"text\"\n\
             concurrency = 3\n\
             api_key_env = \"JUDGE_KEY\"\nlayout = \"rule-first\"\nmax_context = 4096\nrenormalize = true",
        ))
        .unwrap();
        let remote = job.judge.remote.as_ref().expect("openai backend");
        let o = &remote.options;
        assert_eq!((o.url.as_str(), o.model.as_deref()), ("http://10.0.0.5:8000/v1", Some("qwen")));
        assert_eq!((o.timeout.as_millis(), o.retries, o.backoff.as_millis(), o.top_logprobs), (1500, 4, 10, 5));
        assert_eq!(o.prompt_format, crate::judge::PromptFormat::Text);
        assert_eq!(o.concurrency, 3);
        assert_eq!((o.layout, o.max_context, o.renormalize), (crate::judge::Layout::RuleFirst, Some(4096), true));
        assert_eq!(remote.api_key_env.as_deref(), Some("JUDGE_KEY"));
        // The candle backend is the default, and has no remote part.
        assert!(parse(&judge("")).unwrap().judge.remote.is_none());

        let err = parse(&judge("backend = \"openai\"")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:8: judge.url: backend \"openai\" needs url"), "{err}");
        let err = parse(&judge("backend = \"openai\"\nurl = \"ftp://x\"")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:9: judge.url:"), "{err}");
        let err = parse(&judge("backend = \"openai\"\nurl = \"http://x\"\ndevice = \"cuda\"")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:10: judge.device: does not apply to backend \"openai\""), "{err}");
        let err = parse(&judge("url = \"http://x\"")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:8: judge.url: does not apply to backend \"candle\""), "{err}");
        let err = parse(&judge("backend = \"openai\"\nurl = \"http://x\"\nprompt_format = \"json\"")).unwrap_err();
        assert!(err.contains("judge.prompt_format") && err.contains("tokens"), "{err}");
        let err = parse(&judge("backend = \"openai\"\nurl = \"http://x\"\ntop_logprobs = 0")).unwrap_err();
        assert!(err.contains("judge.top_logprobs: 0 is below the minimum 1"), "{err}");
        let err = parse(&judge("backend = \"vllm\"")).unwrap_err();
        assert!(err.contains("judge.backend") && err.contains("candle, openai"), "{err}");
        // With its own tokenizer file, the remote judge needs no model file.
        let no_model = format!(
            "{}\n[judge]\nbackend = \"openai\"\nurl = \"http://x\"\ntokenizer = \"{model}\"\n",
            pack("grants = [\"judge\"]")
        );
        assert!(parse(&no_model).is_ok());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = parse("[job]\ninput = \"x\"\ncolour = 3\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:3:") && err.contains("colour"), "{err}");
        let bad_sha = pack("").replace(SHA, "abc");
        let err = parse(&bad_sha).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:4:") && err.contains("pack[0].sha256"), "{err}");
        let err = parse(&format!("{}\n{}", pack(""), pack(""))).unwrap_err();
        assert!(err.contains("pack[1].name") && err.contains("used twice"), "{err}");
        let err = parse(&pack("[pack.config]\nlist = [1, 2]")).unwrap_err();
        assert!(err.contains("pack[0].config.list"), "{err}");
        let err = parse("[job]\nformat = \"csv\"\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:2:") && err.contains("job.format"), "{err}");
        let err = parse("[sandbox]\nmemory_mb = 3\n").unwrap_err();
        assert!(err.contains("memory_mb"), "{err}");
    }

    #[test]
    fn selection_defaults_to_the_papers_max_discrepancy_and_parses_overrides() {
        let job = parse("").unwrap();
        assert_eq!(job.strategy, Strategy::max_discrepancy(5, 0.5).unwrap());
        assert_eq!(job.tie_policy, TiePolicy::Drop);
        let job = parse("[selection]\nstrategy = \"random-k:k=3,seed=9\"\ntie_policy = \"half\"\n").unwrap();
        assert_eq!(job.strategy, Strategy::random_k(3, 9).unwrap());
        assert_eq!(job.tie_policy, TiePolicy::Half);
        let err = parse("[selection]\nstrategy = \"max-discrepancy:k=0\"\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:2: selection.strategy"), "{err}");
        assert_eq!(job.calibration, crate::labeling::Calibration::None);
        let job = parse("[selection]\ncalibrate = \"rank\"\n").unwrap();
        assert_eq!(job.calibration, crate::labeling::Calibration::Rank);
        let err = parse("[selection]\n\ncalibrate = \"zscore\"\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:3: selection.calibrate: unknown calibration"), "{err}");
    }

    #[test]
    fn judge_section_is_validated_and_only_needed_with_a_judge_grant() {
        // No pack asks the judge: a missing model is fine.
        let job = parse(&pack("")).unwrap();
        assert_eq!(job.judge.model, Path::new("/jobs").join(DEFAULT_JUDGE_MODEL));
        assert_eq!(job.judge.options.layout, crate::judge::Layout::SampleFirst);
        // A judge grant needs the model file, and says how to get it.
        let err = parse(&pack("grants = [\"judge\"]")).unwrap_err();
        assert!(err.contains("judge.model") && err.contains("scripts/setup.sh"), "{err}");
        let err = parse(&format!("{}\n[judge]\nmodel = \"m.gguf\"\n", pack("grants = [\"judge\"]"))).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:7: judge.model: /jobs/m.gguf not found"), "{err}");

        let judge = "[judge]\nprecision = \"quantized\"\ndevice = \"cuda:1\"\nmax_context = 512\n\
                     question_reserve = 128\nprefix_cache = 2\ntemplate = \"llama3\"\nlayout = \"rule-first\"\n\
                     renormalize = true\nbatch = false\n";
        let job = parse(judge).unwrap();
        let o = &job.judge.options;
        assert_eq!(
            (o.precision, o.device, o.max_context, o.question_reserve),
            (crate::judge::Precision::Quantized, crate::judge::JudgeDevice::Cuda(1), 512, 128)
        );
        assert_eq!(
            (o.prefix_cache, o.template.name.as_str(), o.layout),
            (2, "llama3", crate::judge::Layout::RuleFirst)
        );
        assert!(o.renormalize && !o.batch);
        assert!(parse("[judge]\n").unwrap().judge.options.batch, "batching is on by default");
        for (text, expected) in [
            (
                "[judge]\nprecision = \"f16\"\n",
                "rules.toml:2: judge.precision: \"f16\": expected auto, f32, quantized or int8",
            ),
            ("[judge]\ndevice = \"tpu\"\n", "rules.toml:2: judge.device"),
            ("[judge]\nmax_context = 4\n", "rules.toml:2: judge.max_context: 4 is below the minimum 16"),
            ("[judge]\ntemplate = \"vicuna\"\n", "rules.toml:2: judge.template: unknown template"),
            ("[judge]\nlayout = \"middle\"\n", "rules.toml:2: judge.layout: unknown layout"),
            ("[judge]\n\ntemperature = 0.5\n", "rules.toml:3:"),
            ("[judge]\nbackend = \"remote\"\n", "rules.toml:2: judge.backend"),
            ("[judge]\nbatch = \"yes\"\n", "rules.toml:2"),
            ("[judge]\nmax_context = 64\nquestion_reserve = 60\n", "rules.toml:3: judge.question_reserve"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn config_files_are_read_by_the_host_and_enable_lists_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.txt"), "the text").unwrap();
        let config = dir.path().join("rules.toml");
        let text = pack("enable = [\"a\", \"b\"]\n[pack.config_files]\nrules = \"rules.txt\"\n");
        let job = Job::parse(&config, &text).unwrap();
        assert!(job.packs[0].spec.config.contains(&("rules".into(), "the text".into())));
        assert_eq!(job.config_files["core"], vec![("rules".to_string(), dir.path().join("rules.txt"))]);
        assert_eq!(job.enable["core"], vec![("a".to_string(), 5), ("b".to_string(), 5)]);
        let err = Job::parse(&config, &text.replace("rules.txt", "missing.txt")).unwrap_err().to_string();
        assert!(
            err.contains("rules.toml:7: pack[0].config_files.rules: cannot read") && err.contains("missing.txt"),
            "{err}"
        );
        let both = pack("[pack.config]\nrules = \"x\"\n[pack.config_files]\nrules = \"rules.txt\"\n");
        let err = Job::parse(&config, &both).unwrap_err().to_string();
        assert!(err.contains("also set in [pack.config]"), "{err}");
        let err = parse(&pack("enable = [\"a\"]\ndisable = [\"a\"]")).unwrap_err();
        assert!(err.contains("pack[0].enable: \"a\" is both enabled and disabled"), "{err}");
    }

    #[test]
    fn config_values_become_strings_and_disabled_packs_are_dropped() {
        let job = parse(&pack("[pack.config]\nthreshold = 0.5\nstrict = true\nname = \"x\"")).unwrap();
        let config = &job.packs[0].spec.config;
        assert!(config.contains(&("threshold".into(), "0.5".into())));
        assert!(config.contains(&("strict".into(), "true".into())));
        assert!(parse(&pack("enabled = false")).unwrap().packs.is_empty());
    }
}
