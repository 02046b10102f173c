//! The plugin sandbox: loading, verifying and running rule packs.
//!
//! This is the only module that knows wasmtime. A rule pack is a WebAssembly component
//! implementing the `safety:rules` WIT contract (`sdk/wit/`). Packs are untrusted:
//!
//! - **Integrity.** A pack is pinned by sha256 in rules.toml; a mismatch refuses to load.
//! - **ABI.** The contract version is read from the component's export names before
//!   anything is compiled; versions outside [`abi::MIN_ABI`]..=[`abi::MAX_ABI`] are refused
//!   with both versions named.
//! - **Capabilities.** Only the `safety:rules` host interface is linked, and components
//!   importing anything else are refused at load, naming the import. There is no WASI:
//!   no files, network, environment, clocks or randomness. `judge` needs a grant.
//! - **Resources.** Memory, tables, instances and stack are capped; every call gets fresh
//!   fuel (deterministic) and a wall-clock deadline (epochs). See [`SandboxLimits`].
//! - **Failure isolation.** A trap, timeout, memory exhaustion or malformed verdict fails
//!   that one evaluation with a classified [`Failure`]; the trapped instance is dropped and
//!   replaced, and the run goes on.

pub mod abi;
mod bindings;
mod cache;
mod host;
mod limits;
mod registry;
mod runtime;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use host::{Grants, LogLevel, LogLine};
pub use limits::SandboxLimits;
pub use registry::{ActiveRule, Registry, RegistryError};
pub use runtime::{Evaluation, Plugin, PluginSpec, Runtime};

/// A rule's metadata as its pack reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    pub id: String,
    pub title: String,
    pub description: String,
    pub version: String,
    pub categories: Vec<String>,
}

/// A rule's checked judgement of one sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub score: f32,
    pub relevance: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// Why one evaluation produced no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Ran out of fuel or past the wall-clock deadline.
    Timeout,
    /// Tried to grow memory (or a table) past its cap.
    OutOfMemory,
    /// The guest panicked or aborted.
    Panic,
    /// Any other trap: out-of-bounds access, stack overflow, ...
    Crash,
    /// A verdict that breaks the contract: NaN, out of range, oversized, unknown rule.
    Malformed,
    /// The pack refused its configuration.
    Config,
    /// The rule needed the judge and it failed.
    Judge,
    /// The rule returned an error of its own.
    RuleError,
    /// Not run: the rule was quarantined after repeated failures.
    Quarantined,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Why a plugin could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("{}: cannot read plugin: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// `pinned_by` names where the pin is written: the job file when the loader knows it
    /// (see [`PluginError::pinned_by`]), so that the user edits the right file.
    #[error("{}: sha256 mismatch: {pinned_by} pins {expected} but the file hashes to {actual}; refusing to load it (rebuild the pack, or update the pin)", path.display())]
    HashMismatch { path: PathBuf, expected: String, actual: String, pinned_by: String },
    #[error("{}: {source}", path.display())]
    Abi { path: PathBuf, source: abi::AbiError },
    #[error("{}: does not compile: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("{}: does not link against the host: {message}", path.display())]
    Link { path: PathBuf, message: String },
    #[error("{}: cannot be instantiated: {message}", path.display())]
    Instantiate { path: PathBuf, message: String },
    #[error("{}: bad rule metadata: {message}", path.display())]
    Metadata { path: PathBuf, message: String },
    #[error("rule id {id:?} is exported by both {} and {}; rule ids must be unique across packs", first.display(), second.display())]
    DuplicateRule { id: String, first: PathBuf, second: PathBuf },
}

impl PluginError {
    /// Names `config` as the file holding the pin of a [`PluginError::HashMismatch`];
    /// other errors are returned unchanged.
    pub fn pinned_by(self, config: &std::path::Path) -> PluginError {
        match self {
            PluginError::HashMismatch { path, expected, actual, .. } => PluginError::HashMismatch {
                path,
                expected,
                actual,
                pinned_by: format!("{} (its [[pack]] sha256)", config.display()),
            },
            other => other,
        }
    }
}
