//! The rule marketplace: signed rule-pack bundles, indexes, install/lock/update and
//! calibration cards.
//!
//! Rule packs from strangers are acceptable only when their identity and integrity are
//! checked and what a rule is worth is visible before it is installed. This module adds
//! four things to the plugin sandbox:
//!
//! - **Bundles** ([`bundle`]): one `.rpack` file holding a pack's `.wasm`, a
//!   `manifest.toml` (name, semver version, ABI version, description, categories, author,
//!   license, required capabilities, judge prompt texts, the rule ids and the sha256 of
//!   every other file) and an ed25519 signature over the exact manifest bytes. Made by
//!   `engine pack build | sign`, checked by `engine pack verify`; keys come from
//!   `engine pack keygen` ([`keys`]).
//! - **Indexes** ([`index`]): a JSON file, at a local path or an `http://` URL, listing
//!   packs, versions, bundle locations (relative to the index), bundle hashes and sizes,
//!   publisher keys and calibration cards. `engine pack publish` adds a bundle to one.
//! - **Install, lock, update** ([`install`], [`lock`]): `engine rules add NAME[@REQ]`
//!   resolves the newest version matching the semver requirement, downloads it, checks
//!   its size and hash against the index, its files against the manifest, its signature
//!   against the trust policy (`[market]` in rules.toml, [`trust`]), its ABI, its rules
//!   (no rule id may clash with another pack's) and that the job still loads; only then is
//!   it moved into `packs/NAME/VERSION/`, pinned in rules.toml and in `rules.lock`.
//!   Anything failing leaves every file as it was. `update` refuses downgrades unless
//!   asked; [`apply_lock`] makes `engine score` refuse a job whose packs differ from the
//!   lock.
//! - **Calibration cards** ([`calibrate`]): per rule, agreement with gold preferences
//!   (the rule alone labelling each pair), abstain rate, mean relevance, judge calls per
//!   evaluation and error rate, measured on a gold file. Cards travel inside the bundle
//!   (signed with it) and in the index, and `engine rules search` shows them.
//!
//! ```
//! use engine::market::bundle::{Bundle, PackInfo};
//! use engine::market::keys::SecretKey;
//! use engine::market::trust::TrustPolicy;
//!
//! // A bundle around a (tiny, stand-in) component, signed and verified.
//! let wasm = wat::parse_str(
//!     r#"(component (instance $e) (export "safety:rules/rule-pack@0.1.0" (instance $e)))"#,
//! ).unwrap();
//! let info: PackInfo = toml::from_str(r#"
//!     name = "tiny"
//!     version = "1.2.0"
//!     description = "A stand-in pack"
//!     author = "Alice"
//!     license = "MIT"
//! "#).unwrap();
//! let mut bundle = Bundle::assemble(&info, wasm, vec!["some-rule".into()], None).unwrap();
//! let key = SecretKey::from_seed([7; 32]);
//! bundle.sign(&key);
//! let bundle = Bundle::parse(&bundle.to_bytes(), "tiny-1.2.0.rpack").unwrap();
//! let policy = TrustPolicy::trusting("alice", key.public());
//! let signer = bundle.verify(&policy).unwrap();
//! assert_eq!(signer.to_string(), format!("signed by alice ({})", key.public().fingerprint()));
//! ```

pub mod bundle;
pub mod calibrate;
pub mod command;
pub mod index;
pub mod install;
pub mod keys;
pub mod lock;
pub mod trust;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use bundle::{Bundle, Manifest, PackInfo, Signer};
pub use calibrate::{CalibrationCard, RuleCard};
pub use index::{Index, IndexEntry, PackRequest};
pub use install::{
    AddOptions, Installed, NewerOutside, Removed, UpdateOutcome, add, job_from_text, load_job, remove, update,
};
pub use keys::{PublicKey, SecretKey};
pub use lock::{Lock, LockedPack, apply_lock};
pub use trust::{MarketConfig, RawMarket, RawTrusted, TrustPolicy};

use crate::config::ConfigError;
use crate::data::DataError;
use crate::labeling::LabelingError;
use crate::plugin::{PluginError, RegistryError, abi::AbiError};
use crate::score::ScoreError;

/// Every error of the marketplace. Each names the file, URL, pack, rule or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot download {url}: {message}")]
    Download { url: String, message: String },
    /// A file (rules.toml's `[market]`, an index, a lock, a key) that does not parse.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    /// A bundle that is malformed: framing, truncation, manifest fields, missing files.
    #[error("bundle {bundle}: {message}")]
    Bundle { bundle: String, message: String },
    #[error(
        "bundle {bundle}: file name {name:?} is refused: {reason}; bundle files must be plain names \
         ([A-Za-z0-9._-], no leading dot), never paths"
    )]
    FileName { bundle: String, name: String, reason: &'static str },
    #[error("bundle {bundle}: {file} hashes to {actual} but the manifest says {expected}; the file was changed")]
    FileHash { bundle: String, file: String, expected: String, actual: String },
    #[error(
        "bundle {bundle}: the signature does not verify with key {key}: the manifest was changed after \
         signing, or it was signed with another key"
    )]
    BadSignature { bundle: String, key: String },
    #[error(
        "bundle {bundle}: signed by key {key}, which the trust policy does not trust; if you trust this \
         publisher, add it to rules.toml as [[market.trusted]] name = \"...\", key = \"{key}\""
    )]
    UntrustedKey { bundle: String, key: String },
    #[error(
        "bundle {bundle}: is not signed; unsigned packs are refused unless rules.toml says \
         [market] allow_unsigned = true"
    )]
    Unsigned { bundle: String },
    #[error("bundle {bundle}: {file}: {source}")]
    Abi { bundle: String, file: String, source: Box<AbiError> },
    #[error("pack {pack}: {message}")]
    IndexMismatch { pack: String, message: String },
    #[error("{url}: download of {pack} is truncated or padded: the index says {expected} bytes, {actual} arrived")]
    Truncated { pack: String, url: String, expected: u64, actual: u64 },
    #[error(
        "{url}: sha256 mismatch for {pack}: the index says {expected} but the bundle hashes to {actual}; \
         refusing it (the bundle or the index was tampered with)"
    )]
    IndexHash { pack: String, url: String, expected: String, actual: String },
    #[error("index {index}: no pack named {name:?}{}", similar_hint(similar))]
    UnknownPack { index: String, name: String, similar: Vec<String> },
    #[error(
        "index {index}: pack {name:?} is listed only with versions that are not semver ({versions}); \
         ask the index's publisher to fix them"
    )]
    NoValidVersion { index: String, name: String, versions: String },
    #[error(
        "index {index}: pack {pack} names its bundle {bundle:?}; an index served over the network may only name \
         http(s) bundles or bundles relative to itself"
    )]
    BundleScheme { index: String, pack: String, bundle: String },
    #[error("index {index}: no version of {name} matches {req} (available: {available})")]
    NoMatch { index: String, name: String, req: String, available: String },
    #[error(
        "pack {name}: {requested} is older than the installed {installed}; downgrades are refused \
         (an index that hides new versions could roll you back); pass --allow-downgrade to do it anyway"
    )]
    Downgrade { name: String, installed: String, requested: String },
    #[error("pack {pack}: rule id {rule:?} is already provided by pack {other}; rule ids must be unique in a job")]
    DuplicateRule { pack: String, rule: String, other: String },
    #[error("pack {pack}: needs the capability {capability:?} ({why}); pass --grant {capability} to allow it")]
    GrantRequired { pack: String, capability: String, why: &'static str },
    #[error("{}: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    #[error("{}: {message}", config.display())]
    Usage { config: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Config(Box<ConfigError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Plugin(Box<PluginError>),
    #[error(transparent)]
    Data(Box<DataError>),
    #[error(transparent)]
    Score(Box<ScoreError>),
    #[error(transparent)]
    Labeling(Box<LabelingError>),
}

/// Errors of other areas, boxed to keep `Result<_, MarketError>` small.
macro_rules! boxed_from {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for MarketError {
            fn from(error: $error) -> MarketError {
                MarketError::$variant(Box::new(error))
            }
        })*
    };
}

boxed_from!(
    Config(ConfigError),
    Registry(RegistryError),
    Plugin(PluginError),
    Data(DataError),
    Score(ScoreError),
    Labeling(LabelingError),
);

fn similar_hint(similar: &[String]) -> String {
    if similar.is_empty() { String::new() } else { format!("; did you mean {}?", similar.join(", ")) }
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `path` as an I/O error maker.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MarketError + '_ {
    move |source| MarketError::Io { path: path.to_path_buf(), source }
}

/// Reads a whole file, naming it on failure; a device, FIFO or a file over
/// [`crate::fsio::MAX_FILE_BYTES`] is refused (see [`crate::fsio::read`]).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, MarketError> {
    crate::fsio::read(path).map_err(io(path))
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same folder, synced,
/// then renamed over it. A reader sees the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MarketError> {
    crate::fsio::write_atomic(path, bytes).map_err(io(path))
}
