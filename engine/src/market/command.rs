//! The marketplace's subcommands: `engine pack ...` and `engine rules
//! search|add|update|remove|calibrate`. Parsing and printing only; the work is in the
//! library functions of [`crate::market`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::bundle::Bundle;
use super::index::{self, FetchedIndex, PackRequest};
use super::install::{self, AddOptions};
use super::keys::{PublicKey, SecretKey};
use super::trust::{MarketConfig, TrustPolicy, TrustedKey};
use super::{calibrate, write_atomic};

/// `engine pack`: make, sign, check and publish rule-pack bundles.
#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// Generate a publisher key pair: KEY (secret, readable by you only) and KEY.pub.
    Keygen {
        /// Where to write the secret key (the public key goes to this path + .pub).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Bundle a component and its manifest into NAME-VERSION.rpack (unsigned).
    ///
    /// The manifest (TOML) gives name, version (semver), description, categories,
    /// author, license, capabilities and judge prompts; the ABI version, the rule ids
    /// and the file hashes are measured from the component.
    Build {
        /// The pack's component (.wasm).
        #[arg(long)]
        wasm: PathBuf,
        /// The pack's manifest (TOML).
        #[arg(long)]
        manifest: PathBuf,
        /// Output file (default: NAME-VERSION.rpack in the current folder).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// A calibration card (JSON from `engine rules calibrate --out`) to include.
        #[arg(long)]
        card: Option<PathBuf>,
    },
    /// Sign a bundle's manifest with a secret key (replacing any earlier signature).
    Sign {
        /// The secret key file from `engine pack keygen`.
        #[arg(long, short)]
        key: PathBuf,
        /// The bundle to sign, in place.
        bundle: PathBuf,
    },
    /// Check a bundle: framing, file names and hashes, manifest, ABI and signature.
    ///
    /// With --trusted-key, the signer must be one of those keys; exit 1 otherwise.
    Verify {
        bundle: PathBuf,
        /// A trusted publisher key (ed25519:HEX, or a KEY.pub file). Repeatable.
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted_keys: Vec<String>,
        /// Accept an unsigned bundle.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Add a bundle to a local index file (created if missing), copying the bundle into
    /// bundles/ beside it. Serve that folder over HTTP, or use it as a path.
    Publish {
        bundle: PathBuf,
        /// The index file (index.json).
        #[arg(long)]
        index: PathBuf,
    },
}

/// `engine rules search|add|update|remove|calibrate`: the marketplace half of `rules`.
#[derive(Debug, Subcommand)]
pub enum MarketRulesCommand {
    /// Packs in the index matching QUERY (name, description, author, category or rule
    /// id), with their calibration cards and whether this job trusts their publisher.
    Search {
        /// Empty lists everything.
        #[arg(default_value = "")]
        query: String,
        /// Index path or http:// URL (default: [market] index in rules.toml).
        #[arg(long)]
        index: Option<String>,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// Install the newest version of NAME matching REQ (semver, e.g. example@0.2 or
    /// example@=0.1.0), verified against the index and the [market] trust policy, and pin
    /// it in rules.toml and rules.lock. Nothing changes if any check fails.
    Add {
        /// NAME[@REQ]
        #[arg(value_name = "NAME[@REQ]")]
        pack: PackRequest,
        #[arg(long)]
        index: Option<String>,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// Grant a capability the pack requires (only `judge` exists).
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
        /// Allow installing an older version than the installed one.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Move installed packs (or the one named) to the newest version their requirement
    /// allows. Downgrades are refused unless --allow-downgrade.
    Update {
        #[arg(value_name = "NAME[@REQ]")]
        pack: Option<PackRequest>,
        /// Index to use instead of the one each pack came from.
        #[arg(long)]
        index: Option<String>,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Remove an installed pack from rules.toml, rules.lock and the packs folder.
    Remove {
        name: String,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// Measure each rule of a pack against gold preferences: agreement (the rule alone
    /// labelling each pair), abstain rate, mean relevance, judge calls per evaluation.
    ///
    /// PACK is a bundle file (the card is written into it; sign it again afterwards) or
    /// the name of a pack of the job.
    Calibrate {
        #[arg(value_name = "PACK")]
        pack: String,
        /// Pairs with gold labels (e.g. chosen/rejected pairs).
        #[arg(long)]
        gold: PathBuf,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// Also put the card into this local index's entry for the pack's version.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Also write the card as JSON here.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j')]
        threads: Option<usize>,
    },
}

/// Runs an `engine pack` command.
pub fn run_pack(command: PackCommand) -> anyhow::Result<ExitCode> {
    match command {
        PackCommand::Keygen { out } => {
            let key = SecretKey::generate()?;
            let public = key.write_new(&out)?;
            crate::outln!("{}", key.public())?;
            eprintln!("wrote the secret key to {} and the public key to {}", out.display(), public.display());
            eprintln!("keep {} private; give buyers the public key above", out.display());
        }
        PackCommand::Build { wasm, manifest, out, card } => {
            let bundle = Bundle::build(&wasm, &manifest, card.as_deref())?;
            let out = out.unwrap_or_else(|| PathBuf::from(bundle.file_name()));
            write_atomic(&out, &bundle.to_bytes())?;
            eprintln!(
                "built {} {} (ABI {}, rules: {}), unsigned; sign it with `engine pack sign --key KEY {}`",
                bundle.manifest.name,
                bundle.manifest.version,
                bundle.abi,
                bundle.manifest.rules.join(", "),
                out.display()
            );
            crate::outln!("{}", out.display())?;
        }
        PackCommand::Sign { key, bundle: path } => {
            let key = SecretKey::read(&key)?;
            let mut bundle = Bundle::read(&path)?;
            bundle.sign(&key);
            write_atomic(&path, &bundle.to_bytes())?;
            crate::outln!("signed {} with {}", path.display(), key.public())?;
        }
        PackCommand::Verify { bundle: path, trusted_keys, allow_unsigned } => {
            let bundle = Bundle::read(&path)?;
            let signer = match (trusted_keys.is_empty(), bundle.verify_signature()?) {
                (true, Some(key)) => super::Signer::Unchecked { key },
                (true, None) if allow_unsigned => super::Signer::Unsigned,
                (true, None) => {
                    crate::outln!("{}: intact but UNSIGNED", path.display())?;
                    return Ok(ExitCode::FAILURE);
                }
                (false, _) => {
                    let trusted = trusted_keys
                        .iter()
                        .map(|k| Ok(TrustedKey { name: k.clone(), key: PublicKey::from_arg(k)? }))
                        .collect::<Result<Vec<_>, super::MarketError>>()?;
                    bundle.verify(&TrustPolicy { trusted, allow_unsigned })?
                }
            };
            let m = &bundle.manifest;
            crate::outln!(
                "ok    {} {} (ABI {}, {} files, rules: {}{}): {signer}",
                m.name,
                m.version,
                m.abi,
                m.files.len(),
                m.rules.join(", "),
                if bundle.card.is_some() { "; with calibration card" } else { "" }
            )?;
        }
        PackCommand::Publish { bundle, index } => {
            let entry = index::publish(&bundle, &index)?;
            crate::outln!(
                "published {} {} in {} (bundle {}, sha256 {}…, {})",
                entry.name,
                entry.version,
                index.display(),
                entry.bundle,
                &entry.sha256[..12],
                entry.key.as_deref().map_or("unsigned".to_string(), |k| format!("signed with {k}"))
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an `engine rules search|add|update|remove|calibrate` command.
pub fn run_rules(command: MarketRulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        MarketRulesCommand::Search { query, index, config } => {
            let market = market_or_default(&config)?;
            let fetched = FetchedIndex::fetch(&market.index_location(index.as_deref())?)?;
            crate::outln!("{}", index::render_search(&fetched.search(&query), &market.trust))?;
        }
        MarketRulesCommand::Add { pack, index, config, grants, allow_downgrade } => {
            let installed = install::add(&config, &pack, &AddOptions { index, grants, allow_downgrade })?;
            crate::outln!("{installed}")?;
        }
        MarketRulesCommand::Update { pack, index, config, grants, allow_downgrade } => {
            for outcome in install::update(&config, pack.as_ref(), &AddOptions { index, grants, allow_downgrade })? {
                crate::outln!("{outcome}")?;
            }
        }
        MarketRulesCommand::Remove { name, config } => {
            let removed = install::remove(&config, &name)?;
            crate::outln!("removed {} {} (and {})", removed.name, removed.version, removed.dir.display())?;
        }
        MarketRulesCommand::Calibrate { pack, gold, config, index, out, threads } => {
            let report = calibrate::calibrate(&pack, &gold, &config, index.as_deref(), threads)?;
            crate::out!("{}", report.card.render())?;
            if let Some((bundle, dropped)) = &report.bundle {
                eprintln!("wrote the card into {}", bundle.display());
                if *dropped {
                    eprintln!(
                        "its signature no longer applies and was removed: sign it again with \
                         `engine pack sign --key KEY {}`",
                        bundle.display()
                    );
                }
            }
            if let Some(index) = &report.index {
                eprintln!("wrote the card into {}", index.display());
            }
            if let Some(out) = out {
                write_atomic(&out, &serde_json::to_vec_pretty(&report.card)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The job's `[market]`, or the defaults when there is no rules.toml (searching an
/// index needs no job).
fn market_or_default(config: &std::path::Path) -> Result<MarketConfig, super::MarketError> {
    if config.exists() { MarketConfig::load(config) } else { MarketConfig::parse(config, "") }
}
