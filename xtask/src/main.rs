//! Project automation, run as `cargo xtask <command>` (the alias is in .cargo/config.toml).
//!
//! `cargo xtask build-plugins [--check] [--pack NAME]...`
//!
//! Builds every rule pack into a WebAssembly component and writes the pinned binaries
//! that are committed to the repository:
//!
//! | pack           | source                        | output                                |
//! |----------------|-------------------------------|---------------------------------------|
//! | `example-rule` | plugins/example-rule (Rust)   | plugins/dist/example-rule.wasm        |
//! | `core-rules`   | plugins/core-rules (Rust)     | plugins/dist/core-rules.wasm          |
//! | `judge-rules`  | plugins/judge-rules (Rust)    | plugins/dist/judge-rules.wasm         |
//! | `c-pack`       | plugins/c-pack (C)            | plugins/dist/c-pack.wasm              |
//! | `hostile-pack` | tests/fixtures/hostile-pack   | tests/fixtures/dist/hostile-pack.wasm |
//!
//! Each build is reproducible: the output depends on the sources, Cargo.lock and the
//! toolchain versions, not on where the repository is cloned or where the caches live.
//! `--check` proves it: it builds into target/plugin-check/ and compares every output
//! byte for byte with the committed file.
//!
//! Every component is checked to import nothing but `safety:rules/*` interfaces.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// The WIT package every plugin import must come from.
const CONTRACT_PACKAGE: &str = "safety:rules";
/// The WIT contract the packs are built against, relative to the workspace root.
const WIT_DIR: &str = "sdk/wit/v0.1.0";
/// The world a pack implements.
const WORLD: &str = "pack";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const CARGO_PROFILE: &str = "plugin";

/// How a pack's core module is produced.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// A Rust crate of the workspace, built with `cargo build -p <crate>`.
    Rust { krate: &'static str },
    /// A C pack: every `src/*.c` under `dir`, plus the generated bindings.
    C { dir: &'static str },
}

#[derive(Clone, Copy, Debug)]
struct Pack {
    name: &'static str,
    source: Source,
    /// Where the component is committed, relative to the workspace root.
    output: &'static str,
}

const PACKS: &[Pack] = &[
    Pack {
        name: "example-rule",
        source: Source::Rust { krate: "example-rule" },
        output: "plugins/dist/example-rule.wasm",
    },
    Pack { name: "core-rules", source: Source::Rust { krate: "core-rules" }, output: "plugins/dist/core-rules.wasm" },
    Pack {
        name: "judge-rules",
        source: Source::Rust { krate: "judge-rules" },
        output: "plugins/dist/judge-rules.wasm",
    },
    Pack { name: "c-pack", source: Source::C { dir: "plugins/c-pack" }, output: "plugins/dist/c-pack.wasm" },
    Pack {
        name: "hostile-pack",
        source: Source::Rust { krate: "hostile-pack" },
        output: "tests/fixtures/dist/hostile-pack.wasm",
    },
];

const USAGE: &str = "\
usage: cargo xtask build-plugins [--check] [--pack NAME]...
       cargo xtask test-c-pack

  build-plugins          build every rule pack into a component and write the committed
                         binaries (plugins/dist/*.wasm, tests/fixtures/dist/*.wasm)
      --check            build into target/plugin-check/ instead and fail unless every
                         output is byte-for-byte identical to the committed file
      --pack NAME        only this pack (repeatable): example-rule, core-rules, judge-rules, c-pack,
                         hostile-pack
  test-c-pack            compile the C pack's rules natively with the host's C compiler
                         and run their unit tests (plugins/c-pack/tests/)

environment:
  CARGO_TARGET_DIR       cargo's target directory (default: <workspace>/target)
  CLANG                  the C compiler for the C pack (default: clang)
  CC                     the host C compiler for test-c-pack (default: cc)
";

fn main() -> ExitCode {
    match run(env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("build-plugins") => {}
        Some("test-c-pack") => {
            if let Some(extra) = args.next() {
                bail!("unknown argument `{extra}`\n\n{USAGE}");
            }
            return test_c_pack(&Workspace::locate()?);
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
    let mut check = false;
    let mut only = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--pack" => {
                let name = args.next().context("--pack needs a pack name")?;
                ensure!(
                    PACKS.iter().any(|p| p.name == name),
                    "unknown pack `{name}` (known: {})",
                    PACKS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                );
                only.push(name);
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    let packs: Vec<Pack> =
        PACKS.iter().copied().filter(|p| only.is_empty() || only.iter().any(|n| n == p.name)).collect();
    build_plugins(&Workspace::locate()?, &packs, check)
}

/// Where things are, and the flags that keep them out of the outputs.
struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    /// `(from, to)` path prefixes to rewrite in everything the compilers record.
    remaps: Vec<(PathBuf, &'static str)>,
}

impl Workspace {
    fn locate() -> Result<Workspace> {
        // xtask/ sits in the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent directory")?;
        let root = root.canonicalize().with_context(|| format!("workspace root {}", root.display()))?;
        let target_dir = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => absolute(&root, Path::new(&dir)),
            None => root.join("target"),
        };
        let home = env::var_os("HOME").map(PathBuf::from);
        let from_env_or_home = |var: &str, dir: &str| {
            env::var_os(var).map(|v| absolute(&root, Path::new(&v))).or_else(|| home.as_ref().map(|h| h.join(dir)))
        };
        fs::create_dir_all(&target_dir).with_context(|| format!("creating {}", target_dir.display()))?;
        let target_dir = target_dir.canonicalize()?;
        // rustc applies the *last* matching --remap-path-prefix, so the list goes from the
        // most general prefix to the most specific (clang gets it reversed). A symlinked
        // home (common on CI) is mapped through its real path as well.
        let mut remaps = Vec::new();
        let mut remap = |from: PathBuf, to: &'static str| {
            if let Ok(real) = from.canonicalize()
                && real != from
            {
                remaps.push((real, to));
            }
            remaps.push((from, to));
        };
        if let Some(cargo_home) = from_env_or_home("CARGO_HOME", ".cargo") {
            remap(cargo_home, "/cargo");
        }
        if let Some(rustup_home) = from_env_or_home("RUSTUP_HOME", ".rustup") {
            remap(rustup_home, "/rustup");
        }
        remap(root.clone(), "/build");
        remap(target_dir.clone(), "/target");
        Ok(Workspace { root, target_dir, remaps })
    }

    fn rel<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

fn build_plugins(ws: &Workspace, packs: &[Pack], check: bool) -> Result<()> {
    let check_dir = ws.target_dir.join("plugin-check");
    if check {
        println!(
            "checking that the sources reproduce the committed plugins (outputs in {})",
            ws.rel(&check_dir).display()
        );
    }
    let mut failures = Vec::new();
    for pack in packs {
        let started = Instant::now();
        let committed = ws.root.join(pack.output);
        let output = if check { check_dir.join(pack.output) } else { committed.clone() };
        let result = build_pack(ws, pack)
            .and_then(|(component, interfaces)| {
                write_if_changed(&output, &component)?;
                println!(
                    "{}  {} bytes  sha256 {}  ({:.1}s)",
                    ws.rel(&output).display(),
                    component.len(),
                    sha256(&component),
                    started.elapsed().as_secs_f32()
                );
                println!("{interfaces}");
                if check { compare_with_committed(ws, &committed, &component) } else { Ok(()) }
            })
            .with_context(|| format!("pack `{}`", pack.name));
        if let Err(e) = result {
            eprintln!("error: {e:#}");
            failures.push(pack.name);
        }
    }
    if !failures.is_empty() {
        bail!("{} of {} packs failed: {}", failures.len(), packs.len(), failures.join(", "));
    }
    if check {
        println!("ok: all {} plugins are reproduced byte for byte", packs.len());
    }
    Ok(())
}

fn compare_with_committed(ws: &Workspace, committed: &Path, built: &[u8]) -> Result<()> {
    let rel = ws.rel(committed).display();
    let pinned = fs::read(committed)
        .with_context(|| format!("{rel} is not committed: run `cargo xtask build-plugins` and commit it"))?;
    ensure!(
        pinned == built,
        "{rel} is not reproduced by its sources:\n  committed sha256 {} ({} bytes)\n  built     sha256 {} ({} bytes)\n\
         if the sources changed on purpose, run `cargo xtask build-plugins` and commit the new binary; \
         otherwise this toolchain differs from the one that built it (this is {}; the C pack \
         was built with Debian 12's clang 14.0.6, see plugins/c-pack/README.md)",
        sha256(&pinned),
        pinned.len(),
        sha256(built),
        built.len(),
        rustc_version()
    );
    println!("  matches the committed {rel}");
    Ok(())
}

/// Builds one pack's core module, makes a component of it and checks its imports.
/// Returns the component and a description of its imports and exports.
fn build_pack(ws: &Workspace, pack: &Pack) -> Result<(Vec<u8>, String)> {
    let module = match pack.source {
        Source::Rust { krate } => build_rust(ws, krate)?,
        Source::C { dir } => build_c(ws, pack.name, &ws.root.join(dir))?,
    };
    check_core_imports(&module)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .context("reading the module's component-type metadata (is the pack exported with the wit-bindgen bindings?)")?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    let interfaces = check_component(&component)?;
    Ok((component, interfaces))
}

fn build_rust(ws: &Workspace, krate: &str) -> Result<Vec<u8>> {
    let rustflags = ws
        .remaps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect::<Vec<_>>()
        .join(" ");
    ensure!(!rustflags.contains("  "), "paths with spaces are not supported: {rustflags}");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ws.root)
        .args(["build", "--locked", "--profile", CARGO_PROFILE, "--target", WASM_TARGET, "-p", krate])
        .env("CARGO_TARGET_DIR", &ws.target_dir)
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", &rustflags)
        // These would take precedence over the target-specific flags above.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let what = format!("cargo build --profile {CARGO_PROFILE} --target {WASM_TARGET} -p {krate}");
    println!("$ {what}");
    run_command(&mut cmd, &what)?;
    let artifact =
        ws.target_dir.join(WASM_TARGET).join(CARGO_PROFILE).join(format!("{}.wasm", krate.replace('-', "_")));
    fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))
}

/// Builds a C pack: generates the bindings with wit-bindgen's C generator into the target
/// directory, then compiles and links everything freestanding (no libc, no WASI) with clang.
fn build_c(ws: &Workspace, name: &str, dir: &Path) -> Result<Vec<u8>> {
    let out = ws.target_dir.join(name);
    let bindings = out.join("bindings");
    let objects = out.join("obj");
    for d in [&bindings, &objects] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("cleaning {}", d.display()))?;
        }
        fs::create_dir_all(d)?;
    }
    let generated = generate_c_bindings(&ws.root.join(WIT_DIR), &bindings)?;
    println!(
        "generated C bindings: {}",
        generated.iter().map(|f| ws.rel(f).display().to_string()).collect::<Vec<_>>().join(", ")
    );

    // Every .c file of the pack (sorted, so the link order is fixed), then the bindings.
    let mut sources = Vec::new();
    for sub in ["src", "libc"] {
        let sub = dir.join(sub);
        if sub.is_dir() {
            for entry in fs::read_dir(&sub).with_context(|| format!("listing {}", sub.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "c") {
                    sources.push(path);
                }
            }
        }
    }
    sources.sort();
    ensure!(!sources.is_empty(), "no C sources in {}", dir.display());
    let own_sources = sources.len();
    sources.extend(generated.iter().filter(|f| f.extension().is_some_and(|e| e == "c")).cloned());

    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    // The committed binary depends on the compiler's version: say which one this is.
    let version = Command::new(&clang)
        .arg("--version")
        .output()
        .with_context(|| format!("running {clang:?} --version (scripts/setup.sh installs clang and lld)"))?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!("C compiler: {}", version.lines().next().unwrap_or("unknown").trim());
    let mut prefix_maps = Vec::new();
    // clang applies the first matching map: most specific first.
    for (from, to) in ws.remaps.iter().rev() {
        prefix_maps.push(format!("-ffile-prefix-map={}={to}", from.display()));
    }
    let include_dirs = [dir.join("include"), dir.join("libc").join("include"), bindings.clone()];
    let mut object_files = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let object = objects.join(format!("{i:02}-{}.o", source.file_stem().unwrap_or_default().to_string_lossy()));
        let mut cmd = Command::new(&clang);
        cmd.current_dir(&ws.root)
            .arg(format!("--target={WASM_TARGET}"))
            .args(C_FLAGS)
            // Warnings are errors in the pack's own code, not in the generated bindings.
            .args(if i < own_sources { &["-Werror"][..] } else { &[][..] })
            .args(&prefix_maps)
            .args(include_dirs.iter().filter(|d| d.is_dir()).map(|d| format!("-I{}", d.display())))
            .arg("-c")
            .arg(ws.rel(source))
            .arg("-o")
            .arg(&object);
        let what = format!("clang -c {}", ws.rel(source).display());
        println!("$ {what}");
        run_command(&mut cmd, &what)
            .context("compiling the C pack (is clang installed? scripts/setup.sh installs it)")?;
        object_files.push(object);
    }
    // The component-type object carries the WIT world in a custom section that
    // wit-component reads back.
    object_files.extend(generated.iter().filter(|f| f.extension().is_some_and(|e| e == "o")).cloned());

    let module = out.join(format!("{}.core.wasm", name.replace('-', "_")));
    let mut cmd = Command::new(&clang);
    cmd.current_dir(&ws.root)
        .arg(format!("--target={WASM_TARGET}"))
        .args(LINK_FLAGS)
        .args(&object_files)
        .arg("-o")
        .arg(&module);
    let what = format!("clang -o {} {}", ws.rel(&module).display(), LINK_FLAGS.join(" "));
    println!("$ {what}");
    run_command(&mut cmd, &what)
        .context("linking the C pack (is lld's wasm-ld installed? scripts/setup.sh installs it)")?;
    fs::read(&module).with_context(|| format!("reading {}", module.display()))
}

/// Compiles the C pack's rules (everything but the glue to the bindings, src/exports.c)
/// natively with each tests/*.c, and runs the tests.
fn test_c_pack(ws: &Workspace) -> Result<()> {
    let dir = ws.root.join("plugins/c-pack");
    let mut rules: Vec<PathBuf> =
        fs::read_dir(dir.join("src"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    rules.retain(|p| p.extension().is_some_and(|e| e == "c") && !p.ends_with("exports.c"));
    rules.sort();
    let mut tests: Vec<PathBuf> =
        fs::read_dir(dir.join("tests"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    tests.retain(|p| p.extension().is_some_and(|e| e == "c"));
    tests.sort();
    ensure!(!tests.is_empty(), "no tests in {}", dir.join("tests").display());
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = ws.target_dir.join("c-pack-tests");
    fs::create_dir_all(&out)?;
    for test in &tests {
        let name = test.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let binary = out.join(&name);
        let mut cmd = Command::new(&cc);
        cmd.current_dir(&ws.root)
            .args(["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-I{}", dir.join("src").display()))
            .arg(ws.rel(test))
            .args(rules.iter().map(|r| ws.rel(r)))
            .arg("-o")
            .arg(&binary);
        let what = format!("cc {}", ws.rel(test).display());
        println!("$ {what}");
        run_command(&mut cmd, &what)?;
        run_command(&mut Command::new(&binary), &name)?;
    }
    Ok(())
}

/// Compiler flags of the C pack: freestanding C11, no libc, small and deterministic.
const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-O2",
    "-ffreestanding",
    // memcpy/memset as memory.copy/memory.fill (Rust guests use bulk memory too).
    "-mbulk-memory",
    "-nostdlibinc",
    "-Wall",
    "-Wextra",
];

/// Linker flags: a reactor-style library with no entry point and no libc; every export
/// is marked in the sources with `export_name`, and no import is allowed to stay undefined.
const LINK_FLAGS: &[&str] = &[
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,--strip-all",
    "-Wl,--gc-sections",
    "-Wl,--error-limit=0",
    "-Wl,-z,stack-size=65536",
];

/// Runs wit-bindgen's C generator (the library behind `wit-bindgen c`) on the contract.
fn generate_c_bindings(wit_dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    use wit_bindgen_core::wit_parser::Resolve;

    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit_dir).with_context(|| format!("parsing {}", wit_dir.display()))?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default().build().generate(&resolve, world, &mut files).context("generating C bindings")?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out.join(name);
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// Refuses core modules that import from anywhere but the contract (e.g. WASI, `env`),
/// naming the import: clearer than the component encoder's error.
fn check_core_imports(module: &[u8]) -> Result<()> {
    let mut foreign = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(reader) = payload.context("parsing the core module")? {
            for import in reader.into_imports() {
                let import = import?;
                if !is_contract_name(import.module) {
                    foreign.insert(format!("{}::{}", import.module, import.name));
                }
            }
        }
    }
    ensure!(
        foreign.is_empty(),
        "the core module imports from outside `{CONTRACT_PACKAGE}`: {}",
        foreign.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// `safety:rules/host@0.1.0` and friends (also `[export]safety:rules/...` helpers that
/// wit-bindgen emits for resources).
fn is_contract_name(name: &str) -> bool {
    let name = name.strip_prefix("[export]").unwrap_or(name);
    name.strip_prefix(CONTRACT_PACKAGE).is_some_and(|rest| rest.starts_with('/'))
}

/// Decodes the component's world and refuses any import that is not a `safety:rules/*`
/// interface, and a component that does not export `rule-pack`. Returns the imports and
/// exports, for printing.
fn check_component(component: &[u8]) -> Result<String> {
    let decoded = wit_component::decode(component).context("decoding the component")?;
    let resolve = decoded.resolve();
    let world = &resolve.worlds[match decoded {
        wit_component::DecodedWasm::Component(_, world) => world,
        wit_component::DecodedWasm::WitPackage(..) => bail!("expected a component, found a WIT package"),
    }];
    let names = |items: Vec<String>| if items.is_empty() { "(none)".to_string() } else { items.join(", ") };
    let imports: Vec<String> = world.imports.keys().map(|k| resolve.name_world_key(k)).collect();
    let exports: Vec<String> = world.exports.keys().map(|k| resolve.name_world_key(k)).collect();
    let foreign: Vec<&String> = imports.iter().filter(|i| !is_contract_name(i)).collect();
    let mut report = String::new();
    writeln!(report, "  imports: {}", names(imports.clone()))?;
    write!(report, "  exports: {}", names(exports.clone()))?;
    ensure!(
        foreign.is_empty(),
        "the component imports from outside `{CONTRACT_PACKAGE}`: {}",
        foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    );
    ensure!(
        exports.iter().any(|e| e.starts_with(&format!("{CONTRACT_PACKAGE}/rule-pack@"))),
        "the component does not export `{CONTRACT_PACKAGE}/rule-pack`"
    );
    Ok(report)
}

/// Runs a command, its output going to ours; `what` names it in errors.
fn run_command(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {what} ({:?})", cmd.get_program()))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// `rustc --version` of the toolchain cargo uses here, for error messages.
fn rustc_version() -> String {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|_| "an unknown rustc".to_string())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
