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
//! [pack.config]                  # strings handed to the pack's `configure`
//! threshold = "0.5"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::data::Format;
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
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<toml::Value>>,
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
    pub strategy: Strategy,
    pub tie_policy: TiePolicy,
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
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
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
            if !pack.enabled {
                continue;
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

        Ok(Job {
            strategy,
            tie_policy,
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
        let job = parse(&pack("grants = [\"judge\"]")).unwrap();
        assert!(job.packs[0].spec.grants.judge);
        let err = parse(&pack("grants = [\"filesystem\"]")).unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:5:") && err.contains("never granted"), "{err}");
        let err = parse(&pack("grants = [\"gpu\"]")).unwrap_err();
        assert!(err.contains("unknown grant \"gpu\"") && err.contains("judge"), "{err}");
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
