//! The rule marketplace: signed bundles, an index served over HTTP on 127.0.0.1, install,
//! lock and update, calibration cards, and every way a stranger's pack can be refused.
//!
//! Each refusal test checks the message and that **nothing** changed in the job folder
//! (rules.toml, rules.lock, packs/): installs are fail-closed.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::market::bundle::{self, Bundle, PackInfo, read_archive, write_archive};
use engine::market::command::{MarketRulesCommand, PackCommand, run_pack, run_rules};
use engine::market::index::{self, FetchedIndex, Index};
use engine::market::{self, AddOptions, Lock, MarketError, PackRequest, SecretKey, apply_lock, load_job};
use engine::plugin::{Registry, Runtime};
use engine::score::{self, ScoreOptions, Shard};

use crate::util::{core_pack, example_pack, root, sha256_file};

// ---------------------------------------------------------------------------------------
// A tiny HTTP server: serves a folder on 127.0.0.1, bounded in requests and time, and
// stops when dropped. It can cut one file's body short to simulate a broken download.

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    cut: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn serve(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Mutex::new(None::<String>));
        let (root, flag, cut_path) = (root.to_path_buf(), stop.clone(), cut.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline && served < 200 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let cut = cut_path.lock().unwrap().clone();
                        let _ = respond(stream, &root, cut.as_deref());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Server { port, stop, cut, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// From now on, send only half of `path`'s body (after announcing all of it).
    fn cut_short(&self, path: &str) {
        *self.cut.lock().unwrap() = Some(path.to_string());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(mut stream: TcpStream, root: &Path, cut: Option<&str>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let file = (!path.contains("..")).then(|| std::fs::read(root.join(&path)).ok()).flatten();
    match file {
        Some(body) => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            let send = if cut == Some(path.as_str()) { &body[..body.len() / 2] } else { &body[..] };
            stream.write_all(send)?;
        }
        None => write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
    }
    stream.flush()
}

// ---------------------------------------------------------------------------------------
// A publisher, an index folder served over HTTP, and a buyer's job that trusts the
// publisher.

const NO_SHOUTING: &str = "no-shouting";

fn info(name: &str, version: &str) -> PackInfo {
    PackInfo {
        name: name.into(),
        version: version.into(),
        description: format!("{name}: test pack"),
        categories: vec!["tone".into()],
        author: "Alice Publisher".into(),
        license: "MIT".into(),
        capabilities: vec![],
        prompts: BTreeMap::new(),
    }
}

/// The example pack (one rule, `no-shouting`) as a bundle, unsigned.
fn example_bundle(name: &str, version: &str) -> Bundle {
    Bundle::assemble(&info(name, version), std::fs::read(example_pack()).unwrap(), vec![NO_SHOUTING.into()], None)
        .unwrap()
}

struct Market {
    _dir: tempfile::TempDir,
    /// index.json and bundles/ live here.
    site: PathBuf,
    job: PathBuf,
    server: Server,
    alice: SecretKey,
}

impl Market {
    /// An empty index served over HTTP and a job trusting `alice`.
    fn new() -> Market {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let job = dir.path().join("job");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::create_dir_all(&job).unwrap();
        index::write_index(&site.join("index.json"), &Index { format: 1, packs: vec![] }).unwrap();
        let server = Server::serve(&site);
        let alice = SecretKey::from_seed([0xA1; 32]);
        let market = Market { _dir: dir, site, job, server, alice };
        market.write_config("");
        std::fs::write(market.job.join("pairs.jsonl"), gold_pairs(6)).unwrap();
        market
    }

    fn write_config(&self, market_extra: &str) {
        let text = format!(
            "# the buyer's job\n[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n\n\
             [judge]\nmodel = \"{}\"\n\n\
             [market]\nindex = \"{}\"\n{market_extra}\n[[market.trusted]]\nname = \"alice\"\nkey = \"{}\"\n",
            // A pack granted the judge needs the model to exist (scripts/setup.sh fetches it).
            root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").display(),
            self.server.url("index.json"),
            self.alice.public()
        );
        std::fs::write(self.config(), text).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.job.join("rules.toml")
    }

    /// Signs `bundle` with `key` (if any) and publishes it in the index.
    fn publish(&self, mut bundle: Bundle, key: Option<&SecretKey>) {
        if let Some(key) = key {
            bundle.sign(key);
        }
        let file = self._dir.path().join(bundle.file_name());
        std::fs::write(&file, bundle.to_bytes()).unwrap();
        index::publish(&file, &self.site.join("index.json")).unwrap();
    }

    /// What an attacker controlling the mirror does: replace a published bundle's bytes
    /// and fix up the index's size and hash to match.
    fn replace_bundle(&self, name: &str, version: &str, bytes: &[u8]) {
        let path = self.site.join(format!("bundles/{name}-{version}.rpack"));
        std::fs::write(&path, bytes).unwrap();
        self.edit_index(|i| {
            let e = i.packs.iter_mut().find(|e| e.name == name && e.version == version).unwrap();
            e.sha256 = market::sha256_hex(bytes);
            e.size = bytes.len() as u64;
        });
    }

    fn edit_index(&self, edit: impl FnOnce(&mut Index)) {
        let path = self.site.join("index.json");
        let mut index: Index = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut index);
        index::write_index(&path, &index).unwrap();
    }

    fn published_bytes(&self, name: &str, version: &str) -> Vec<u8> {
        std::fs::read(self.site.join(format!("bundles/{name}-{version}.rpack"))).unwrap()
    }

    fn add(&self, request: &str) -> Result<market::Installed, MarketError> {
        market::add(&self.config(), &request.parse().unwrap(), &AddOptions::default())
    }

    /// Every file of the job (but the compiled-plugin cache), with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                if rel.starts_with(".cache") {
                    continue;
                }
                if path.is_dir() {
                    out.insert(rel, b"<dir>".to_vec());
                    walk(&path, base, out);
                } else {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.job, &self.job, &mut out);
        out
    }

    /// Runs `attempt`, expects it to fail with a message containing every needle, and
    /// checks that the job folder is exactly as before.
    fn refused<T: std::fmt::Debug>(&self, attempt: impl FnOnce() -> Result<T, MarketError>, needles: &[&str]) {
        let before = self.snapshot();
        let err = attempt().expect_err("must be refused").to_string();
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let after = self.snapshot();
        assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "files changed: {err}");
        assert!(before == after, "file contents changed: {err}");
    }
}

/// Gold pairs: the chosen response is calm, the rejected one shouts.
fn gold_pairs(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\":\"g{i}\",\"prompt\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}],\
                 \"chosen\":\"Here is a calm answer to question {i}.\",\
                 \"rejected\":\"NO! I WILL NOT ANSWER QUESTION {i}, STOP ASKING!\"}}\n"
            )
        })
        .collect()
}

/// Scores the job's pairs with its packs: the job as installed really runs.
fn score_job(config: &Path) -> usize {
    let mut job = load_job(config).unwrap();
    apply_lock(&mut job).unwrap();
    let runtime = Runtime::new(job.limits.clone(), job.cache_dir.clone(), None).unwrap();
    let registry = Registry::load(&runtime, &job.packs, config).unwrap();
    let pairs = engine::data::read_pairs(job.input.as_ref().unwrap(), &Default::default()).unwrap().pairs;
    let samples = engine::data::unique_samples(&pairs).samples;
    let out = config.parent().unwrap().join("out/scores.jsonl");
    let opts = ScoreOptions {
        out: out.clone(),
        shard: Shard::ALL,
        threads: Some(1),
        quarantine_after: 0,
        progress: false,
        only: None,
    };
    let summary = score::score(&registry, &samples, &opts).unwrap();
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    summary.rules
}

// ---------------------------------------------------------------------------------------
// The happy path, end to end.

#[test]
fn publish_calibrate_search_add_update_remove_over_http() {
    let m = Market::new();

    // The publisher calibrates the bundle on gold pairs (the card goes into the bundle),
    // signs it and publishes two versions; the core pack is published too.
    let gold = m.job.join("gold.jsonl");
    std::fs::write(&gold, gold_pairs(8)).unwrap();
    for version in ["0.1.0", "0.2.0"] {
        let file = m._dir.path().join(format!("example-{version}.rpack"));
        std::fs::write(&file, example_bundle("example", version).to_bytes()).unwrap();
        let report = market::calibrate::calibrate(file.to_str().unwrap(), &gold, &m.config(), None, Some(1)).unwrap();
        assert_eq!(report.bundle.as_ref().map(|(_, dropped)| *dropped), Some(false));
        let rule = &report.card.rules[0];
        assert_eq!((rule.rule.as_str(), rule.agreement, rule.decided), (NO_SHOUTING, 1.0, 8), "{rule:?}");
        assert_eq!(rule.error_rate, 0.0);
        let mut bundle = Bundle::read(&file).unwrap();
        assert!(bundle.card.is_some());
        bundle.sign(&m.alice);
        std::fs::write(&file, bundle.to_bytes()).unwrap();
        index::publish(&file, &m.site.join("index.json")).unwrap();
    }
    let core = Bundle::build(&core_pack(), &write_info(&m, "core", "1.0.0"), None).unwrap();
    assert!(core.manifest.rules.len() >= 5, "{:?}", core.manifest.rules);
    m.publish(core, Some(&m.alice));

    // The buyer searches: cards and trust are shown before installing.
    let fetched = FetchedIndex::fetch(&m.server.url("index.json")).unwrap();
    let hits = fetched.search("shout");
    assert_eq!(hits.len(), 1);
    let text = index::render_search(&hits, &market::MarketConfig::load(&m.config()).unwrap().trust);
    for needle in ["example 0.2.0", "signed by alice", "trusted", "AGREEMENT", NO_SHOUTING, "1.000", "0.2.0, 0.1.0"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // Add within a requirement: the newest matching version, verified and pinned.
    let installed = m.add("example@0.1").unwrap();
    assert_eq!((installed.version.as_str(), installed.previous.as_deref()), ("0.1.0", None));
    assert!(installed.to_string().contains("signed by alice"), "{installed}");
    let wasm = m.job.join("packs/example/0.1.0/pack.wasm");
    assert_eq!(sha256_file(&wasm), sha256_file(&example_pack()));
    for file in ["manifest.toml", "signature.toml", "calibration.json"] {
        assert!(m.job.join("packs/example/0.1.0").join(file).is_file(), "{file}");
    }
    let config = std::fs::read_to_string(m.config()).unwrap();
    assert!(config.starts_with("# the buyer's job\n"), "comments are kept:\n{config}");
    assert!(config.contains("path = \"packs/example/0.1.0/pack.wasm\""), "{config}");
    assert!(config.contains(&format!("sha256 = \"{}\"", sha256_file(&example_pack()))), "{config}");
    let lock = Lock::load(&m.job.join("rules.lock")).unwrap();
    let locked = lock.get("example").unwrap();
    assert_eq!((locked.version.as_str(), locked.requirement.as_str()), ("0.1.0", "^0.1"));
    assert_eq!(locked.key.as_deref(), Some(m.alice.public().to_string().as_str()));
    assert_eq!(locked.rules, [NO_SHOUTING]);
    m.add("core").unwrap();
    assert!(score_job(&m.config()) > 5, "both packs run");

    // Update within ^0.1 finds nothing newer; update to 0.2 moves and removes 0.1.0.
    let outcomes = market::update(&m.config(), None, &AddOptions::default()).unwrap();
    assert!(outcomes.iter().all(|o| o.to_string().contains("up to date")), "{outcomes:?}");
    // ... but says that 0.2.0 exists outside the requirement, and how to move to it.
    let example = outcomes.iter().map(ToString::to_string).find(|o| o.starts_with("example")).unwrap();
    assert!(
        example.ends_with(
            "note: example 0.2.0 is in the index but outside the requirement ^0.1; \
             `engine rules update example@0.2.0` moves to it"
        ),
        "{example}"
    );
    let outcomes = market::update(&m.config(), Some(&"example@0.2".parse().unwrap()), &AddOptions::default()).unwrap();
    assert_eq!(outcomes[0].to_string().split(" (").next().unwrap(), "updated example 0.1.0 -> 0.2.0");
    assert!(!m.job.join("packs/example/0.1.0").exists());
    assert!(m.job.join("packs/example/0.2.0/pack.wasm").is_file());
    assert_eq!(Lock::load(&m.job.join("rules.lock")).unwrap().get("example").unwrap().version, "0.2.0");
    score_job(&m.config());

    // Going back is a downgrade: refused unless asked for.
    m.refused(|| m.add("example@=0.1.0"), &["example", "0.1.0 is older than the installed 0.2.0", "--allow-downgrade"]);
    let opts = AddOptions { allow_downgrade: true, ..AddOptions::default() };
    let back = market::add(&m.config(), &"example@=0.1.0".parse().unwrap(), &opts).unwrap();
    assert_eq!((back.version.as_str(), back.previous.as_deref()), ("0.1.0", Some("0.2.0")));

    // Remove takes it out of rules.toml, the lock and packs/.
    let removed = market::remove(&m.config(), "example").unwrap();
    assert_eq!(removed.version, "0.1.0");
    assert!(!m.job.join("packs/example").exists());
    assert!(!std::fs::read_to_string(m.config()).unwrap().contains("name = \"example\""));
    assert!(Lock::load(&m.job.join("rules.lock")).unwrap().get("example").is_none());
    let err = market::remove(&m.config(), "example").unwrap_err().to_string();
    assert!(err.contains("was not installed from an index"), "{err}");
    score_job(&m.config());
}

fn write_info(m: &Market, name: &str, version: &str) -> PathBuf {
    let path = m._dir.path().join(format!("{name}-info.toml"));
    std::fs::write(&path, toml::to_string(&info(name, version)).unwrap()).unwrap();
    path
}

#[test]
fn the_publishing_commands_make_a_signed_pack_in_an_index() {
    let m = Market::new();
    let dir = m._dir.path();
    let key = dir.join("keys/publisher");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    run_pack(PackCommand::Keygen { out: key.clone() }).unwrap();
    let public = std::fs::read_to_string(dir.join("keys/publisher.pub")).unwrap();
    let out = dir.join("example-0.3.0.rpack");
    run_pack(PackCommand::Build {
        wasm: example_pack(),
        manifest: write_info(&m, "example", "0.3.0"),
        out: Some(out.clone()),
        card: None,
    })
    .unwrap();
    let verify = |keys: Vec<String>| {
        run_pack(PackCommand::Verify { bundle: out.clone(), trusted_keys: keys, allow_unsigned: false })
    };
    assert_eq!(verify(vec![]).unwrap(), std::process::ExitCode::FAILURE, "unsigned");
    run_pack(PackCommand::Sign { key: key.clone(), bundle: out.clone() }).unwrap();
    assert_eq!(verify(vec![]).unwrap(), std::process::ExitCode::SUCCESS);
    assert_eq!(verify(vec![public.trim().to_string()]).unwrap(), std::process::ExitCode::SUCCESS);
    let err = verify(vec![m.alice.public().to_string()]).unwrap_err().to_string();
    assert!(err.contains("not trust"), "{err}");
    run_pack(PackCommand::Publish { bundle: out.clone(), index: m.site.join("index.json") }).unwrap();

    // The buyer trusts the new key and installs through the rules commands.
    m.write_config(&format!("[[market.trusted]]\nname = \"pub\"\nkey = \"{}\"\n", public.trim()));
    let config = m.config();
    run_rules(MarketRulesCommand::Search { query: "example".into(), index: None, config: config.clone() }).unwrap();
    run_rules(MarketRulesCommand::Add {
        pack: "example".parse().unwrap(),
        index: None,
        config: config.clone(),
        grants: vec![],
        allow_downgrade: false,
    })
    .unwrap();
    assert!(m.job.join("packs/example/0.3.0/pack.wasm").is_file());
    run_rules(MarketRulesCommand::Calibrate {
        pack: "example".into(),
        gold: m.job.join("pairs.jsonl"),
        config: config.clone(),
        index: Some(m.site.join("index.json")),
        out: Some(dir.join("card.json")),
        threads: Some(1),
    })
    .unwrap();
    let index: Index = serde_json::from_slice(&std::fs::read(m.site.join("index.json")).unwrap()).unwrap();
    let card = index.packs[0].calibration.as_ref().expect("the index entry got the card");
    assert_eq!((card.pack.as_str(), card.version.as_str(), card.gold.pairs), ("example", "0.3.0", 6));
    assert!(dir.join("card.json").is_file());
    run_rules(MarketRulesCommand::Remove { name: "example".into(), config }).unwrap();
}

// ---------------------------------------------------------------------------------------
// Refusals: each with a clear message, and nothing installed.

#[test]
fn a_tampered_wasm_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    let entries = read_archive(&m.published_bytes("example", "0.1.0"), "x").unwrap();
    let tampered: Vec<(String, Vec<u8>)> = entries
        .into_iter()
        .map(|(name, mut bytes)| {
            if name == "pack.wasm" {
                let at = bytes.len() - 100;
                bytes[at] ^= 0xff;
            }
            (name, bytes)
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = tampered.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    m.replace_bundle("example", "0.1.0", &write_archive(&refs));
    m.refused(|| m.add("example"), &["example-0.1.0.rpack", "pack.wasm hashes to", "the manifest says", "changed"]);
}

/// Rewrites one file of a published bundle (the mirror is the attacker's).
fn rewrite_file(m: &Market, version: &str, file: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let entries = read_archive(&m.published_bytes("example", version), "x").unwrap();
    let mut edit = Some(edit);
    let entries: Vec<(String, Vec<u8>)> = entries
        .into_iter()
        .map(|(name, bytes)| if name == file { (name, (edit.take().unwrap())(bytes)) } else { (name, bytes) })
        .collect();
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    m.replace_bundle("example", version, &write_archive(&refs));
}

#[test]
fn a_tampered_manifest_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    rewrite_file(&m, "0.1.0", bundle::MANIFEST, |bytes| {
        String::from_utf8(bytes).unwrap().replace("test pack", "totally safe pack").into_bytes()
    });
    m.refused(|| m.add("example"), &["example-0.1.0.rpack", "signature does not verify", "manifest was changed"]);
}

#[test]
fn a_signature_by_another_key_than_it_claims_is_refused() {
    let m = Market::new();
    let mallory = SecretKey::from_seed([0x66; 32]);
    m.publish(example_bundle("example", "0.1.0"), Some(&mallory));
    // The signature file claims alice's (trusted) key, but mallory signed.
    let alice = m.alice.public().to_string();
    rewrite_file(&m, "0.1.0", bundle::SIGNATURE, |bytes| {
        let text = String::from_utf8(bytes).unwrap();
        text.replace(&mallory.public().to_string(), &alice).into_bytes()
    });
    m.edit_index(|i| i.packs[0].key = Some(alice.clone()));
    m.refused(|| m.add("example"), &["signature does not verify with key", &alice]);
}

#[test]
fn a_key_the_job_does_not_trust_is_refused_and_unsigned_needs_permission() {
    let m = Market::new();
    let stranger = SecretKey::from_seed([0x55; 32]);
    m.publish(example_bundle("example", "0.1.0"), Some(&stranger));
    let key = stranger.public().to_string();
    m.refused(|| m.add("example"), &["signed by key", &key, "does not trust", "[[market.trusted]]"]);

    m.publish(example_bundle("plain", "1.0.0"), None);
    m.refused(|| m.add("plain"), &["plain-1.0.0", "not signed", "allow_unsigned = true"]);
    m.write_config("allow_unsigned = true\n");
    let installed = m.add("plain").unwrap();
    assert!(installed.to_string().contains("unsigned (allowed"), "{installed}");
}

#[test]
fn a_downgrade_through_a_rolled_back_index_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.publish(example_bundle("example", "0.2.0"), Some(&m.alice));
    m.add("example").unwrap();
    // The index "loses" 0.2.0: update must not roll back to 0.1.0.
    m.edit_index(|i| i.packs.retain(|e| e.version != "0.2.0"));
    m.refused(
        || market::update(&m.config(), None, &AddOptions::default()),
        &["pack example: 0.1.0 is older than the installed 0.2.0", "downgrades are refused"],
    );
}

#[test]
fn two_packs_claiming_the_same_rule_id_are_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.publish(example_bundle("copycat", "1.0.0"), Some(&m.alice));
    m.add("example").unwrap();
    m.refused(|| m.add("copycat"), &["pack copycat", "rule id \"no-shouting\"", "already provided by pack example"]);
}

#[test]
fn a_manifest_that_misstates_the_rules_is_refused() {
    let m = Market::new();
    let wasm = std::fs::read(example_pack()).unwrap();
    let liar = Bundle::assemble(&info("liar", "1.0.0"), wasm, vec!["harmless-rule".into()], None).unwrap();
    m.publish(liar, Some(&m.alice));
    m.refused(|| m.add("liar"), &["declares rules [harmless-rule]", "exports [no-shouting]"]);
}

#[test]
fn path_traversal_in_bundle_file_names_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    let mut entries = read_archive(&m.published_bytes("example", "0.1.0"), "x").unwrap();
    entries.push(("../../../escaped.sh".into(), b"#!/bin/sh\necho pwned\n".to_vec()));
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    m.replace_bundle("example", "0.1.0", &write_archive(&refs));
    m.refused(|| m.add("example"), &["\"../../../escaped.sh\"", "path traversal"]);
    assert!(!m._dir.path().join("escaped.sh").exists() && !m.job.join("packs").exists());
}

#[test]
fn a_truncated_download_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    // The connection drops half-way through the body.
    m.server.cut_short("bundles/example-0.1.0.rpack");
    m.refused(|| m.add("example"), &["cannot download", "example-0.1.0.rpack"]);
    // The mirror holds half a file (and the index still lists the whole one).
    *m.server.cut.lock().unwrap() = None;
    let bytes = m.published_bytes("example", "0.1.0");
    std::fs::write(m.site.join("bundles/example-0.1.0.rpack"), &bytes[..bytes.len() / 2]).unwrap();
    let expected = format!("the index says {} bytes, {} arrived", bytes.len(), bytes.len() / 2);
    m.refused(|| m.add("example"), &["example@0.1.0", "truncated", &expected]);
}

#[test]
fn an_index_that_lies_about_a_hash_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    let lie = "ab".repeat(32);
    m.edit_index(|i| i.packs[0].sha256 = lie.clone());
    m.refused(
        || m.add("example"),
        &["sha256 mismatch for example@0.1.0", &format!("the index says {lie}"), "tampered"],
    );
    // Or about what the bundle is.
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.edit_index(|i| i.packs[0].version = "9.0.0".into());
    m.refused(|| m.add("example"), &["lists", "as example 9.0.0 but the bundle is example 0.1.0"]);
}

/// Issue 21: the `rules` an index entry advertises must be the signed manifest's.
#[test]
fn an_index_that_misstates_the_rules_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.edit_index(|i| i.packs[0].rules = vec!["harmless-rule".into()]);
    m.refused(|| m.add("example"), &["example@0.1.0", "lists the rules [harmless-rule]", "declares [no-shouting]"]);
}

/// Issue 21: an index served over HTTP may not point at a local file (which would also
/// reveal its size in the size-mismatch error), and a pack listed only with versions that
/// are not semver gets an error saying so, not "did you mean" itself.
#[test]
fn a_remote_index_may_not_name_local_bundles_and_bad_versions_are_named() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    let secret = m._dir.path().join("secret.txt");
    std::fs::write(&secret, "a local secret").unwrap();
    let local = format!("file://{}", secret.display());
    m.edit_index(|i| i.packs[0].bundle = local.clone());
    let refused = |err: String| {
        assert!(err.contains("may only name http(s) bundles") && err.contains(&local), "{err}");
        assert!(!err.contains("14 arrived") && !err.contains("bytes"), "the error tells the local file's size: {err}");
    };
    let before = m.snapshot();
    refused(m.add("example").unwrap_err().to_string());
    assert!(before == m.snapshot());

    let m = Market::new();
    m.publish(example_bundle("shout", "0.1.0"), Some(&m.alice));
    m.edit_index(|i| i.packs[0].version = "one".into());
    let err = m.add("shout").unwrap_err().to_string();
    assert!(err.contains("pack \"shout\" is listed only with versions that are not semver (\"one\")"), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn a_capability_must_be_granted_explicitly() {
    let m = Market::new();
    let mut judge_info = info("asker", "1.0.0");
    judge_info.capabilities = vec!["judge".into()];
    judge_info.prompts.insert("shouting".into(), "Is the response written in capitals?".into());
    let wasm = std::fs::read(example_pack()).unwrap();
    m.publish(Bundle::assemble(&judge_info, wasm, vec![NO_SHOUTING.into()], None).unwrap(), Some(&m.alice));
    m.refused(|| m.add("asker"), &["pack asker@1.0.0", "needs the capability \"judge\"", "--grant judge"]);
    let opts = AddOptions { grants: vec!["judge".into()], ..AddOptions::default() };
    market::add(&m.config(), &"asker".parse::<PackRequest>().unwrap(), &opts).unwrap();
    assert!(std::fs::read_to_string(m.config()).unwrap().contains("grants = [\"judge\"]"));
}

#[test]
fn a_failed_update_keeps_the_previous_version_in_place() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.add("example").unwrap();
    let stranger = SecretKey::from_seed([0x77; 32]);
    m.publish(example_bundle("example", "0.2.0"), Some(&stranger));
    m.refused(|| market::update(&m.config(), None, &AddOptions::default()), &["does not trust"]);
    assert!(m.job.join("packs/example/0.1.0/pack.wasm").is_file());
    score_job(&m.config());
}

#[test]
fn scoring_honours_the_lock_and_fails_closed() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.add("example").unwrap();
    let lock_err = |m: &Market| {
        let mut job = load_job(&m.config()).unwrap();
        apply_lock(&mut job).unwrap_err().to_string()
    };
    let config = std::fs::read_to_string(m.config()).unwrap();
    let sha = sha256_file(&example_pack());

    // rules.toml pins something else than the lock.
    let other = sha256_file(&core_pack());
    std::fs::write(m.config(), config.replace(&sha, &other)).unwrap();
    let err = lock_err(&m);
    let pins = format!("{} pins sha256 {other}", m.config().display());
    assert!(err.contains("rules.lock") && err.contains(&pins), "{err}");

    // rules.toml points at another file.
    std::fs::write(m.config(), config.replace("packs/example/0.1.0/pack.wasm", "elsewhere.wasm")).unwrap();
    let err = lock_err(&m);
    assert!(err.contains("the lock pins") && err.contains("elsewhere.wasm"), "{err}");

    // The pack is gone from rules.toml but still locked.
    let without: String = config.split("\n# Installed by").next().unwrap().to_string();
    std::fs::write(m.config(), without).unwrap();
    let err = lock_err(&m);
    assert!(err.contains("has no [[pack]] named example"), "{err}");

    // The installed file was changed after install (and rules.toml re-pinned to match).
    std::fs::write(m.config(), &config).unwrap();
    let wasm = m.job.join("packs/example/0.1.0/pack.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.push(0);
    std::fs::write(&wasm, &bytes).unwrap();
    let err = lock_err(&m);
    assert!(err.contains("the installed file was changed"), "{err}");
}

#[test]
fn an_index_that_changes_the_bytes_of_an_installed_version_is_refused() {
    let m = Market::new();
    m.publish(example_bundle("example", "0.1.0"), Some(&m.alice));
    m.add("example").unwrap();
    // Same version, other (validly signed) bytes: a published version must never change.
    let mut other = Bundle::assemble(
        &PackInfo { description: "quietly changed".into(), ..info("example", "0.1.0") },
        std::fs::read(example_pack()).unwrap(),
        vec![NO_SHOUTING.into()],
        None,
    )
    .unwrap();
    other.sign(&m.alice);
    m.replace_bundle("example", "0.1.0", &other.to_bytes());
    m.refused(|| market::update(&m.config(), None, &AddOptions::default()), &["example@0.1.0", "must never change"]);
    m.refused(|| m.add("example"), &["must never change"]);
}
