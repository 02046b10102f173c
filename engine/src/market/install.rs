//! `engine rules add | update | remove`: installing packs from an index, fail closed.
//!
//! Installing a version goes through every check before anything in the job changes:
//!
//! 1. the index entry newest within the semver requirement is chosen; an older version
//!    than the one installed is a downgrade, refused unless asked for;
//! 2. the bundle is downloaded (bounded) and must have the index's size and sha256;
//! 3. the bundle must parse, every file must match the manifest, the manifest must agree
//!    with the index entry, and the component's ABI must be the manifest's;
//! 4. the signature must verify with a key the job trusts (or the job allows unsigned
//!    packs); capabilities the pack needs must be granted with `--grant`;
//! 5. the files are written to a staging folder beside the destination, and the job as
//!    it would be afterwards (rules.toml with the pack pointing at the staged component)
//!    is loaded: the component must export exactly the rules the manifest declares, and
//!    no rule id may clash with another pack's.
//!
//! Only then is the staging folder renamed to `packs/NAME/VERSION/`, rules.toml rewritten
//! (comments and layout kept) and `rules.lock` updated, each atomically; the previous
//! version's folder is removed last. A failure at any step leaves rules.toml, the lock
//! and the installed files as they were.

use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use super::bundle::{Bundle, CAPABILITIES, Signer, check_file_name};
use super::index::{FetchedIndex, IndexEntry, PackRequest};
use super::lock::{Lock, LockedPack};
use super::trust::MarketConfig;
use super::{MarketError, io, sha256_hex, write_atomic};
use crate::config::Job;
use crate::plugin::{Grants, PluginError, PluginSpec, Registry, RegistryError, Runtime};

/// Options of `rules add` and `rules update`.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    /// Index to use instead of the lock's source or `[market] index`.
    pub index: Option<String>,
    /// Capabilities the user grants (`judge`).
    pub grants: Vec<String>,
    /// Allow installing an older version than the installed one.
    pub allow_downgrade: bool,
}

/// A pack version that was installed.
#[derive(Clone, Debug)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// The version it replaced.
    pub previous: Option<String>,
    /// The installed component.
    pub path: PathBuf,
    pub sha256: String,
    pub signer: Signer,
    pub rules: Vec<String>,
    pub source: String,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.previous {
            Some(previous) if previous != &self.version => {
                write!(f, "updated {} {previous} -> {}", self.name, self.version)?
            }
            _ => write!(f, "installed {} {}", self.name, self.version)?,
        }
        write!(
            f,
            " ({}; rules: {}) into {}, sha256 {}…, pinned in rules.toml and rules.lock",
            self.signer,
            self.rules.join(", "),
            self.path.display(),
            &self.sha256[..12]
        )
    }
}

/// What `rules update` did to one pack.
#[derive(Clone, Debug)]
pub enum UpdateOutcome {
    /// Moved to a newer version; `newer` is a still newer one outside the requirement.
    Updated(Box<Installed>, Option<NewerOutside>),
    UpToDate {
        name: String,
        version: String,
        newer: Option<NewerOutside>,
    },
}

/// A version in the index newer than any the pack's requirement allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewerOutside {
    pub name: String,
    pub version: String,
    pub requirement: String,
}

impl std::fmt::Display for NewerOutside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NewerOutside { name, version, requirement } = self;
        write!(
            f,
            "{name} {version} is in the index but outside the requirement {requirement}; \
             `engine rules update {name}@{version}` moves to it"
        )
    }
}

impl std::fmt::Display for UpdateOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let newer = match self {
            UpdateOutcome::Updated(installed, newer) => {
                installed.fmt(f)?;
                newer
            }
            UpdateOutcome::UpToDate { name, version, newer } => {
                write!(f, "{name} {version} is up to date")?;
                newer
            }
        };
        match newer {
            Some(newer) => write!(f, "\n  note: {newer}"),
            None => Ok(()),
        }
    }
}

/// A removed pack.
#[derive(Clone, Debug)]
pub struct Removed {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
}

/// The job's files, read once per command.
struct Context {
    config: PathBuf,
    market: MarketConfig,
    lock: Lock,
    doc: DocumentMut,
}

impl Context {
    fn load(config: &Path) -> Result<Context, MarketError> {
        let market = MarketConfig::load(config)?;
        let lock = Lock::load(&market.lock_path)?;
        let text = crate::fsio::read_to_string(config).map_err(io(config))?;
        let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| MarketError::Invalid {
            file: config.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Context { config: config.to_path_buf(), market, lock, doc })
    }

    fn usage(&self, message: String) -> MarketError {
        MarketError::Usage { config: self.config.clone(), message }
    }
}

/// `engine rules add NAME[@REQ]`: installs the newest version matching the requirement.
pub fn add(config: &Path, request: &PackRequest, opts: &AddOptions) -> Result<Installed, MarketError> {
    let mut cx = Context::load(config)?;
    let installed = cx.lock.get(&request.name).cloned();
    if installed.is_none() && find_pack(&cx.doc, &request.name).is_some() {
        return Err(cx.usage(format!(
            "already has a [[pack]] named {:?} that was not installed from an index; remove it from rules.toml \
             first (or install under another name)",
            request.name
        )));
    }
    let location = cx.market.index_location(opts.index.as_deref())?;
    let index = FetchedIndex::fetch(&location)?;
    let entry = index.resolve(request)?.clone();
    if let Some(locked) = &installed {
        check_unchanged(locked, &entry)?;
        check_downgrade(&locked.name, &locked.version, &entry.version, opts.allow_downgrade)?;
    }
    install(&mut cx, &index, &entry, &request.req, opts)
}

/// `engine rules update [NAME[@REQ]]`: moves each installed pack (or the one named) to
/// the newest version its requirement allows. Stops at the first failure; packs updated
/// before it stay updated, the failing one stays as it was.
pub fn update(config: &Path, only: Option<&PackRequest>, opts: &AddOptions) -> Result<Vec<UpdateOutcome>, MarketError> {
    let mut cx = Context::load(config)?;
    let targets: Vec<(LockedPack, VersionReq)> = match only {
        Some(request) => {
            let locked = cx.lock.get(&request.name).cloned().ok_or_else(|| not_installed(&cx, &request.name))?;
            let req = if request.req == VersionReq::STAR { parse_req(&cx, &locked)? } else { request.req.clone() };
            vec![(locked, req)]
        }
        None => {
            cx.lock.packs.iter().map(|l| Ok((l.clone(), parse_req(&cx, l)?))).collect::<Result<_, MarketError>>()?
        }
    };
    let mut outcomes = Vec::new();
    for (locked, req) in targets {
        let location = match &opts.index {
            Some(index) => index.clone(),
            None => locked.source.clone(),
        };
        let index = FetchedIndex::fetch(&location)?;
        let entry = index.resolve(&PackRequest { name: locked.name.clone(), req: req.clone() })?.clone();
        let newer = index
            .newest(&locked.name)
            .filter(|v| entry.semver().is_some_and(|e| *v > e))
            .map(|v| NewerOutside { name: locked.name.clone(), version: v.to_string(), requirement: req.to_string() });
        if entry.version == locked.version && entry.sha256 == locked.bundle_sha256 {
            let (name, version) = (locked.name.clone(), locked.version.clone());
            outcomes.push(UpdateOutcome::UpToDate { name, version, newer });
            continue;
        }
        check_unchanged(&locked, &entry)?;
        check_downgrade(&locked.name, &locked.version, &entry.version, opts.allow_downgrade)?;
        outcomes.push(UpdateOutcome::Updated(Box::new(install(&mut cx, &index, &entry, &req, opts)?), newer));
    }
    Ok(outcomes)
}

/// `engine rules remove NAME`: removes an installed pack from rules.toml, the lock and
/// the packs folder.
pub fn remove(config: &Path, name: &str) -> Result<Removed, MarketError> {
    let mut cx = Context::load(config)?;
    let locked = cx.lock.get(name).cloned().ok_or_else(|| not_installed(&cx, name))?;
    if let Some(i) = find_pack(&cx.doc, name) {
        pack_tables(&mut cx.doc).remove(i);
    }
    write_atomic(&cx.config, cx.doc.to_string().as_bytes())?;
    cx.lock.packs.retain(|p| p.name != name);
    cx.lock.save(&cx.market.lock_path)?;
    let dir = cx.market.packs_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    Ok(Removed { name: name.to_string(), version: locked.version, dir })
}

fn not_installed(cx: &Context, name: &str) -> MarketError {
    let installed: Vec<&str> = cx.lock.packs.iter().map(|p| p.name.as_str()).collect();
    cx.usage(format!(
        "pack {name:?} was not installed from an index (it is not in {}; installed: {}); a pack pinned by hand \
         is removed by editing rules.toml",
        cx.market.lock_path.display(),
        if installed.is_empty() { "none".into() } else { installed.join(", ") }
    ))
}

fn parse_req(cx: &Context, locked: &LockedPack) -> Result<VersionReq, MarketError> {
    VersionReq::parse(&locked.requirement).map_err(|e| MarketError::Lock {
        path: cx.market.lock_path.clone(),
        message: format!("pack {}: requirement {:?}: {e}", locked.name, locked.requirement),
    })
}

/// A published version never changes: an index serving other bytes for the installed
/// version is refused.
fn check_unchanged(locked: &LockedPack, entry: &IndexEntry) -> Result<(), MarketError> {
    if entry.version == locked.version && !entry.sha256.eq_ignore_ascii_case(&locked.bundle_sha256) {
        return Err(MarketError::IndexMismatch {
            pack: format!("{}@{}", locked.name, locked.version),
            message: format!(
                "the index now lists bundle sha256 {} for the installed version, which was installed from a bundle                  with sha256 {}; a published version must never change (run `engine rules remove {}` first to                  accept the new bytes)",
                entry.sha256, locked.bundle_sha256, locked.name
            ),
        });
    }
    Ok(())
}

fn check_downgrade(name: &str, installed: &str, requested: &str, allow: bool) -> Result<(), MarketError> {
    let (Ok(old), Ok(new)) = (Version::parse(installed), Version::parse(requested)) else {
        return Err(MarketError::Other(format!(
            "pack {name}: cannot compare versions {installed:?} and {requested:?}"
        )));
    };
    if new < old && !allow {
        return Err(MarketError::Downgrade {
            name: name.to_string(),
            installed: installed.to_string(),
            requested: requested.to_string(),
        });
    }
    Ok(())
}

/// Verifies `entry`'s bundle and installs it; see the module docs for the steps.
fn install(
    cx: &mut Context,
    index: &FetchedIndex,
    entry: &IndexEntry,
    req: &VersionReq,
    opts: &AddOptions,
) -> Result<Installed, MarketError> {
    let name = entry.name.clone();
    let pack_id = format!("{}@{}", entry.name, entry.version);

    // 2-4: download, integrity, agreement with the index, signature, capabilities.
    let bytes = index.download(entry)?;
    let url = index.bundle_location(entry);
    let bundle = Bundle::parse(&bytes, &url)?;
    let m = &bundle.manifest;
    if m.name != entry.name || m.version != entry.version {
        return Err(MarketError::IndexMismatch {
            pack: pack_id,
            message: format!(
                "the index lists {url} as {} {} but the bundle is {} {}",
                entry.name, entry.version, m.name, m.version
            ),
        });
    }
    // The rules the index advertises (what `rules search` showed) are the signed manifest's.
    let (mut listed, mut signed) = (entry.rules.clone(), m.rules.clone());
    listed.sort();
    signed.sort();
    if listed != signed {
        return Err(MarketError::IndexMismatch {
            pack: pack_id,
            message: format!(
                "the index lists the rules [{}] but the signed manifest of {url} declares [{}]; \
                 refusing it (the index is wrong or was tampered with; ask its publisher to republish it)",
                listed.join(", "),
                signed.join(", ")
            ),
        });
    }
    let bundle_key = bundle.signed_with().map(|k| k.to_string());
    if entry.key.is_some() && entry.key != bundle_key {
        return Err(MarketError::IndexMismatch {
            pack: pack_id,
            message: format!(
                "the index says it is signed with {} but the bundle {}",
                entry.key.as_deref().unwrap_or_default(),
                bundle_key.map_or("is unsigned".into(), |k| format!("is signed with {k}"))
            ),
        });
    }
    let signer = bundle.verify(&cx.market.trust)?;
    let existing = find_pack(&cx.doc, &name);
    let mut grants: Vec<String> = existing
        .and_then(|i| pack_tables(&mut cx.doc).get(i).and_then(|t| t.get("grants")).and_then(Item::as_array).cloned())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    for capability in &m.capabilities {
        if !grants.contains(capability) {
            if !opts.grants.contains(capability) {
                return Err(MarketError::GrantRequired {
                    pack: pack_id,
                    capability: capability.clone(),
                    why: "the pack's rules ask the judge model questions",
                });
            }
            grants.push(capability.clone());
        }
    }
    if let Some(unknown) = opts.grants.iter().find(|g| !CAPABILITIES.contains(&g.as_str())) {
        return Err(cx.usage(format!("--grant {unknown}: unknown capability; only {} exists", CAPABILITIES.join(", "))));
    }

    // 5: stage beside the destination, then load the job as it would be.
    let version = m.version().to_string();
    let pack_dir = cx.market.packs_dir.join(&name);
    // Folders this install creates are removed again if it fails (when left empty).
    let _packs_guard = RemoveIfEmpty(cx.market.packs_dir.clone());
    let _pack_guard = RemoveIfEmpty(pack_dir.clone());
    std::fs::create_dir_all(&pack_dir).map_err(io(&pack_dir))?;
    let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(&pack_dir).map_err(io(&pack_dir))?;
    for (file, content) in bundle.install_files() {
        check_file_name(&file).map_err(|reason| MarketError::FileName {
            bundle: url.clone(),
            name: file.clone(),
            reason,
        })?;
        let path = staging.path().join(&file);
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    let staged_wasm = staging.path().join(&m.wasm);
    let wasm_sha256 = sha256_hex(bundle.wasm());
    let mut candidate = cx.doc.clone();
    set_pack(&mut candidate, &name, &staged_wasm.display().to_string(), &wasm_sha256, &grants, "");
    let job = job_from_text(&cx.config, &candidate.to_string())?;
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None)?;
    let exported = match job.packs.iter().any(|p| p.spec.name == name) {
        true => {
            let registry = Registry::load(&runtime, &job.packs, &cx.config).map_err(|e| clash(e, &job, &name))?;
            registry.plugins.iter().find(|p| p.name == name).expect("the pack was loaded").rules.clone()
        }
        false => {
            let spec = PluginSpec {
                name: name.clone(),
                path: staged_wasm.clone(),
                sha256: Some(wasm_sha256.clone()),
                config: Vec::new(),
                grants: Grants { judge: grants.iter().any(|g| g == "judge") },
            };
            runtime.load(&spec)?.rules.clone()
        }
    };
    let mut declared = m.rules.clone();
    declared.sort();
    let mut actual: Vec<String> = exported.iter().map(|r| r.id.clone()).collect();
    actual.sort();
    if declared != actual {
        return Err(MarketError::Bundle {
            bundle: url,
            message: format!(
                "the manifest declares rules [{}] but {} exports [{}]",
                declared.join(", "),
                m.wasm,
                actual.join(", ")
            ),
        });
    }

    // Commit: move the files into place, then rules.toml, then the lock.
    let final_dir = pack_dir.join(&version);
    let aside = pack_dir.join(format!(".old-{}", std::process::id()));
    let replaced = final_dir.exists();
    if replaced {
        std::fs::rename(&final_dir, &aside).map_err(io(&final_dir))?;
    }
    if let Err(source) = std::fs::rename(staging.path(), &final_dir) {
        if replaced {
            let _ = std::fs::rename(&aside, &final_dir);
        }
        return Err(MarketError::Io { path: final_dir, source });
    }
    if replaced {
        let _ = std::fs::remove_dir_all(&aside);
    }
    let rel_path = format!("{}/{name}/{version}/{}", cx.market.packs_dir_text.trim_end_matches('/'), m.wasm);
    let comment = format!(
        "\n# Installed by `engine rules add` from {}; {}. Pinned in rules.lock: change it with\n\
         # `engine rules update {name}` or `engine rules remove {name}`.\n",
        index.location, signer
    );
    set_pack(&mut cx.doc, &name, &rel_path, &wasm_sha256, &grants, &comment);
    write_atomic(&cx.config, cx.doc.to_string().as_bytes())?;
    let previous = cx.lock.get(&name).map(|p| p.version.clone());
    cx.lock.upsert(LockedPack {
        name: name.clone(),
        version: version.clone(),
        requirement: req.to_string(),
        path: rel_path,
        sha256: wasm_sha256.clone(),
        bundle_sha256: sha256_hex(&bytes),
        source: index.location.clone(),
        key: signer.key().map(|k| k.to_string()),
        rules: m.rules.clone(),
    });
    cx.lock.save(&cx.market.lock_path)?;
    if let Some(previous) = previous.as_ref().filter(|p| **p != version) {
        let _ = std::fs::remove_dir_all(pack_dir.join(previous));
    }
    Ok(Installed {
        name,
        version,
        previous,
        path: final_dir.join(&m.wasm),
        sha256: wasm_sha256,
        signer,
        rules: m.rules.clone(),
        source: index.location.clone(),
    })
}

/// Removes a folder when dropped, if it is empty.
struct RemoveIfEmpty(PathBuf);

impl Drop for RemoveIfEmpty {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Turns "rule id exported twice" into which pack already has it.
fn clash(error: RegistryError, job: &Job, name: &str) -> MarketError {
    if let RegistryError::Plugin(PluginError::DuplicateRule { id, first, second }) = &error {
        let pack_at = |path: &PathBuf| job.packs.iter().find(|p| &p.spec.path == path).map(|p| p.spec.name.clone());
        let (a, b) = (pack_at(first), pack_at(second));
        let other = if a.as_deref() == Some(name) { b } else { a };
        if let Some(other) = other {
            return MarketError::DuplicateRule { pack: name.to_string(), rule: id.clone(), other };
        }
    }
    error.into()
}

/// Validates rules.toml text as a job. The `[market]` table is read by this module, so
/// it is taken out first: this works whether or not `config` knows the table.
pub fn job_from_text(config: &Path, text: &str) -> Result<Job, MarketError> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| MarketError::Invalid {
        file: config.display().to_string(),
        message: e.to_string(),
    })?;
    if doc.remove("market").is_none() {
        return Ok(Job::parse(config, text)?);
    }
    Ok(Job::parse(config, &doc.to_string())?)
}

/// Reads rules.toml as a job (see [`job_from_text`]).
pub fn load_job(config: &Path) -> Result<Job, MarketError> {
    let text = crate::fsio::read_to_string(config).map_err(io(config))?;
    job_from_text(config, &text)
}

fn pack_tables(doc: &mut DocumentMut) -> &mut ArrayOfTables {
    if !doc.get("pack").is_some_and(Item::is_array_of_tables) {
        doc.insert("pack", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    doc["pack"].as_array_of_tables_mut().expect("just made sure")
}

fn find_pack(doc: &DocumentMut, name: &str) -> Option<usize> {
    doc.get("pack")?.as_array_of_tables()?.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

/// Points the `[[pack]]` named `name` at `path`/`sha256` (adding it, with `comment`
/// above, if missing); its other keys (config, disable, enabled) are kept.
fn set_pack(doc: &mut DocumentMut, name: &str, path: &str, sha256: &str, grants: &[String], comment: &str) {
    let existing = find_pack(doc, name);
    let tables = pack_tables(doc);
    let table = match existing {
        Some(i) => tables.get_mut(i).expect("found above"),
        None => {
            let mut table = Table::new();
            table["name"] = value(name);
            table.decor_mut().set_prefix(comment);
            tables.push(table);
            tables.get_mut(tables.len() - 1).expect("just pushed")
        }
    };
    table["path"] = value(path);
    table["sha256"] = value(sha256);
    if !grants.is_empty() {
        table["grants"] = value(grants.iter().map(String::as_str).collect::<Array>());
    }
}
