//! Indexes: a JSON file, at a local path or an `http://` URL, listing published bundles.
//!
//! ```json
//! {
//!   "format": 1,
//!   "packs": [
//!     {
//!       "name": "example", "version": "0.2.0", "abi": "0.1.0",
//!       "description": "…", "categories": ["tone"], "author": "…", "license": "MIT",
//!       "capabilities": [], "rules": ["no-shouting"],
//!       "bundle": "bundles/example-0.2.0.rpack",
//!       "sha256": "…", "size": 103500,
//!       "key": "ed25519:…",
//!       "calibration": { "pack": "example", "rules": [ … ] }
//!     }
//!   ]
//! }
//! ```
//!
//! `bundle` is relative to the index (or an absolute URL). The index is a catalogue, not
//! an authority: the engine checks the downloaded bundle's size and sha256 against it (so
//! a truncated or swapped download is refused), but trust comes only from the bundle's
//! signature and the job's trust policy, and the manifest inside the bundle must agree
//! with the entry (name, version, key). The calibration card in an entry is the index's
//! claim; the card inside a signed bundle is covered by the publisher's signature.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use super::bundle::{Bundle, MAX_BUNDLE_BYTES};
use super::calibrate::CalibrationCard;
use super::trust::TrustPolicy;
use super::{MarketError, io, sha256_hex, write_atomic};

/// Largest index accepted.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;
/// Deadline of one download.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// An index file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    #[serde(default)]
    pub packs: Vec<IndexEntry>,
}

/// One published version of a pack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub abi: String,
    pub description: String,
    #[serde(default)]
    pub categories: Vec<String>,
    pub author: String,
    pub license: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub rules: Vec<String>,
    /// Where the bundle is: relative to the index, or an absolute URL.
    pub bundle: String,
    /// sha256 of the bundle file.
    pub sha256: String,
    /// Size of the bundle file in bytes.
    pub size: u64,
    /// The publisher key the bundle is signed with, if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationCard>,
}

impl IndexEntry {
    /// The entry describing `bundle`, stored at `location` (relative to the index).
    pub fn for_bundle(bundle: &Bundle, location: &str, bytes: &[u8]) -> IndexEntry {
        let m = &bundle.manifest;
        IndexEntry {
            name: m.name.clone(),
            version: m.version.clone(),
            abi: m.abi.clone(),
            description: m.description.clone(),
            categories: m.categories.clone(),
            author: m.author.clone(),
            license: m.license.clone(),
            capabilities: m.capabilities.clone(),
            rules: m.rules.clone(),
            bundle: location.to_string(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
            key: bundle.signed_with().map(|k| k.to_string()),
            calibration: bundle.card.clone(),
        }
    }

    pub fn semver(&self) -> Option<Version> {
        Version::parse(&self.version).ok()
    }

    fn matches(&self, query: &str) -> bool {
        let q = query.to_lowercase();
        q.is_empty()
            || [&self.name, &self.description, &self.author]
                .into_iter()
                .chain(&self.categories)
                .chain(&self.rules)
                .any(|field| field.to_lowercase().contains(&q))
    }
}

/// `NAME[@REQ]`: a pack and a semver requirement (`example`, `example@0.2`,
/// `example@=0.1.0`, `example@>=0.1, <0.3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRequest {
    pub name: String,
    pub req: VersionReq,
}

impl FromStr for PackRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<PackRequest, String> {
        let (name, req) = match s.split_once('@') {
            Some((name, req)) => {
                (name, VersionReq::parse(req).map_err(|e| format!("{req:?} is not a semver requirement: {e}"))?)
            }
            None => (s, VersionReq::STAR),
        };
        super::bundle::check_pack_name(name)?;
        Ok(PackRequest { name: name.to_string(), req })
    }
}

impl std::fmt::Display for PackRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.req == VersionReq::STAR { f.write_str(&self.name) } else { write!(f, "{}@{}", self.name, self.req) }
    }
}

/// An index as fetched, and where from.
#[derive(Clone, Debug)]
pub struct FetchedIndex {
    pub index: Index,
    /// The location given (path or URL), for messages and the lock.
    pub location: String,
}

impl FetchedIndex {
    /// Reads an index from a local path or an `http://` URL.
    pub fn fetch(location: &str) -> Result<FetchedIndex, MarketError> {
        let bytes = get(location, MAX_INDEX_BYTES)?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| MarketError::Invalid { file: location.to_string(), message: format!("not an index: {e}") })?;
        if index.format != 1 {
            return Err(MarketError::Invalid {
                file: location.to_string(),
                message: format!("index format {} is not supported (this engine reads format 1)", index.format),
            });
        }
        Ok(FetchedIndex { index, location: location.to_string() })
    }

    /// The newest version of `request.name` matching `request.req`.
    pub fn resolve(&self, request: &PackRequest) -> Result<&IndexEntry, MarketError> {
        let versions: Vec<(&IndexEntry, Version)> = self
            .index
            .packs
            .iter()
            .filter(|e| e.name == request.name)
            .filter_map(|e| e.semver().map(|v| (e, v)))
            .collect();
        if versions.is_empty() {
            let listed: Vec<&str> =
                self.index.packs.iter().filter(|e| e.name == request.name).map(|e| e.version.as_str()).collect();
            if !listed.is_empty() {
                return Err(MarketError::NoValidVersion {
                    index: self.location.clone(),
                    name: request.name.clone(),
                    versions: listed.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "),
                });
            }
            let similar = self
                .names()
                .into_iter()
                .filter(|n| n.contains(&request.name) || request.name.contains(n.as_str()))
                .collect();
            return Err(MarketError::UnknownPack { index: self.location.clone(), name: request.name.clone(), similar });
        }
        versions
            .iter()
            .filter(|(_, v)| request.req.matches(v))
            .max_by(|a, b| a.1.cmp(&b.1))
            .map(|(e, _)| *e)
            .ok_or_else(|| {
                let mut available: Vec<&Version> = versions.iter().map(|(_, v)| v).collect();
                available.sort();
                MarketError::NoMatch {
                    index: self.location.clone(),
                    name: request.name.clone(),
                    req: request.req.to_string(),
                    available: available.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
                }
            })
    }

    /// The newest version of `name` in the index, whatever a requirement allows: `engine
    /// rules update` tells the user when it is outside theirs, since an update that stays
    /// within `^0.1` would otherwise hide that 0.2 exists.
    pub fn newest(&self, name: &str) -> Option<Version> {
        self.index.packs.iter().filter(|e| e.name == name).filter_map(IndexEntry::semver).max()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.packs.iter().map(|e| e.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Where the bundle of `entry` is.
    pub fn bundle_location(&self, entry: &IndexEntry) -> String {
        if entry.bundle.contains("://") {
            return entry.bundle.clone();
        }
        if self.location.contains("://") {
            let base = self.location.rsplit_once('/').map_or(self.location.as_str(), |(base, _)| base);
            format!("{base}/{}", entry.bundle.trim_start_matches('/'))
        } else {
            Path::new(&self.location).parent().unwrap_or(Path::new("")).join(&entry.bundle).display().to_string()
        }
    }

    /// Downloads the bundle of `entry` and checks its size and sha256 against the entry.
    ///
    /// An index fetched over the network may name only `http(s)://` bundles or bundles
    /// relative to itself: a `file://` (or other) location would make a remote publisher
    /// read files of this machine, and the size check's error would tell the size of any.
    pub fn download(&self, entry: &IndexEntry) -> Result<Vec<u8>, MarketError> {
        let remote = |l: &str| l.starts_with("http://") || l.starts_with("https://");
        if remote(&self.location) && entry.bundle.contains("://") && !remote(&entry.bundle) {
            return Err(MarketError::BundleScheme {
                index: self.location.clone(),
                pack: format!("{}@{}", entry.name, entry.version),
                bundle: entry.bundle.clone(),
            });
        }
        let url = self.bundle_location(entry);
        let pack = format!("{}@{}", entry.name, entry.version);
        let bytes = get(&url, entry.size.min(MAX_BUNDLE_BYTES))?;
        if bytes.len() as u64 != entry.size {
            return Err(MarketError::Truncated { pack, url, expected: entry.size, actual: bytes.len() as u64 });
        }
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(MarketError::IndexHash { pack, url, expected: entry.sha256.clone(), actual });
        }
        Ok(bytes)
    }

    /// Packs matching `query` (in name, description, author, categories or rule ids):
    /// the newest version of each, with the others listed.
    pub fn search(&self, query: &str) -> Vec<SearchHit> {
        let mut hits: Vec<SearchHit> = Vec::new();
        for name in self.names() {
            let mut versions: Vec<(&IndexEntry, Version)> =
                self.index.packs.iter().filter(|e| e.name == name).filter_map(|e| e.semver().map(|v| (e, v))).collect();
            versions.sort_by(|a, b| b.1.cmp(&a.1));
            let Some((newest, _)) = versions.first() else { continue };
            if versions.iter().any(|(e, _)| e.matches(query)) {
                hits.push(SearchHit {
                    entry: (*newest).clone(),
                    versions: versions.iter().map(|(_, v)| v.to_string()).collect(),
                });
            }
        }
        hits
    }
}

/// One pack found by [`FetchedIndex::search`].
#[derive(Clone, Debug)]
pub struct SearchHit {
    /// The newest version.
    pub entry: IndexEntry,
    /// Every version, newest first.
    pub versions: Vec<String>,
}

/// Search hits as text: one block per pack with its calibration card.
pub fn render_search(hits: &[SearchHit], policy: &TrustPolicy) -> String {
    let mut text = String::new();
    for hit in hits {
        let e = &hit.entry;
        let signer = match e.key.as_deref().map(str::parse::<super::keys::PublicKey>) {
            None => "unsigned".to_string(),
            Some(Err(_)) => "bad key in index".to_string(),
            Some(Ok(key)) => match policy.publisher(&key) {
                Some(t) => format!("signed by {} ({}), trusted", t.name, key.fingerprint()),
                None => format!("signed by {}, NOT trusted by this job", key.fingerprint()),
            },
        };
        let _ = writeln!(text, "{} {}  [{}]  {}", e.name, e.version, e.categories.join(", "), signer);
        let _ = writeln!(text, "  {}", e.description);
        let _ = writeln!(
            text,
            "  by {} ({}), ABI {}, capabilities: {}; versions: {}",
            e.author,
            e.license,
            e.abi,
            if e.capabilities.is_empty() { "none".into() } else { e.capabilities.join(", ") },
            hit.versions.join(", ")
        );
        match &e.calibration {
            Some(card) => {
                for line in card.render().lines() {
                    let _ = writeln!(text, "  {line}");
                }
            }
            None => {
                let _ = writeln!(text, "  rules: {} (no calibration card)", e.rules.join(", "));
            }
        }
        text.push('\n');
    }
    let _ = write!(text, "{} packs", hits.len());
    text
}

/// `engine pack publish`: copies `bundle_path` into `bundles/` beside the local index
/// `index_path` (created if missing) and adds its entry. Publishing a version again with
/// different bytes is refused: a version, once out, never changes.
pub fn publish(bundle_path: &Path, index_path: &Path) -> Result<IndexEntry, MarketError> {
    let bytes = super::read(bundle_path)?;
    let bundle = Bundle::parse(&bytes, &bundle_path.display().to_string())?;
    bundle.verify_signature()?;
    let mut index = if index_path.exists() {
        let text = crate::fsio::read(index_path).map_err(io(index_path))?;
        serde_json::from_slice::<Index>(&text).map_err(|e| MarketError::Invalid {
            file: index_path.display().to_string(),
            message: format!("not an index: {e}"),
        })?
    } else {
        Index { format: 1, packs: Vec::new() }
    };
    let location = format!("bundles/{}", bundle.file_name());
    let entry = IndexEntry::for_bundle(&bundle, &location, &bytes);
    if let Some(old) = index.packs.iter().find(|e| e.name == entry.name && e.version == entry.version)
        && old.sha256 != entry.sha256
    {
        return Err(MarketError::Invalid {
            file: index_path.display().to_string(),
            message: format!(
                "{} {} is already published with sha256 {}; publish a new version instead of changing one",
                entry.name, entry.version, old.sha256
            ),
        });
    }
    let dir: PathBuf = index_path.parent().unwrap_or(Path::new("")).join("bundles");
    write_atomic(&dir.join(bundle.file_name()), &bytes)?;
    index.packs.retain(|e| !(e.name == entry.name && e.version == entry.version));
    index.packs.push(entry.clone());
    index.packs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.semver().cmp(&b.semver())));
    write_index(index_path, &index)?;
    Ok(entry)
}

/// Writes an index file (pretty JSON).
pub fn write_index(path: &Path, index: &Index) -> Result<(), MarketError> {
    let mut text = serde_json::to_string_pretty(index).expect("indexes serialise");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads a local path, or GETs an `http://` URL; more than `limit` bytes is an error.
pub fn get(location: &str, limit: u64) -> Result<Vec<u8>, MarketError> {
    let download = |message: String| MarketError::Download { url: location.to_string(), message };
    if location.starts_with("http://") || location.starts_with("https://") {
        if location.starts_with("https://") && !cfg!(feature = "https") {
            return Err(download("https is not built into this engine; rebuild it with `--features https`".into()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(DOWNLOAD_TIMEOUT))
            .http_status_as_error(true)
            .build()
            .into();
        let mut response = agent.get(location).call().map_err(|e| download(e.to_string()))?;
        let body = response.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => download(format!("larger than {limit} bytes")),
            e => download(e.to_string()),
        })?;
        return Ok(body);
    }
    let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io(path))?;
    if bytes.len() as u64 > limit {
        return Err(download(format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> IndexEntry {
        IndexEntry {
            name: name.into(),
            version: version.into(),
            abi: "0.1.0".into(),
            description: format!("{name} rules"),
            categories: vec!["tone".into()],
            author: "a".into(),
            license: "MIT".into(),
            capabilities: vec![],
            rules: vec![format!("{name}-rule")],
            bundle: format!("bundles/{name}-{version}.rpack"),
            sha256: "0".repeat(64),
            size: 1,
            key: None,
            calibration: None,
        }
    }

    fn index() -> FetchedIndex {
        FetchedIndex {
            index: Index {
                format: 1,
                packs: vec![
                    entry("tone", "0.1.0"),
                    entry("tone", "0.2.1"),
                    entry("tone", "1.0.0-rc.1"),
                    entry("pii", "2.0.0"),
                ],
            },
            location: "http://127.0.0.1:9/idx/index.json".into(),
        }
    }

    #[test]
    fn requests_parse_and_resolve_to_the_newest_match() {
        let r: PackRequest = "tone".parse().unwrap();
        assert_eq!(index().resolve(&r).unwrap().version, "0.2.1", "pre-releases only when asked");
        let r: PackRequest = "tone@=0.1.0".parse().unwrap();
        assert_eq!(index().resolve(&r).unwrap().version, "0.1.0");
        let r: PackRequest = "tone@>=1.0.0-rc.1".parse().unwrap();
        assert_eq!(index().resolve(&r).unwrap().version, "1.0.0-rc.1");
        let err = index().resolve(&"tone@3".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("no version of tone matches ^3") && err.contains("0.1.0, 0.2.1"), "{err}");
        let err = index().resolve(&"ton".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("no pack named \"ton\"") && err.contains("did you mean tone"), "{err}");
        assert!("../x@1".parse::<PackRequest>().is_err());
        assert!("tone@banana".parse::<PackRequest>().unwrap_err().contains("semver"));
    }

    #[test]
    fn bundle_locations_are_relative_to_the_index() {
        let i = index();
        assert_eq!(i.bundle_location(&i.index.packs[0]), "http://127.0.0.1:9/idx/bundles/tone-0.1.0.rpack");
        let local = FetchedIndex { location: "/srv/index.json".into(), ..index() };
        assert_eq!(local.bundle_location(&local.index.packs[0]), "/srv/bundles/tone-0.1.0.rpack");
    }

    #[test]
    fn search_matches_fields_and_shows_the_newest_version() {
        let hits = index().search("TONE RULES");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].entry.version, "1.0.0-rc.1");
        assert_eq!(hits[0].versions, ["1.0.0-rc.1", "0.2.1", "0.1.0"]);
        assert_eq!(index().search("pii-rule").len(), 1);
        assert_eq!(index().search("").len(), 2);
        let text = render_search(&hits, &TrustPolicy::default());
        assert!(text.contains("tone 1.0.0-rc.1") && text.contains("unsigned") && text.ends_with("1 packs"), "{text}");
    }
}
