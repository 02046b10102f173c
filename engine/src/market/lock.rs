//! `rules.lock`: the exact version and hashes of every pack installed from an index.
//!
//! ```toml
//! # rules.lock: written by `engine rules add|update|remove`; do not edit.
//! format = 1
//!
//! [[pack]]
//! name = "example"
//! version = "0.2.0"
//! requirement = "^0.2"
//! path = "packs/example/0.2.0/pack.wasm"
//! sha256 = "…"            # the component, as pinned in rules.toml
//! bundle_sha256 = "…"     # the bundle as downloaded
//! source = "http://rules.example/index.json"
//! key = "ed25519:…"       # absent when installed unsigned
//! rules = ["no-shouting"]
//! ```
//!
//! [`apply_lock`] is how `engine score` honours it: every locked pack must be in the job
//! with the locked path and sha256, its file must still hash to it, and the manifest
//! installed beside it must name the locked version. Packs pinned by hand in rules.toml
//! (not from an index) are not in the lock and are checked by their sha256 pin as before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bundle::{MANIFEST, Manifest};
use super::trust::MarketConfig;
use super::{MarketError, io, sha256_hex, write_atomic};
use crate::config::Job;

/// The lock file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub format: u32,
    #[serde(default, rename = "pack")]
    pub packs: Vec<LockedPack>,
}

/// One installed pack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPack {
    pub name: String,
    pub version: String,
    /// The semver requirement `rules update` stays within.
    pub requirement: String,
    /// The component, as written in rules.toml (relative to it).
    pub path: String,
    pub sha256: String,
    pub bundle_sha256: String,
    /// The index it came from.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub rules: Vec<String>,
}

impl Lock {
    /// Reads a lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, MarketError> {
        let text = match crate::fsio::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock { format: 1, packs: Vec::new() }),
            Err(source) => return Err(MarketError::Io { path: path.to_path_buf(), source }),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| MarketError::Lock {
            path: path.to_path_buf(),
            message: format!("not a lock file: {}", e.message().trim()),
        })?;
        if lock.format != 1 {
            return Err(MarketError::Lock {
                path: path.to_path_buf(),
                message: format!("lock format {} is not supported (this engine reads format 1)", lock.format),
            });
        }
        Ok(lock)
    }

    /// Writes the lock atomically, packs sorted by name.
    pub fn save(&self, path: &Path) -> Result<(), MarketError> {
        let mut lock = self.clone();
        lock.format = 1;
        lock.packs.sort_by(|a, b| a.name.cmp(&b.name));
        let body = toml::to_string(&lock).map_err(|e| MarketError::Other(format!("cannot write the lock: {e}")))?;
        let text = format!("# rules.lock: written by `engine rules add|update|remove`; do not edit.\n{body}");
        write_atomic(path, text.as_bytes())
    }

    pub fn get(&self, name: &str) -> Option<&LockedPack> {
        self.packs.iter().find(|p| p.name == name)
    }

    /// Adds `pack`, replacing the entry of the same name.
    pub fn upsert(&mut self, pack: LockedPack) {
        self.packs.retain(|p| p.name != pack.name);
        self.packs.push(pack);
    }
}

/// Checks a job against its lock (fail closed): every pack in `rules.lock` must be a
/// `[[pack]]` of the job (or one it disables) with the locked path and sha256, its file
/// must hash to that sha256, and the manifest installed beside it must name the locked
/// version and component hash. Without a lock file there is nothing to check.
pub fn apply_lock(job: &mut Job) -> Result<(), MarketError> {
    let market = MarketConfig::load(&job.config_path)?;
    if !market.lock_path.exists() {
        return Ok(());
    }
    let lock = Lock::load(&market.lock_path)?;
    let base = job.config_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let fail = |message: String| MarketError::Lock { path: market.lock_path.clone(), message };
    for locked in &lock.packs {
        let Some(pack) = job.packs.iter_mut().find(|p| p.spec.name == locked.name) else {
            if disabled_in(&job.config_path, &locked.name)? {
                continue;
            }
            return Err(fail(format!(
                "pins pack {} {} but {} has no [[pack]] named {0}; run `engine rules remove {0}` or restore it",
                locked.name,
                locked.version,
                job.config_path.display()
            )));
        };
        let locked_path: PathBuf = base.join(&locked.path);
        if pack.spec.path != locked_path {
            return Err(fail(format!(
                "pack {}: {} loads {} but the lock pins {} ({}); run `engine rules update {0}` or \
                 `engine rules add {0}` instead of editing paths by hand",
                locked.name,
                job.config_path.display(),
                pack.spec.path.display(),
                locked_path.display(),
                locked.version
            )));
        }
        if !pack.spec.sha256.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&locked.sha256)) {
            return Err(fail(format!(
                "pack {}: {} pins sha256 {} but the lock pins {} for version {}",
                locked.name,
                job.config_path.display(),
                pack.spec.sha256.as_deref().unwrap_or("nothing"),
                locked.sha256,
                locked.version
            )));
        }
        let bytes = crate::fsio::read(&locked_path).map_err(io(&locked_path))?;
        let actual = sha256_hex(&bytes);
        if actual != locked.sha256 {
            return Err(fail(format!(
                "pack {} {}: {} hashes to {actual} but the lock pins {}; the installed file was changed",
                locked.name,
                locked.version,
                locked_path.display(),
                locked.sha256
            )));
        }
        let manifest_path = locked_path.parent().unwrap_or(Path::new("")).join(MANIFEST);
        let text = crate::fsio::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            fail(format!("pack {}: {} does not parse: {}", locked.name, manifest_path.display(), e.message().trim()))
        })?;
        let wasm_name = locked_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if manifest.name != locked.name
            || manifest.version != locked.version
            || manifest.files.get(&wasm_name) != Some(&locked.sha256)
        {
            return Err(fail(format!(
                "pack {}: {} describes {} {} but the lock pins {0} {}",
                locked.name,
                manifest_path.display(),
                manifest.name,
                manifest.version,
                locked.version
            )));
        }
        pack.spec.sha256 = Some(locked.sha256.clone());
    }
    Ok(())
}

/// Whether rules.toml has a `[[pack]]` named `name` with `enabled = false`.
fn disabled_in(config: &Path, name: &str) -> Result<bool, MarketError> {
    #[derive(Deserialize)]
    struct Packs {
        #[serde(default)]
        pack: Vec<toml::Table>,
    }
    let text = crate::fsio::read_to_string(config).map_err(io(config))?;
    let packs: Packs = toml::from_str(&text)
        .map_err(|e| MarketError::Invalid { file: config.display().to_string(), message: e.message().to_string() })?;
    Ok(packs.pack.iter().any(|p| {
        p.get("name").and_then(|n| n.as_str()) == Some(name)
            && p.get("enabled").and_then(|e| e.as_bool()) == Some(false)
    }))
}
