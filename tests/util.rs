//! Shared helpers: paths, temporary jobs, running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("engine/ has a parent").to_path_buf()
}

pub fn example_pack() -> PathBuf {
    root().join("plugins/dist/example-rule.wasm")
}

pub fn core_pack() -> PathBuf {
    root().join("plugins/dist/core-rules.wasm")
}

pub fn hostile_pack() -> PathBuf {
    root().join("tests/fixtures/dist/hostile-pack.wasm")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// `../shared/data/NAME` if this checkout has it (CI does; a user's clone may not).
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = root().join("../shared/data").join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is not here", path.display());
        None
    }
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))))
}

/// One `[[pack]]` of a test job.
pub struct Pack<'a> {
    pub name: &'a str,
    pub path: PathBuf,
    pub extra: &'a str,
}

impl<'a> Pack<'a> {
    pub fn new(name: &'a str, path: PathBuf) -> Pack<'a> {
        Pack { name, path, extra: "" }
    }

    pub fn with(mut self, extra: &'a str) -> Pack<'a> {
        self.extra = extra;
        self
    }
}

/// A job in a temporary folder: rules.toml, an input file, and room for outputs.
pub struct TempJob {
    pub dir: tempfile::TempDir,
}

impl TempJob {
    pub fn new(packs: &[Pack<'_>], job_extra: &str, sandbox: &str) -> TempJob {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!("[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n{job_extra}\n[sandbox]\n{sandbox}\n");
        for pack in packs {
            text.push_str(&format!(
                "\n[[pack]]\nname = \"{}\"\npath = \"{}\"\nsha256 = \"{}\"\n{}\n",
                pack.name,
                pack.path.display(),
                sha256_file(&pack.path),
                pack.extra
            ));
        }
        std::fs::write(dir.path().join("rules.toml"), text).unwrap();
        TempJob { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("rules.toml")
    }

    /// Writes `n` synthetic single-turn pairs to pairs.jsonl.
    pub fn write_pairs(&self, n: usize) {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "{{\"id\":\"t{i}\",\"prompt\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}],\"chosen\":\"Answer number {i}, calmly.\",\"rejected\":\"ANSWER {i} IN CAPITALS{}\"}}\n",
                "!".repeat(i % 3)
            ));
        }
        std::fs::write(self.path("pairs.jsonl"), text).unwrap();
    }

    pub fn engine(&self, args: &[&str]) -> Output {
        engine(self.dir.path(), args)
    }
}

/// Runs the engine binary in `dir`.
pub fn engine(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).current_dir(dir).output().expect("running engine")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
