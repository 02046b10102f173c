//! On-disk cache of compiled components, so a second run skips Cranelift.
//!
//! A cache entry is keyed by the plugin file's sha256 *and* a digest of everything that
//! makes compiled code incompatible: the wasmtime version and the engine configuration
//! (`Engine::precompile_compatibility_hash`). wasmtime refuses artifacts made under other
//! settings anyway; keying on them means such a file is never even opened.
//!
//! Trust: loading a cached artifact runs native code from the cache directory without
//! re-validation, so the cache directory must be as trusted as the engine binary itself
//! (it lives in the job's folder, next to rules.toml, by default).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Feeds `Hash` data into a sha256 so the key is stable across runs and processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only used through Sha256Hasher::digest")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache key for a plugin with content hash `sha256` under `engine`.
pub fn key(engine: &Engine, sha256: &str) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.write(b"wasmtime-48.0.8");
    let engine_digest = hex::encode(&hasher.0.finalize()[..8]);
    format!("{sha256}-{engine_digest}.cwasm")
}

/// Loads the compiled component from `dir`, or compiles `bytes` and stores it there.
/// Returns the component and whether it came from the cache.
pub fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    sha256: &str,
    bytes: &[u8],
) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, false));
    };
    let path: PathBuf = dir.join(key(engine, sha256));
    // Read into memory rather than `deserialize_file`: a mapped file that someone truncates
    // while we run would crash the process with SIGBUS.
    if let Ok(artifact) = std::fs::read(&path) {
        // SAFETY: the file was written by `Component::serialize` of this same wasmtime
        // build and configuration (both are part of the file name), into the job's cache
        // directory, which is trusted like the engine itself (see the module docs).
        // wasmtime still checks the artifact's header and refuses a mismatched one.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize(engine, &artifact) };
        if let Ok(component) = cached {
            return Ok((component, true));
        }
        // A stale or damaged entry: fall through and replace it.
    }
    let component = Component::new(engine, bytes)?;
    // Writing the cache is best effort: a read-only cache directory only costs speed.
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(serialized) = component.serialize()
    {
        let _ = crate::fsio::write_atomic(&path, &serialized);
    }
    Ok((component, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_file_hash_and_changes_with_code_generating_settings() {
        let fuel = Engine::new(wasmtime::Config::new().consume_fuel(true)).unwrap();
        let plain = Engine::new(&wasmtime::Config::new()).unwrap();
        let sha = "ab".repeat(32);
        assert!(key(&fuel, &sha).starts_with(&sha));
        assert_eq!(key(&fuel, &sha), key(&Engine::new(wasmtime::Config::new().consume_fuel(true)).unwrap(), &sha));
        assert_ne!(key(&fuel, &sha), key(&plain, &sha), "fuel-metered code must not be shared with unmetered");
    }
}
