//! The plugin ABI: which versions of the `safety:rules` contract this host speaks, and
//! the checks made on a plugin's bytes *before* anything is compiled or instantiated.
//!
//! The ABI version of a component is the version in the name of the interface it exports
//! (`safety:rules/rule-pack@0.1.0`). Reading it from the export name, rather than from a
//! custom section an SDK writes, works for a pack written in any language and can never
//! disagree with the interface the component really implements.

use semver::Version;

/// The WIT package every pack speaks.
pub const PACKAGE: &str = "safety:rules";

/// Oldest and newest contract versions this host accepts (inclusive). Versions 0.x.y are
/// compatible across patch releases only, as in semver.
pub const MIN_ABI: Version = Version::new(0, 1, 0);
pub const MAX_ABI: Version = Version::new(0, 1, u64::MAX);

/// Interfaces a pack may import (without version). Nothing else is linked: no WASI, so no
/// files, network, environment, clocks or randomness.
pub const IMPORT_ALLOWLIST: &[&str] = &["safety:rules/types", "safety:rules/host"];

/// The host's supported range, for messages.
pub fn supported_range() -> String {
    format!("{MIN_ABI} through {}.{}.x", MAX_ABI.major, MAX_ABI.minor)
}

/// What the header of a plugin says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub abi: Version,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Why a plugin's bytes were refused before compilation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    #[error(
        "is a core WebAssembly module, not a component; turn it into a component with \
         `cargo xtask build-plugins` (or `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("exports no `{PACKAGE}/rule-pack` interface (exports: {found}); is it built with the SDK?")]
    MissingExport { found: String },
    #[error("exports `{PACKAGE}/rule-pack` without a version; rebuild it with the SDK")]
    Unversioned,
    #[error("has an unreadable ABI version {version:?} in export `{export}`")]
    BadVersion { export: String, version: String },
    #[error(
        "was built for ABI {PACKAGE}@{found}, which is too old for this engine (supports {supported}); \
         rebuild the plugin with a current SDK"
    )]
    TooOld { found: Version, supported: String },
    #[error(
        "was built for ABI {PACKAGE}@{found}, which is newer than this engine supports ({supported}); \
         upgrade the engine"
    )]
    TooNew { found: Version, supported: String },
    #[error(
        "imports `{import}`, which is not allowed: plugins may import only {allowed} \
         (no filesystem, network, environment, clocks or randomness)"
    )]
    ForbiddenImport { import: String, allowed: String },
}

/// Reads a component's top-level imports and exports and checks them against this host:
/// the ABI version must be in range and every import on the allowlist.
pub fn check(bytes: &[u8]) -> Result<Header, AbiError> {
    let (imports, exports) = top_level_names(bytes)?;

    let pack_exports: Vec<&String> =
        exports.iter().filter(|e| e.starts_with(PACKAGE) && e[PACKAGE.len()..].starts_with("/rule-pack")).collect();
    let export = match pack_exports.first() {
        Some(e) => e.as_str(),
        None => {
            let found = if exports.is_empty() { "none".to_string() } else { exports.join(", ") };
            return Err(AbiError::MissingExport { found });
        }
    };
    let version_text = export.split_once('@').map(|(_, v)| v).ok_or(AbiError::Unversioned)?;
    let abi = Version::parse(version_text)
        .map_err(|_| AbiError::BadVersion { export: export.to_string(), version: version_text.to_string() })?;
    if abi < MIN_ABI {
        return Err(AbiError::TooOld { found: abi, supported: supported_range() });
    }
    if abi > MAX_ABI {
        return Err(AbiError::TooNew { found: abi, supported: supported_range() });
    }

    for import in &imports {
        let bare = import.split_once('@').map_or(import.as_str(), |(name, _)| name);
        if !IMPORT_ALLOWLIST.contains(&bare) {
            return Err(AbiError::ForbiddenImport {
                import: import.clone(),
                allowed: IMPORT_ALLOWLIST.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(" and "),
            });
        }
    }
    Ok(Header { abi, imports, exports })
}

/// The names of the component's own (top-level) imports and exports, ignoring those of
/// nested modules and components.
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), AbiError> {
    use wasmparser::{Encoding, Parser, Payload};

    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| AbiError::NotWasm(e.to_string()))?;
        match payload {
            Payload::Version { encoding: Encoding::Module, .. } if depth == 0 => return Err(AbiError::CoreModule),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| AbiError::NotWasm(e.to_string()))?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| AbiError::NotWasm(e.to_string()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(imports: &str, export_version: Option<&str>) -> Vec<u8> {
        let export = match export_version {
            Some(v) => format!(r#"(instance $e) (export "safety:rules/rule-pack@{v}" (instance $e))"#),
            None => String::new(),
        };
        wat::parse_str(format!("(component {imports} {export})")).unwrap()
    }

    #[test]
    fn accepts_supported_version_and_allowed_imports() {
        let bytes = component(r#"(import "safety:rules/host@0.1.0" (instance))"#, Some("0.1.0"));
        let header = check(&bytes).unwrap();
        assert_eq!(header.abi, Version::new(0, 1, 0));
        assert_eq!(header.imports, vec!["safety:rules/host@0.1.0"]);
        assert!(check(&component("", Some("0.1.7"))).is_ok(), "patch releases are compatible");
    }

    #[test]
    fn refuses_too_old_and_too_new_naming_both_versions() {
        let old = check(&component("", Some("0.0.9"))).unwrap_err().to_string();
        assert!(old.contains("0.0.9") && old.contains("0.1.0 through 0.1.x") && old.contains("too old"), "{old}");
        let new = check(&component("", Some("0.2.0"))).unwrap_err().to_string();
        assert!(new.contains("0.2.0") && new.contains("0.1.0 through 0.1.x") && new.contains("upgrade"), "{new}");
        let major = check(&component("", Some("1.0.0"))).unwrap_err();
        assert!(matches!(major, AbiError::TooNew { .. }));
    }

    #[test]
    fn refuses_imports_outside_the_allowlist_by_name() {
        for import in ["wasi:filesystem/preopens@0.2.0", "wasi:sockets/tcp@0.2.0", "wasi:cli/environment@0.2.0"] {
            let bytes = component(&format!(r#"(import "{import}" (instance))"#), Some("0.1.0"));
            let err = check(&bytes).unwrap_err().to_string();
            assert!(err.contains(import), "{err}");
        }
    }

    #[test]
    fn refuses_missing_export_core_modules_and_garbage() {
        assert!(matches!(check(&component("", None)), Err(AbiError::MissingExport { .. })));
        let core = wat::parse_str("(module)").unwrap();
        assert_eq!(check(&core), Err(AbiError::CoreModule));
        assert!(matches!(check(b"definitely not wasm"), Err(AbiError::NotWasm(_))));
        let unversioned =
            wat::parse_str(r#"(component (instance $e) (export "safety:rules/rule-pack" (instance $e)))"#).unwrap();
        assert_eq!(check(&unversioned), Err(AbiError::Unversioned));
    }
}
