//! Rule-pack bundles: one `.rpack` file with a pack's component, its manifest, an
//! optional calibration card and an optional ed25519 signature.
//!
//! # The file
//!
//! A small archive with text headers and raw contents, so that a truncated or padded
//! file can never pass for a whole one:
//!
//! ```text
//! safety-rules-bundle 1\n
//! file manifest.toml 812\n  <812 bytes>\n
//! file pack.wasm 102420\n   <102420 bytes>\n
//! file signature.toml 229\n <229 bytes>\n
//! end\n
//! ```
//!
//! File names are plain names (`[A-Za-z0-9._-]`, no leading dot, at most 64 bytes): a
//! name that is a path, such as `../../.bashrc`, is refused before anything is written.
//!
//! # What is signed
//!
//! `manifest.toml` names the pack (name, semver version, ABI version, description,
//! categories, author, license, required capabilities, judge prompt texts, the rule ids
//! it exports) and gives the sha256 of **every other file** of the bundle.
//! `signature.toml` holds the publisher's public key and an ed25519 signature over
//! `"safety-rules-bundle 1 manifest\n"` followed by the exact bytes of `manifest.toml`.
//! So one signature covers every byte a buyer runs; `Bundle::parse` checks every file
//! against the manifest, and `Bundle::verify` checks the signature and the trust policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use semver::Version;
use serde::{Deserialize, Serialize};

use super::calibrate::CalibrationCard;
use super::keys::{PublicKey, SecretKey, decode_signature};
use super::trust::TrustPolicy;
use super::{MarketError, read, sha256_hex};
use crate::plugin::{Grants, PluginSpec, Runtime, SandboxLimits, abi};

/// First line of every bundle.
pub const MAGIC: &str = "safety-rules-bundle 1";
/// Prefix of the signed message (domain separation: a bundle signature can never be
/// mistaken for a signature of anything else).
pub const SIGNING_CONTEXT: &[u8] = b"safety-rules-bundle 1 manifest\n";
/// Largest bundle accepted, downloaded or read.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
const MAX_FILES: usize = 32;
const MAX_NAME: usize = 64;

pub const MANIFEST: &str = "manifest.toml";
pub const SIGNATURE: &str = "signature.toml";
pub const CARD: &str = "calibration.json";
/// The component's name in bundles `pack build` writes.
pub const WASM: &str = "pack.wasm";

/// Capabilities a pack can require (see `config`): only `judge` exists.
pub const CAPABILITIES: &[&str] = &["judge"];

/// What a publisher writes about a pack (`engine pack build --manifest`): the manifest
/// less what the build measures (ABI version, rule ids, file hashes).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    #[serde(default)]
    pub categories: Vec<String>,
    pub author: String,
    pub license: String,
    /// Capabilities the pack needs the job to grant (`judge`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The judge prompt texts the pack asks, by name, so buyers can read them.
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
}

/// `manifest.toml`: the signed description of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format; this engine reads 1.
    pub format: u32,
    pub name: String,
    /// Semver.
    pub version: String,
    /// The `safety:rules` contract version the component exports.
    pub abi: String,
    pub description: String,
    #[serde(default)]
    pub categories: Vec<String>,
    pub author: String,
    pub license: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Rule ids the component exports.
    pub rules: Vec<String>,
    /// Which file is the component.
    pub wasm: String,
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    /// sha256 of every other file in the bundle.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    pub fn version(&self) -> Version {
        Version::parse(&self.version).expect("validated when the manifest was read")
    }

    /// Checks every field; `at` names the bundle in errors.
    fn validate(&self, at: &str) -> Result<(), MarketError> {
        let bad = |message: String| MarketError::Bundle { bundle: at.to_string(), message };
        if self.format != 1 {
            return Err(bad(format!("manifest format {} is not supported (this engine reads format 1)", self.format)));
        }
        check_pack_name(&self.name).map_err(|m| bad(format!("manifest name: {m}")))?;
        Version::parse(&self.version)
            .map_err(|e| bad(format!("manifest version {:?} is not a semver version: {e}", self.version)))?;
        Version::parse(&self.abi).map_err(|e| bad(format!("manifest abi {:?} is not a version: {e}", self.abi)))?;
        for (field, value) in [("description", &self.description), ("author", &self.author), ("license", &self.license)]
        {
            if value.trim().is_empty() {
                return Err(bad(format!("manifest {field}: must not be empty")));
            }
        }
        if self.categories.iter().any(|c| c.trim().is_empty() || c.len() > 64) {
            return Err(bad("manifest categories: each must be 1 to 64 characters".into()));
        }
        for cap in &self.capabilities {
            if !CAPABILITIES.contains(&cap.as_str()) {
                return Err(bad(format!(
                    "manifest capabilities: {cap:?} is never granted to plugins (only {} exists): rules run \
                     without files, network, environment, clocks or randomness",
                    CAPABILITIES.join(", ")
                )));
            }
        }
        if self.rules.is_empty() {
            return Err(bad("manifest rules: a pack exports at least one rule".into()));
        }
        let mut seen = BTreeSet::new();
        for rule in &self.rules {
            if rule.trim().is_empty() || !seen.insert(rule) {
                return Err(bad(format!("manifest rules: {rule:?} is empty or listed twice")));
            }
        }
        for name in self.files.keys().chain([&self.wasm]) {
            check_file_name(name).map_err(|reason| MarketError::FileName {
                bundle: at.to_string(),
                name: name.clone(),
                reason,
            })?;
            if name == MANIFEST || name == SIGNATURE {
                return Err(bad(format!("manifest files: {name} cannot be listed (it is not covered by a hash)")));
            }
        }
        if !self.wasm.ends_with(".wasm") || !self.files.contains_key(&self.wasm) {
            return Err(bad(format!("manifest wasm: {:?} must be a .wasm file listed in [files]", self.wasm)));
        }
        for (name, hash) in &self.files {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(bad(format!("manifest files.{name:?}: expected 64 lowercase hex digits, found {hash:?}")));
            }
        }
        Ok(())
    }
}

/// `signature.toml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    key: String,
    signature: String,
}

/// Who vouches for a verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// Signed by a publisher the trust policy trusts.
    Trusted { name: String, key: PublicKey },
    /// A valid signature, checked against no trust policy (`pack verify` without keys).
    Unchecked { key: PublicKey },
    /// Not signed, and the policy allows that.
    Unsigned,
}

impl Signer {
    pub fn key(&self) -> Option<PublicKey> {
        match self {
            Signer::Trusted { key, .. } | Signer::Unchecked { key } => Some(*key),
            Signer::Unsigned => None,
        }
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Trusted { name, key } => write!(f, "signed by {name} ({})", key.fingerprint()),
            Signer::Unchecked { key } => write!(f, "validly signed by key {key} (not checked against a trust list)"),
            Signer::Unsigned => f.write_str("unsigned (allowed by the trust policy)"),
        }
    }
}

/// A parsed bundle whose files all match its manifest. Its signature is checked by
/// [`Bundle::verify`].
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    /// The manifest as stored: the signed bytes.
    manifest_bytes: Vec<u8>,
    signature: Option<(PublicKey, [u8; 64])>,
    /// Every file but the manifest and the signature.
    pub files: BTreeMap<String, Vec<u8>>,
    pub card: Option<CalibrationCard>,
    /// The ABI version the component exports (checked against the manifest).
    pub abi: Version,
    /// Where the bundle was read from (a path or URL), for messages.
    origin: String,
}

impl Bundle {
    /// A new, unsigned bundle: the component is ABI-checked, its rules are `rules`.
    pub fn assemble(
        info: &PackInfo,
        wasm: Vec<u8>,
        rules: Vec<String>,
        card: Option<CalibrationCard>,
    ) -> Result<Bundle, MarketError> {
        let at = format!("{}-{}", info.name, info.version);
        let header = abi::check(&wasm).map_err(|source| MarketError::Abi {
            bundle: at.clone(),
            file: WASM.into(),
            source: Box::new(source),
        })?;
        let mut files = BTreeMap::new();
        files.insert(WASM.to_string(), wasm);
        let manifest = Manifest {
            format: 1,
            name: info.name.clone(),
            version: info.version.clone(),
            abi: header.abi.to_string(),
            description: info.description.clone(),
            categories: info.categories.clone(),
            author: info.author.clone(),
            license: info.license.clone(),
            capabilities: info.capabilities.clone(),
            rules,
            wasm: WASM.into(),
            prompts: info.prompts.clone(),
            files: BTreeMap::new(),
        };
        let mut bundle = Bundle {
            manifest,
            manifest_bytes: Vec::new(),
            signature: None,
            files,
            card: None,
            abi: header.abi,
            origin: at,
        };
        bundle.seal()?;
        if let Some(card) = card {
            bundle.set_card(card)?;
        }
        Ok(bundle)
    }

    /// `engine pack build`: reads the publisher's `info` (a [`PackInfo`] TOML file) and
    /// the component, loads the component in the sandbox to learn its rule ids, and
    /// assembles an unsigned bundle (with the calibration card `card`, if given).
    pub fn build(wasm: &Path, info: &Path, card: Option<&Path>) -> Result<Bundle, MarketError> {
        let text = crate::fsio::read_to_string(info).map_err(super::io(info))?;
        let info_value: PackInfo = toml::from_str(&text).map_err(|e| MarketError::Invalid {
            file: info.display().to_string(),
            message: e.message().trim().into(),
        })?;
        let bytes = read(wasm)?;
        let runtime = Runtime::new(SandboxLimits::default(), None, None)?;
        let spec = PluginSpec {
            name: info_value.name.clone(),
            path: wasm.to_path_buf(),
            sha256: Some(sha256_hex(&bytes)),
            config: Vec::new(),
            grants: Grants { judge: info_value.capabilities.iter().any(|c| c == "judge") },
        };
        let rules = runtime.load(&spec)?.rules.iter().map(|r| r.id.clone()).collect();
        let card = match card {
            None => None,
            Some(path) => Some(serde_json::from_slice(&read(path)?).map_err(|e| MarketError::Invalid {
                file: path.display().to_string(),
                message: format!("not a calibration card: {e}"),
            })?),
        };
        Bundle::assemble(&info_value, bytes, rules, card)
    }

    /// Recomputes the file hashes and the manifest bytes after a change; drops the
    /// signature, which no longer applies.
    fn seal(&mut self) -> Result<(), MarketError> {
        self.manifest.files = self.files.iter().map(|(name, bytes)| (name.clone(), sha256_hex(bytes))).collect();
        self.manifest.validate(&self.label())?;
        self.manifest_bytes = toml::to_string(&self.manifest)
            .map_err(|e| MarketError::Other(format!("cannot write the manifest: {e}")))?
            .into_bytes();
        self.signature = None;
        Ok(())
    }

    /// `NAME-VERSION`, for messages.
    pub fn label(&self) -> String {
        format!("{}-{}", self.manifest.name, self.manifest.version)
    }

    /// The conventional file name, `NAME-VERSION.rpack`.
    pub fn file_name(&self) -> String {
        format!("{}.rpack", self.label())
    }

    /// The component's bytes.
    pub fn wasm(&self) -> &[u8] {
        &self.files[&self.manifest.wasm]
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The key the bundle claims to be signed with (not yet verified).
    pub fn signed_with(&self) -> Option<PublicKey> {
        self.signature.map(|(key, _)| key)
    }

    /// Replaces the calibration card. It must describe this pack's component. Returns
    /// whether a signature was dropped (the manifest changed: sign again).
    pub fn set_card(&mut self, card: CalibrationCard) -> Result<bool, MarketError> {
        let wasm_sha = sha256_hex(self.wasm());
        card.check_for(&self.manifest.name, &wasm_sha)
            .map_err(|message| MarketError::Bundle { bundle: self.label(), message: format!("{CARD}: {message}") })?;
        let json = serde_json::to_vec_pretty(&card).expect("cards serialise");
        let was_signed = self.signature.is_some();
        self.files.insert(CARD.into(), json);
        self.card = Some(card);
        self.seal()?;
        Ok(was_signed)
    }

    /// Signs the manifest, replacing any earlier signature.
    pub fn sign(&mut self, key: &SecretKey) {
        let signature = key.sign(&signed_message(&self.manifest_bytes));
        self.signature = Some((key.public(), signature));
    }

    /// Checks the signature and the trust policy: a trusted publisher's valid signature,
    /// or no signature where the policy allows unsigned bundles.
    pub fn verify(&self, policy: &TrustPolicy) -> Result<Signer, MarketError> {
        match self.verify_signature()? {
            None if policy.allow_unsigned => Ok(Signer::Unsigned),
            None => Err(MarketError::Unsigned { bundle: self.origin.clone() }),
            Some(key) => match policy.publisher(&key) {
                Some(t) => Ok(Signer::Trusted { name: t.name.clone(), key }),
                None => Err(MarketError::UntrustedKey { bundle: self.origin.clone(), key: key.to_string() }),
            },
        }
    }

    /// Checks the signature alone: `Ok(None)` when unsigned, the key when it verifies.
    pub fn verify_signature(&self) -> Result<Option<PublicKey>, MarketError> {
        match &self.signature {
            None => Ok(None),
            Some((key, signature)) if key.verifies(&signed_message(&self.manifest_bytes), signature) => Ok(Some(*key)),
            Some((key, _)) => Err(MarketError::BadSignature { bundle: self.origin.clone(), key: key.to_string() }),
        }
    }

    /// The bundle file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST, &self.manifest_bytes)];
        entries.extend(self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
        let signature;
        if let Some((key, sig)) = &self.signature {
            signature = toml::to_string(&SignatureFile { key: key.to_string(), signature: hex::encode(sig) })
                .expect("signature files serialise");
            entries.push((SIGNATURE, signature.as_bytes()));
        }
        write_archive(&entries)
    }

    /// The files to install, by name: the manifest, the signature (if any) and every
    /// file the manifest lists.
    pub fn install_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![(MANIFEST.to_string(), self.manifest_bytes.clone())];
        if let Some((key, sig)) = &self.signature {
            let text = toml::to_string(&SignatureFile { key: key.to_string(), signature: hex::encode(sig) })
                .expect("signature files serialise");
            out.push((SIGNATURE.to_string(), text.into_bytes()));
        }
        out.extend(self.files.iter().map(|(n, b)| (n.clone(), b.clone())));
        out
    }

    /// Reads a bundle file.
    pub fn read(path: &Path) -> Result<Bundle, MarketError> {
        let bytes = read(path)?;
        Bundle::parse(&bytes, &path.display().to_string())
    }

    /// Parses a bundle and checks its integrity: the framing, every file name, the
    /// manifest's fields, every file against its hash in the manifest (no file missing
    /// or extra), the component's ABI version against the manifest, and the calibration
    /// card against the component. `origin` (a path or URL) names it in errors. The
    /// signature is checked by [`Bundle::verify`].
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Bundle, MarketError> {
        let bad = |message: String| MarketError::Bundle { bundle: origin.to_string(), message };
        let entries = read_archive(bytes, origin)?;
        let mut manifest_bytes = None;
        let mut signature_bytes = None;
        let mut files = BTreeMap::new();
        for (name, content) in entries {
            match name.as_str() {
                MANIFEST => manifest_bytes = Some(content),
                SIGNATURE => signature_bytes = Some(content),
                _ => {
                    files.insert(name, content);
                }
            }
        }
        let manifest_bytes = manifest_bytes.ok_or_else(|| bad(format!("has no {MANIFEST}")))?;
        if manifest_bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!("{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let text = std::str::from_utf8(&manifest_bytes).map_err(|_| bad(format!("{MANIFEST} is not UTF-8")))?;
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| bad(format!("{MANIFEST}: {}", e.message().trim())))?;
        manifest.validate(origin)?;

        for name in files.keys() {
            if !manifest.files.contains_key(name) {
                return Err(bad(format!("{name} is in the bundle but not in the manifest (unsigned content)")));
            }
        }
        for (name, expected) in &manifest.files {
            let content = files.get(name).ok_or_else(|| bad(format!("the manifest lists {name}, which is missing")))?;
            let actual = sha256_hex(content);
            if &actual != expected {
                return Err(MarketError::FileHash {
                    bundle: origin.to_string(),
                    file: name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }

        let wasm = &files[&manifest.wasm];
        let header = abi::check(wasm).map_err(|source| MarketError::Abi {
            bundle: origin.to_string(),
            file: manifest.wasm.clone(),
            source: Box::new(source),
        })?;
        if header.abi.to_string() != manifest.abi {
            return Err(bad(format!(
                "the manifest says ABI {} but {} exports safety:rules@{}",
                manifest.abi, manifest.wasm, header.abi
            )));
        }

        let card = match files.get(CARD) {
            None => None,
            Some(json) => {
                let card: CalibrationCard =
                    serde_json::from_slice(json).map_err(|e| bad(format!("{CARD}: not a calibration card: {e}")))?;
                card.check_for(&manifest.name, &sha256_hex(wasm)).map_err(|m| bad(format!("{CARD}: {m}")))?;
                Some(card)
            }
        };

        let signature = match signature_bytes {
            None => None,
            Some(b) => {
                let text = std::str::from_utf8(&b).map_err(|_| bad(format!("{SIGNATURE} is not UTF-8")))?;
                let file: SignatureFile =
                    toml::from_str(text).map_err(|e| bad(format!("{SIGNATURE}: {}", e.message().trim())))?;
                let key: PublicKey = file.key.parse().map_err(|e| bad(format!("{SIGNATURE} key: {e}")))?;
                let sig = decode_signature(&file.signature)
                    .ok_or_else(|| bad(format!("{SIGNATURE} signature: expected 128 hex digits")))?;
                Some((key, sig))
            }
        };
        Ok(Bundle { manifest, manifest_bytes, signature, files, card, abi: header.abi, origin: origin.to_string() })
    }
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut message = SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(manifest);
    message
}

/// A pack name: it becomes a folder name, so `[a-z0-9]` then `[a-z0-9_-]`, 64 at most.
pub fn check_pack_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a pack name: use 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        ))
    }
}

/// Why `name` cannot be a bundle file name, if it cannot.
pub fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.contains('/') || name.contains('\\') || name.contains("..") || name.starts_with('~') {
        return Err("it is a path that could escape the install folder (path traversal)");
    }
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("names are 1 to 64 bytes");
    }
    if name.starts_with('.') {
        return Err("names must not start with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("it has characters other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// Frames `entries` as a bundle file.
pub fn write_archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b'\n');
    for (name, content) in entries {
        out.extend_from_slice(format!("file {name} {}\n", content.len()).as_bytes());
        out.extend_from_slice(content);
        out.push(b'\n');
    }
    out.extend_from_slice(b"end\n");
    out
}

/// Unframes a bundle file, refusing bad names, duplicates, truncation and trailing bytes.
pub fn read_archive(bytes: &[u8], origin: &str) -> Result<Vec<(String, Vec<u8>)>, MarketError> {
    let bad = |message: String| MarketError::Bundle { bundle: origin.to_string(), message };
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(bad(format!("is larger than {MAX_BUNDLE_BYTES} bytes")));
    }
    let mut rest = bytes;
    let line = |rest: &mut &[u8], what: &str| -> Result<String, MarketError> {
        let end = rest.iter().take(256).position(|&b| b == b'\n').ok_or_else(|| {
            bad(format!("is truncated or not a bundle: expected {what} at byte {}", bytes.len() - rest.len()))
        })?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        *rest = &rest[end + 1..];
        Ok(text)
    };
    let magic = line(&mut rest, "the header")?;
    if magic != MAGIC {
        return Err(bad(format!("is not a rule-pack bundle (first line {magic:?}, expected {MAGIC:?})")));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let header = line(&mut rest, "a file header or the end marker")?;
        if header == "end" {
            break;
        }
        let mut parts = header.splitn(3, ' ');
        let (Some("file"), Some(name), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("bad file header {header:?}")));
        };
        check_file_name(name).map_err(|reason| MarketError::FileName {
            bundle: origin.to_string(),
            name: name.to_string(),
            reason,
        })?;
        let size: usize = size.parse().map_err(|_| bad(format!("file {name}: bad size {size:?}")))?;
        if rest.len() <= size {
            return Err(bad(format!(
                "is truncated: file {name} declares {size} bytes but only {} remain",
                rest.len().saturating_sub(1).min(size)
            )));
        }
        if rest[size] != b'\n' {
            return Err(bad(format!("file {name}: missing separator after {size} bytes")));
        }
        if entries.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("file {name} appears twice")));
        }
        if entries.len() == MAX_FILES {
            return Err(bad(format!("has more than {MAX_FILES} files")));
        }
        entries.push((name.to_string(), rest[..size].to_vec()));
        rest = &rest[size + 1..];
    }
    if !rest.is_empty() {
        return Err(bad(format!("has {} bytes after the end marker", rest.len())));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(version: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(component (instance $e) (export "safety:rules/rule-pack@{version}" (instance $e)))"#
        ))
        .unwrap()
    }

    fn info() -> PackInfo {
        toml::from_str(
            "name = \"tiny\"\nversion = \"1.0.0\"\ndescription = \"d\"\nauthor = \"a\"\nlicense = \"MIT\"\n\
             categories = [\"tone\"]\n[prompts]\nq = \"Is it rude?\"\n",
        )
        .unwrap()
    }

    fn bundle() -> Bundle {
        Bundle::assemble(&info(), component("0.1.0"), vec!["r".into()], None).unwrap()
    }

    #[test]
    fn bundles_round_trip_and_keep_the_signed_bytes() {
        let key = SecretKey::from_seed([5; 32]);
        let mut b = bundle();
        b.sign(&key);
        let bytes = b.to_bytes();
        let back = Bundle::parse(&bytes, "t.rpack").unwrap();
        assert_eq!(back.manifest, b.manifest);
        assert_eq!(back.manifest.abi, "0.1.0");
        assert_eq!(back.manifest.prompts["q"], "Is it rude?");
        assert_eq!(back.verify_signature().unwrap(), Some(key.public()));
        assert_eq!(back.to_bytes(), bytes, "byte-for-byte stable");
        assert_eq!(b.file_name(), "tiny-1.0.0.rpack");
    }

    #[test]
    fn framing_errors_are_named() {
        let bytes = bundle().to_bytes();
        for cut in [10, bytes.len() / 2, bytes.len() - 2] {
            let err = read_archive(&bytes[..cut], "b").unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut {cut}: {err}");
        }
        let huge = format!("{MAGIC}\nfile a {}\nx", usize::MAX);
        assert!(read_archive(huge.as_bytes(), "b").unwrap_err().to_string().contains("truncated"));
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"x");
        assert!(read_archive(&padded, "b").unwrap_err().to_string().contains("after the end marker"));
        let evil = write_archive(&[("../../.bashrc", b"rm -rf ~")]);
        let err = read_archive(&evil, "b").unwrap_err().to_string();
        assert!(err.contains("\"../../.bashrc\"") && err.contains("path traversal"), "{err}");
        for name in ["/etc/passwd", "a\\b", ".hidden", "sp ace", ""] {
            assert!(check_file_name(name).is_err(), "{name:?}");
        }
        let twice = write_archive(&[("a", b"1"), ("a", b"2")]);
        assert!(read_archive(&twice, "b").unwrap_err().to_string().contains("twice"));
        assert!(read_archive(b"PK\x03\x04zip\n", "b").unwrap_err().to_string().contains("not a rule-pack bundle"));
    }

    #[test]
    fn manifests_are_checked_field_by_field() {
        let mut i = info();
        i.version = "one".into();
        let err = Bundle::assemble(&i, component("0.1.0"), vec!["r".into()], None).unwrap_err().to_string();
        assert!(err.contains("manifest version \"one\""), "{err}");
        let mut i = info();
        i.name = "../x".into();
        assert!(Bundle::assemble(&i, component("0.1.0"), vec!["r".into()], None).is_err());
        let mut i = info();
        i.capabilities = vec!["network".into()];
        let err = Bundle::assemble(&i, component("0.1.0"), vec!["r".into()], None).unwrap_err().to_string();
        assert!(err.contains("\"network\" is never granted"), "{err}");
        let err = Bundle::assemble(&info(), component("0.2.0"), vec!["r".into()], None).unwrap_err().to_string();
        assert!(err.contains("0.2.0") && err.contains("pack.wasm"), "{err}");
        let err = Bundle::assemble(&info(), component("0.1.0"), vec![], None).unwrap_err().to_string();
        assert!(err.contains("at least one rule"), "{err}");
    }

    #[test]
    fn extra_missing_and_changed_files_are_refused() {
        let b = bundle();
        let manifest = b.manifest_bytes().to_vec();
        let wasm = b.wasm().to_vec();
        let extra = write_archive(&[(MANIFEST, &manifest), (WASM, &wasm), ("run.sh", b"x")]);
        let err = Bundle::parse(&extra, "b").unwrap_err().to_string();
        assert!(err.contains("run.sh is in the bundle but not in the manifest"), "{err}");
        let missing = write_archive(&[(MANIFEST, &manifest)]);
        assert!(Bundle::parse(&missing, "b").unwrap_err().to_string().contains("pack.wasm, which is missing"));
        let mut changed = wasm.clone();
        changed.push(0);
        let err = Bundle::parse(&write_archive(&[(MANIFEST, &manifest), (WASM, &changed)]), "b").unwrap_err();
        assert!(matches!(err, MarketError::FileHash { ref file, .. } if file == WASM), "{err}");
    }
}
