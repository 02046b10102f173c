//! The `[market]` table of rules.toml: where packs come from and whom to trust.
//!
//! ```toml
//! [market]
//! index = "http://rules.example/index.json" # default index of `engine rules search|add|update`
//! allow_unsigned = false                     # the default: unsigned bundles are refused
//! packs_dir = "packs"                        # installed bundles go to packs/NAME/VERSION/
//! lock = "rules.lock"                        # exact versions and hashes of installed packs
//!
//! [[market.trusted]]                         # publishers whose signatures are accepted
//! name = "alice"
//! key = "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
//! ```
//!
//! With no `[market]` table nothing is trusted and unsigned packs are refused, so
//! installing anything needs a decision written in the job.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::keys::PublicKey;
use super::{MarketError, io};

/// `[market]` as written. `deny_unknown_fields`, so it can sit in `config::RawConfig`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMarket {
    /// Local path (relative to rules.toml) or `http://` URL of the default index.
    pub index: Option<String>,
    /// Accept bundles without a signature (default false).
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Trusted publisher keys.
    #[serde(default)]
    pub trusted: Vec<RawTrusted>,
    /// Where bundles are installed (default `packs`, relative to rules.toml).
    pub packs_dir: Option<String>,
    /// The lock file (default `rules.lock`, relative to rules.toml).
    pub lock: Option<String>,
}

/// One `[[market.trusted]]` publisher.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrusted {
    /// A name for messages ("signed by alice").
    pub name: String,
    /// `ed25519:` + 64 hex digits.
    pub key: Spanned<String>,
}

/// A trusted publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
}

/// Which bundles may be installed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    pub trusted: Vec<TrustedKey>,
    pub allow_unsigned: bool,
}

impl TrustPolicy {
    /// A policy trusting exactly one publisher.
    pub fn trusting(name: &str, key: PublicKey) -> TrustPolicy {
        TrustPolicy { trusted: vec![TrustedKey { name: name.to_string(), key }], allow_unsigned: false }
    }

    /// The trusted publisher holding `key`, if any.
    pub fn publisher(&self, key: &PublicKey) -> Option<&TrustedKey> {
        self.trusted.iter().find(|t| &t.key == key)
    }
}

/// The marketplace settings of a job, validated, with paths resolved against rules.toml.
#[derive(Clone, Debug)]
pub struct MarketConfig {
    pub config_path: PathBuf,
    pub index: Option<String>,
    pub trust: TrustPolicy,
    /// `packs_dir` as written (used to write the paths into rules.toml and the lock).
    pub packs_dir_text: String,
    pub packs_dir: PathBuf,
    pub lock_path: PathBuf,
}

/// Only `[market]`; every other key of rules.toml is `config`'s business.
#[derive(Deserialize)]
struct MarketOnly {
    #[serde(default)]
    market: RawMarket,
}

impl MarketConfig {
    /// Reads the `[market]` table of a rules.toml (ignoring the rest of the file).
    pub fn load(config: &Path) -> Result<MarketConfig, MarketError> {
        let text = crate::fsio::read_to_string(config).map_err(io(config))?;
        MarketConfig::parse(config, &text)
    }

    /// Validates the `[market]` table of `text`, read from `config`.
    pub fn parse(config: &Path, text: &str) -> Result<MarketConfig, MarketError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| MarketError::Invalid {
            file: format!("{}:{}", config.display(), span.map_or(1, |s| line_of(text, s.start))),
            message,
        };
        let raw: MarketOnly = toml::from_str(text).map_err(|e| at(e.span(), e.message().trim().to_string()))?;
        MarketConfig::from_raw(config, &raw.market, &|span, message| at(Some(span), message))
    }

    /// Validates an already parsed `[market]` table; `at` locates errors in the file.
    pub fn from_raw(
        config: &Path,
        raw: &RawMarket,
        at: &dyn Fn(std::ops::Range<usize>, String) -> MarketError,
    ) -> Result<MarketConfig, MarketError> {
        let mut trusted: Vec<TrustedKey> = Vec::new();
        for (i, t) in raw.trusted.iter().enumerate() {
            let key: PublicKey =
                t.key.get_ref().parse().map_err(|e| at(t.key.span(), format!("market.trusted[{i}].key: {e}")))?;
            if t.name.trim().is_empty() {
                return Err(at(t.key.span(), format!("market.trusted[{i}].name: must not be empty")));
            }
            if let Some(other) = trusted.iter().find(|o| o.key == key) {
                return Err(at(t.key.span(), format!("market.trusted[{i}].key: already trusted as {:?}", other.name)));
            }
            trusted.push(TrustedKey { name: t.name.trim().to_string(), key });
        }
        let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let packs_dir_text = raw.packs_dir.clone().unwrap_or_else(|| "packs".into());
        Ok(MarketConfig {
            config_path: config.to_path_buf(),
            index: raw.index.as_ref().map(|i| resolve_location(&base, i)),
            trust: TrustPolicy { trusted, allow_unsigned: raw.allow_unsigned },
            packs_dir: base.join(&packs_dir_text),
            packs_dir_text,
            lock_path: base.join(raw.lock.as_deref().unwrap_or("rules.lock")),
        })
    }

    /// The index to use: `--index` if given, else `[market] index`.
    pub fn index_location(&self, flag: Option<&str>) -> Result<String, MarketError> {
        match flag {
            Some(location) => Ok(location.to_string()),
            None => self.index.clone().ok_or_else(|| MarketError::Usage {
                config: self.config_path.clone(),
                message: "no index: pass --index PATH_OR_URL or set [market] index".into(),
            }),
        }
    }
}

/// A URL stays as it is; a local path is resolved against rules.toml's folder.
fn resolve_location(base: &Path, location: &str) -> String {
    if location.contains("://") { location.to_string() } else { base.join(location).display().to_string() }
}

/// 1-based line number of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::keys::SecretKey;

    fn parse(text: &str) -> Result<MarketConfig, String> {
        MarketConfig::parse(Path::new("/jobs/rules.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_trust_nothing_and_resolve_paths_next_to_the_job() {
        let m = parse("[job]\ninput = \"x\"\n").unwrap();
        assert_eq!(m.trust, TrustPolicy::default());
        assert_eq!(m.packs_dir, Path::new("/jobs/packs"));
        assert_eq!(m.lock_path, Path::new("/jobs/rules.lock"));
        assert!(m.index_location(None).unwrap_err().to_string().contains("--index"));
        let m = parse("[market]\nindex = \"idx/index.json\"\n").unwrap();
        assert_eq!(m.index.as_deref(), Some("/jobs/idx/index.json"));
        let m = parse("[market]\nindex = \"http://127.0.0.1:1/index.json\"\n").unwrap();
        assert_eq!(m.index.as_deref(), Some("http://127.0.0.1:1/index.json"));
    }

    #[test]
    fn trusted_keys_parse_and_errors_name_line_and_field() {
        let key = SecretKey::from_seed([3; 32]).public();
        let m =
            parse(&format!("[market]\nallow_unsigned = true\n[[market.trusted]]\nname = \"alice\"\nkey = \"{key}\"\n"))
                .unwrap();
        assert!(m.trust.allow_unsigned);
        assert_eq!(m.trust.publisher(&key).unwrap().name, "alice");
        let err = parse("[market]\n[[market.trusted]]\nname = \"bob\"\nkey = \"ed25519:00\"\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:4: market.trusted[0].key"), "{err}");
        let err = parse("[market]\nallow_unsigend = true\n").unwrap_err();
        assert!(err.starts_with("/jobs/rules.toml:2:") && err.contains("allow_unsigend"), "{err}");
    }
}
