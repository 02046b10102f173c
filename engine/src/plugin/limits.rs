//! What a plugin may consume, and the wasmtime resource limiter that enforces it.

use serde::{Deserialize, Serialize};

/// Per-plugin sandbox limits. Every field has a documented default; `[sandbox]` in
/// rules.toml overrides them for the whole job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Linear memory cap per instance, in MiB (default 64).
    pub memory_mib: u64,
    /// Linear memories per instance (default 2: the guest's own plus one spare for
    /// adapter shims).
    pub max_memories: u32,
    /// Tables per instance and elements per table (defaults 16 and 100 000).
    pub max_tables: u32,
    pub max_table_elements: u32,
    /// Core instances per component instance (default 32).
    pub max_instances: u32,
    /// WebAssembly stack per call, in KiB (default 512).
    pub max_wasm_stack_kib: u32,
    /// Fuel (roughly one unit per wasm instruction) per call (default 2 000 000 000,
    /// about a second of wasm on this class of CPU). Deterministic: the same call runs out
    /// of fuel at the same point on every machine.
    pub fuel_per_call: u64,
    /// Wall-clock deadline per call, in milliseconds, including judge calls (default
    /// 30 000). The backstop for time spent outside wasm instructions.
    pub timeout_ms: u64,
    /// Longest rationale accepted from a verdict, in bytes (default 2048). Longer is a
    /// malformed verdict.
    pub max_rationale_bytes: usize,
    /// Log bytes accepted from one call (default 16 KiB); the rest is dropped and counted.
    pub max_log_bytes_per_call: usize,
    /// Rules a pack may export (default 1000), and bytes of text per metadata field
    /// (default 4096).
    pub max_rules_per_pack: usize,
    pub max_metadata_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_mib: 64,
            max_memories: 2,
            max_tables: 16,
            max_table_elements: 100_000,
            max_instances: 32,
            max_wasm_stack_kib: 512,
            fuel_per_call: 2_000_000_000,
            timeout_ms: 30_000,
            max_rationale_bytes: 2048,
            max_log_bytes_per_call: 16 * 1024,
            max_rules_per_pack: 1000,
            max_metadata_bytes: 4096,
        }
    }
}

impl SandboxLimits {
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// The error a refused memory or table growth raises inside the guest, so that the trap
/// is classified as "out of memory" rather than a generic crash.
#[derive(Debug)]
pub struct LimitExceeded {
    pub what: &'static str,
    pub desired: usize,
    pub limit: usize,
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} growth to {} refused (limit {})", self.what, self.desired, self.limit)
    }
}

impl std::error::Error for LimitExceeded {}

/// Enforces [`SandboxLimits`] on one store.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    memories: usize,
    tables: usize,
    instances: usize,
}

impl Limiter {
    pub(crate) fn new(limits: &SandboxLimits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes(),
            table_elements: limits.max_table_elements as usize,
            memories: limits.max_memories as usize,
            tables: limits.max_tables as usize,
            instances: limits.max_instances as usize,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded { what: "memory", desired, limit: self.memory_bytes }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(wasmtime::Error::new(LimitExceeded { what: "table", desired, limit: self.table_elements }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
