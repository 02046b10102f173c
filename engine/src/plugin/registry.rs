//! The job's rule set: every enabled pack loaded and verified, and the rules to run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Plugin, PluginError, RuleMeta, Runtime};
use crate::config::PackConfig;

/// One rule the job runs.
#[derive(Clone, Debug)]
pub struct ActiveRule {
    /// Index into [`Registry::plugins`].
    pub plugin: usize,
    pub meta: RuleMeta,
    /// Identifies what produced a score: the pack file, the rule's id and version, the
    /// pack's config (including files read for it) and, for packs granted the judge, the
    /// judge's id (model file hash and settings). Part of every score key, so changing any of
    /// them re-scores the rule.
    pub rule_hash: String,
}

/// The packs of a job, loaded, and their enabled rules sorted by id.
#[derive(Debug)]
pub struct Registry {
    pub plugins: Vec<Arc<Plugin>>,
    pub rules: Vec<ActiveRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{}:{line}: pack {pack:?} disables rule {rule:?}, which it does not export (it exports: {known})", config.display())]
    UnknownDisabled { config: PathBuf, line: usize, pack: String, rule: String, known: String },
    #[error("{}:{line}: pack {pack:?} enables rule {rule:?}, which it does not export (it exports: {known})", config.display())]
    UnknownEnabled { config: PathBuf, line: usize, pack: String, rule: String, known: String },
    #[error("{}: no rules to run: every pack is disabled or has all its rules disabled", config.display())]
    Empty { config: PathBuf },
}

impl Registry {
    /// Loads every pack (verifying its pin and ABI) and collects the enabled rules.
    pub fn load(runtime: &Runtime, packs: &[PackConfig], config: &std::path::Path) -> Result<Registry, RegistryError> {
        Registry::load_enabled(runtime, packs, &BTreeMap::new(), config)
    }

    /// [`load`](Self::load), running of the packs named in `enable` only the rule ids listed
    /// there (with the line of rules.toml that names each, for errors).
    pub fn load_enabled(
        runtime: &Runtime,
        packs: &[PackConfig],
        enable: &BTreeMap<String, Vec<(String, usize)>>,
        config: &std::path::Path,
    ) -> Result<Registry, RegistryError> {
        let loaded = packs
            .iter()
            .map(|pack| runtime.load(&pack.spec).map_err(|e| e.pinned_by(config)))
            .collect::<Result<Vec<_>, _>>()?;
        Registry::assemble(runtime, packs, loaded, enable, config)
    }

    /// The checks of a job's rule set once each pack has loaded: every rule an `enable` or
    /// `disable` list names exists in its pack, no two packs export the same rule id, and
    /// some rule is left to run. `loaded[i]` is `packs[i]` loaded. `engine rules verify`
    /// runs these same checks, so that it passes exactly the configs `engine score` accepts.
    pub fn assemble(
        runtime: &Runtime,
        packs: &[PackConfig],
        loaded: Vec<Arc<Plugin>>,
        enable: &BTreeMap<String, Vec<(String, usize)>>,
        config: &std::path::Path,
    ) -> Result<Registry, RegistryError> {
        assert_eq!(packs.len(), loaded.len(), "one loaded plugin per pack");
        let mut plugins = Vec::with_capacity(packs.len());
        let mut rules: Vec<ActiveRule> = Vec::new();
        for (pack, plugin) in packs.iter().zip(loaded) {
            let only = enable.get(&pack.spec.name);
            for (rule, line) in only.into_iter().flatten() {
                if plugin.rule(rule).is_none() {
                    return Err(RegistryError::UnknownEnabled {
                        config: config.to_path_buf(),
                        line: *line,
                        pack: pack.spec.name.clone(),
                        rule: rule.clone(),
                        known: plugin.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
            // The judge's id enters the hash of every rule that may ask it.
            let judge_id = match runtime.judge() {
                Some(judge) if pack.spec.grants.judge => Some(judge.id().to_string()),
                _ => None,
            };
            for (rule, line) in &pack.disable {
                if plugin.rule(rule).is_none() {
                    return Err(RegistryError::UnknownDisabled {
                        config: config.to_path_buf(),
                        line: *line,
                        pack: pack.spec.name.clone(),
                        rule: rule.clone(),
                        known: plugin.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
            for meta in &plugin.rules {
                if let Some(other) = rules.iter().find(|r| r.meta.id == meta.id) {
                    let first: &Arc<Plugin> = &plugins[other.plugin];
                    return Err(PluginError::DuplicateRule {
                        id: meta.id.clone(),
                        first: first.path.clone(),
                        second: plugin.path.clone(),
                    }
                    .into());
                }
                if pack.disable.iter().any(|(d, _)| d == &meta.id)
                    || only.is_some_and(|only| !only.iter().any(|(e, _)| e == &meta.id))
                {
                    continue;
                }
                rules.push(ActiveRule {
                    plugin: plugins.len(),
                    meta: meta.clone(),
                    rule_hash: rule_hash(&plugin.sha256, meta, &pack.spec.config, judge_id.as_deref()),
                });
            }
            plugins.push(plugin);
        }
        if rules.is_empty() {
            return Err(RegistryError::Empty { config: config.to_path_buf() });
        }
        rules.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        Ok(Registry { plugins, rules })
    }

    pub fn plugin_of(&self, rule: &ActiveRule) -> &Arc<Plugin> {
        &self.plugins[rule.plugin]
    }
}

/// First 16 hex digits of sha256(pack sha256, rule id, rule version, sorted config, judge id
/// if the pack may ask the judge). Without a judge the hash is what it was before judges
/// existed, so scores of deterministic packs stay valid.
fn rule_hash(pack_sha256: &str, meta: &RuleMeta, config: &[(String, String)], judge: Option<&str>) -> String {
    let mut config: Vec<&(String, String)> = config.iter().collect();
    config.sort();
    let mut h = Sha256::new();
    for part in [pack_sha256, &meta.id, &meta.version] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for (k, v) in config {
        for part in [k, v] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    if let Some(judge) = judge {
        h.update(b"judge");
        h.update((judge.len() as u64).to_le_bytes());
        h.update(judge.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, version: &str) -> RuleMeta {
        RuleMeta {
            id: id.into(),
            title: String::new(),
            description: String::new(),
            version: version.into(),
            categories: vec![],
        }
    }

    #[test]
    fn rule_hash_changes_with_pack_rule_version_and_config_but_not_config_order() {
        let base = rule_hash("aa", &meta("r", "1"), &[("a".into(), "1".into()), ("b".into(), "2".into())], None);
        assert_eq!(base.len(), 16);
        assert_eq!(base, rule_hash("aa", &meta("r", "1"), &[("b".into(), "2".into()), ("a".into(), "1".into())], None));
        assert_ne!(base, rule_hash("ab", &meta("r", "1"), &[("a".into(), "1".into()), ("b".into(), "2".into())], None));
        assert_ne!(base, rule_hash("aa", &meta("r", "2"), &[("a".into(), "1".into()), ("b".into(), "2".into())], None));
        assert_ne!(base, rule_hash("aa", &meta("r", "1"), &[("a".into(), "1".into()), ("b".into(), "3".into())], None));
        let config = [("a".into(), "1".into()), ("b".into(), "2".into())];
        let judged = rule_hash("aa", &meta("r", "1"), &config, Some("candle/m.gguf/0123/f32/abc"));
        assert_ne!(base, judged, "a judge-granted rule's hash names the judge");
        assert_ne!(judged, rule_hash("aa", &meta("r", "1"), &config, Some("candle/m.gguf/0123/quantized/abc")));
    }
}
