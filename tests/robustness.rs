//! Issue 21: inputs that used to lose data, give wrong results, hang or crash. Grouped by
//! area: outputs over inputs, resuming over something else, contradictory scores, files
//! that never end, config checks `rules verify` missed, quarantine, and a closed stdout.
//! Each test bounds the engine with a deadline instead of trusting it to finish.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use engine::plugin::FailureKind;
use engine::score::read_strict;

use crate::util::{Pack, TempJob, example_pack, hostile_pack, stderr};

/// Runs the engine in `dir`, killing it (and failing the test) after `limit`.
fn engine_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running engine");
    wait_within(child, args, limit)
}

fn wait_within(mut child: Child, args: &[&str], limit: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("waiting for engine").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("engine {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collecting engine output")
}

const LIMIT: Duration = Duration::from_secs(120);

fn example_job() -> TempJob {
    let job = TempJob::new(&[Pack::new("example", example_pack())], "", "");
    job.write_pairs(4);
    job
}

fn assert_refused(output: &Output, names: &[&str]) -> String {
    let err = stderr(output);
    assert!(!output.status.success(), "the engine accepted it: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for name in names {
        assert!(err.contains(name), "the error does not name {name}: {err}");
    }
    err
}

// --- Outputs that are inputs -------------------------------------------------------------

#[test]
fn score_refuses_to_write_over_its_input_even_through_a_symlink() {
    let job = example_job();
    let pairs = std::fs::read(job.path("pairs.jsonl")).unwrap();
    std::os::unix::fs::symlink(job.path("pairs.jsonl"), job.path("link.jsonl")).unwrap();
    for out in ["pairs.jsonl", "link.jsonl", "./sub/../pairs.jsonl"] {
        std::fs::create_dir_all(job.path("sub")).unwrap();
        let output = engine_within(job.dir.path(), &["score", "-q", "--input", "pairs.jsonl", "--out", out], LIMIT);
        assert_refused(&output, &["--out", "--input", "pairs.jsonl", out]);
        assert_eq!(std::fs::read(job.path("pairs.jsonl")).unwrap(), pairs, "the pairs were changed via {out}");
    }
}

#[test]
fn label_refuses_to_write_over_its_pairs_or_scores() {
    let job = example_job();
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "s.jsonl"], LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let before = (std::fs::read(job.path("pairs.jsonl")).unwrap(), std::fs::read(job.path("s.jsonl")).unwrap());
    for (out, input) in [("pairs.jsonl", "--pairs"), ("s.jsonl", "--scores")] {
        let args = ["label", "--scores", "s.jsonl", "--pairs", "pairs.jsonl", "--out", out];
        assert_refused(&engine_within(job.dir.path(), &args, LIMIT), &[input, out]);
    }
    let after = (std::fs::read(job.path("pairs.jsonl")).unwrap(), std::fs::read(job.path("s.jsonl")).unwrap());
    assert!(before == after, "an input of engine label was changed");
}

#[test]
fn merge_refuses_to_write_over_one_of_its_inputs() {
    let job = example_job();
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "s.jsonl"], LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let before = std::fs::read(job.path("s.jsonl")).unwrap();
    std::fs::write(job.path("empty.jsonl"), "").unwrap();
    let output = engine_within(job.dir.path(), &["merge", "--out", "s.jsonl", "empty.jsonl", "s.jsonl"], LIMIT);
    assert_refused(&output, &["s.jsonl"]);
    assert_eq!(std::fs::read(job.path("s.jsonl")).unwrap(), before);
}

// --- Resuming over something that is not ours ------------------------------------------

#[test]
fn score_refuses_to_resume_over_a_file_that_is_not_scores() {
    let job = example_job();
    let notes = "my notes\nabout this run\n";
    std::fs::write(job.path("notes.txt"), notes).unwrap();
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "notes.txt"], LIMIT);
    assert_refused(&output, &["notes.txt:1", "not a scores file"]);
    assert_eq!(std::fs::read_to_string(job.path("notes.txt")).unwrap(), notes);
    assert!(!job.path("notes.txt.prev").exists(), "nothing was parked either");

    // A valid prefix with a record damaged in the middle is refused too, naming the line.
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "s.jsonl"], LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(job.path("s.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"sample\": 17}";
    std::fs::write(job.path("s.jsonl"), lines.join("\n") + "\n").unwrap();
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "s.jsonl"], LIMIT);
    assert_refused(&output, &["s.jsonl:2"]);
}

// --- Contradictory scores ----------------------------------------------------------------

#[test]
fn label_refuses_contradictory_duplicate_scores_and_accepts_identical_ones() {
    let job = example_job();
    let output = engine_within(job.dir.path(), &["score", "-q", "--out", "s.jsonl"], LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(job.path("s.jsonl")).unwrap();
    let first = text.lines().next().unwrap().to_string();
    let lines = text.lines().count();

    // The same record twice: accepted, as `engine merge` accepts it.
    std::fs::write(job.path("dup.jsonl"), format!("{text}{first}\n")).unwrap();
    let output = engine_within(job.dir.path(), &["label", "--scores", "dup.jsonl", "--out", "l.jsonl"], LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));

    // The same key with another verdict: an error naming the file, both lines and the key.
    let mut record: serde_json::Value = serde_json::from_str(&first).unwrap();
    record["status"] = "error".into();
    record["kind"] = "crash".into();
    record["message"] = "edited".into();
    std::fs::write(job.path("bad.jsonl"), format!("{text}{record}\n")).unwrap();
    let output = engine_within(job.dir.path(), &["label", "--scores", "bad.jsonl", "--out", "l2.jsonl"], LIMIT);
    let sample = record["sample"].as_str().unwrap();
    let rule = record["rule"].as_str().unwrap();
    assert_refused(&output, &["bad.jsonl:1", &format!("line {}", lines + 1), sample, rule]);
    assert!(!job.path("l2.jsonl").exists());
}

// --- Files that never end ------------------------------------------------------------------

/// A rules.toml naming `path` as a pack (pinned to an arbitrary hash: the file is never
/// hashed by the test, since reading /dev/zero never ends).
fn job_with_pack_path(path: &str) -> TempJob {
    let job = TempJob::new(&[Pack::new("example", example_pack())], "", "");
    let text = format!(
        "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n\n[[pack]]\nname = \"zero\"\npath = \"{path}\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    std::fs::write(job.config(), text).unwrap();
    job.write_pairs(2);
    job
}

#[test]
fn a_pack_that_is_a_device_is_refused_instead_of_read_forever() {
    let job = job_with_pack_path("/dev/zero");
    let output = engine_within(job.dir.path(), &["rules", "verify"], Duration::from_secs(30));
    assert!(!output.status.success());
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("FAIL") && out.contains("/dev/zero") && out.contains("not a regular file"), "{out}");
    let output = engine_within(job.dir.path(), &["score", "-q"], Duration::from_secs(30));
    assert_refused(&output, &["/dev/zero", "not a regular file"]);
}

#[test]
fn an_input_without_line_ends_is_refused_instead_of_read_forever() {
    let job = example_job();
    let output = engine_within(job.dir.path(), &["score", "-q", "--input", "/dev/zero"], Duration::from_secs(60));
    assert_refused(&output, &["/dev/zero", "longer than 64 MiB"]);
}

// --- `eval --skip-invalid` says what it skipped ----------------------------------------

#[test]
fn eval_names_the_lines_it_skips() {
    let Some(model) = crate::eval::tiny_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id":"p1","prompt":"Say hi","chosen":"Hi!","rejected":"No."}"#;
    std::fs::write(dir.path().join("d.jsonl"), format!("{good}\n{{\"id\": \"p2\", \"prompt\": 3}}\n")).unwrap();
    let model_dir = model.path().to_str().unwrap();
    let args = ["eval", "--quiet", "--model", model_dir, "--data", "d.jsonl", "--skip-invalid", "--out", "e"];
    let output = engine_within(dir.path(), &args, LIMIT);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("warning: skipped d.jsonl:2:"), "{err}");
}

#[test]
fn eval_reads_reward_bench_integer_ids_and_fails_when_every_line_is_skipped() {
    let Some(model) = crate::eval::tiny_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rows = r#"{"id":30,"prompt":"Say hi","chosen":"Hi!","rejected":"No.","subset":"xstest-should-respond"}"#;
    std::fs::write(dir.path().join("d.jsonl"), format!("{rows}\n")).unwrap();
    let model_dir = model.path().to_str().unwrap();
    let args = ["eval", "--quiet", "--model", model_dir, "--data", "d.jsonl", "--out", "e"];
    let output = engine_within(dir.path(), &args, LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));

    std::fs::write(dir.path().join("bad.jsonl"), "{\"id\": \"p2\", \"prompt\": 3}\n").unwrap();
    let args = ["eval", "--quiet", "--model", model_dir, "--data", "bad.jsonl", "--skip-invalid", "--out", "e2"];
    let output = engine_within(dir.path(), &args, LIMIT);
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("bad.jsonl: no valid row: --skip-invalid skipped all 1 non-blank lines"), "{err}");
}

// --- `rules verify` checks what `score` checks -----------------------------------------

#[test]
fn verify_fails_on_an_unknown_enabled_rule_and_on_duplicate_rule_ids() {
    let unknown = TempJob::new(&[Pack::new("example", example_pack()).with("enable = [\"no-such-rule\"]")], "", "");
    let twice = TempJob::new(&[Pack::new("one", example_pack()), Pack::new("two", example_pack())], "", "");
    for (job, expected) in [(&unknown, "no-such-rule"), (&twice, "no-shouting")] {
        job.write_pairs(2);
        let verify = engine_within(job.dir.path(), &["rules", "verify"], LIMIT);
        let out = String::from_utf8_lossy(&verify.stdout).into_owned();
        assert!(!verify.status.success(), "verify passed: {out}");
        assert!(out.contains("FAIL  (rule set)") && out.contains(expected), "{out}");
        let score = engine_within(job.dir.path(), &["score", "-q"], LIMIT);
        assert_refused(&score, &[expected]);
    }
}

// --- Quarantine ----------------------------------------------------------------------------

#[test]
fn quarantine_takes_effect_at_once_and_the_output_does_not_depend_on_threads() {
    let disable = format!("disable = [{}]", {
        let honest_or_slow = [
            "loop-forever",
            "memory-bomb",
            "panic",
            "huge-rationale",
            "nan-verdict",
            "out-of-range",
            "stack-overflow",
            "read-file",
            "read-env",
            "open-socket",
            "log-flood",
            "asks-judge",
            "asks-adaptively",
            "busy",
        ];
        honest_or_slow.map(|r| format!("\"{r}\"")).join(", ")
    });
    let job = TempJob::new(&[Pack::new("hostile", hostile_pack()).with(&disable)], "quarantine_after = 3", "");
    job.write_pairs(50);
    for threads in ["1", "2"] {
        let out = format!("s{threads}.jsonl");
        let output = engine_within(job.dir.path(), &["score", "-q", "-j", threads, "--out", &out], LIMIT);
        assert!(output.status.success(), "{}", stderr(&output));
        let records = read_strict(&job.path(&out)).unwrap();
        let ran = records
            .iter()
            .filter(|r| r.rule == "always-fails" && r.outcome.failure_kind() != Some(FailureKind::Quarantined))
            .count();
        assert_eq!(ran, 3, "with quarantine_after = 3 the failing rule runs 3 times, not a chunk's worth");
    }
    assert_eq!(std::fs::read(job.path("s1.jsonl")).unwrap(), std::fs::read(job.path("s2.jsonl")).unwrap());
}

// --- A closed stdout -------------------------------------------------------------------------

#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let job = example_job();
    for args in [&["rules", "list"][..], &["score", "-q", "--out", "s.jsonl"][..]] {
        // The read end is closed before the engine starts: its first write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .current_dir(job.dir.path())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = wait_within(child, args, LIMIT);
        let err = stderr(&output);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
    }
    assert!(job.path("s.jsonl").exists(), "the work was done although nobody read stdout");
}

// =========================================================================================
// The standing suite (issue 21): every defect above taken as a class. Each area is a table
// of cases; each case makes one bad input, config, pack, signal or request and checks its
// expected outcome: a refusal that names the place (file:line and field where there is
// one) and leaves the folder byte for byte as it was, or a clean result, and never a hang
// past a bound. Each area prints `AREA: N cases, N handled` and fails unless all are.
//
//   cargo test -p engine --test tests robustness::suite -- --nocapture
// =========================================================================================

mod suite {
    use std::collections::BTreeMap;
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use engine::data::Message;
    use engine::eval::RewardScorer;
    use engine::serve::reward::{ServeOptions, spawn};

    use crate::util::{example_pack, fixture, hostile_pack, root, sha256_file};

    /// What one case checks, given a fresh folder of its own: `Ok` when handled.
    type Check = Box<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

    struct Case {
        name: String,
        /// The fixture the folder starts from.
        base: fn() -> &'static Path,
        check: Check,
    }

    /// A bound for one engine command; every case's commands are killed past it.
    const BOUND: Duration = Duration::from_secs(60);

    /// Runs the engine in `dir` within `limit`; `Err` if it ran past it.
    fn engine(dir: &Path, args: &[String], limit: Duration) -> Result<std::process::Output, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run engine: {e}"))?;
        let started = Instant::now();
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("engine {args:?} still ran after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().map_err(|e| e.to_string())
    }

    /// Every file under `dir` (relative path → bytes), to prove that nothing was written.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    walk(root, &path, out);
                } else if kind.is_file() {
                    out.insert(
                        path.strip_prefix(root).unwrap().to_path_buf(),
                        std::fs::read(&path).unwrap_or_default(),
                    );
                } else if kind.is_symlink() {
                    let target = std::fs::read_link(&path).unwrap_or_default();
                    out.insert(
                        path.strip_prefix(root).unwrap().to_path_buf(),
                        target.into_os_string().into_encoded_bytes(),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    /// The engine refuses: non-zero status, no panic, its output names each of `names`, and
    /// no file in the folder was created, changed or removed.
    fn refused(
        name: impl Into<String>,
        base: fn() -> &'static Path,
        setup: Setup,
        command: &str,
        names: &[&str],
    ) -> Case {
        let command = args(command);
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        Case {
            name: name.into(),
            base,
            check: Box::new(move |dir| {
                setup(dir);
                let before = snapshot(dir);
                let output = engine(dir, &command, BOUND)?;
                let said =
                    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
                if output.status.success() {
                    return Err(format!("accepted: {said}"));
                }
                if said.contains("panicked") {
                    return Err(format!("panicked: {said}"));
                }
                if let Some(missing) = names.iter().find(|n| !said.contains(n.as_str())) {
                    return Err(format!("the message does not name {missing:?}: {said}"));
                }
                let after = snapshot(dir);
                if before != after {
                    let changed: Vec<_> =
                        after.keys().chain(before.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
                    return Err(format!("the folder changed: {changed:?}"));
                }
                Ok(())
            }),
        }
    }

    /// The engine accepts a harmless oddity (CRLF, a BOM, blank lines): status 0 and `out`
    /// written.
    fn accepted(name: impl Into<String>, base: fn() -> &'static Path, setup: Setup, command: &str, out: &str) -> Case {
        let command = args(command);
        let out = out.to_owned();
        Case {
            name: name.into(),
            base,
            check: Box::new(move |dir| {
                setup(dir);
                let output = engine(dir, &command, BOUND)?;
                if !output.status.success() {
                    return Err(format!("refused: {}", String::from_utf8_lossy(&output.stderr)));
                }
                if !dir.join(&out).is_file() {
                    return Err(format!("{out} was not written"));
                }
                Ok(())
            }),
        }
    }

    fn custom(
        name: impl Into<String>,
        base: fn() -> &'static Path,
        check: impl Fn(&Path) -> Result<(), String> + Send + Sync + 'static,
    ) -> Case {
        Case { name: name.into(), base, check: Box::new(check) }
    }

    type Setup = Arc<dyn Fn(&Path) + Send + Sync>;

    fn write(name: &str, text: &str) -> Setup {
        let (name, text) = (name.to_owned(), text.to_owned());
        Arc::new(move |dir: &Path| std::fs::write(dir.join(&name), &text).unwrap())
    }

    fn write_bytes(name: &str, bytes: &[u8]) -> Setup {
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        Arc::new(move |dir: &Path| std::fs::write(dir.join(&name), &bytes).unwrap())
    }

    fn nothing() -> Setup {
        Arc::new(|_: &Path| {})
    }

    fn mkdir(name: &str) -> Setup {
        let name = name.to_owned();
        Arc::new(move |dir: &Path| std::fs::create_dir_all(dir.join(&name)).unwrap())
    }

    /// Runs the cases (two at a time: the machine that runs the suite may have two cores),
    /// prints `AREA: N cases, N handled` and fails listing every case that was not.
    fn run_area(area: &str, cases: Vec<Case>) {
        let started = Instant::now();
        let total = cases.len();
        let queue = Mutex::new(cases.into_iter().collect::<Vec<_>>());
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    loop {
                        let Some(case) = queue.lock().unwrap().pop() else { break };
                        let dir = tempfile::tempdir().unwrap();
                        copy_tree((case.base)(), dir.path());
                        let result =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.check)(dir.path())))
                                .unwrap_or_else(|_| Err("the check panicked".into()));
                        if let Err(why) = result {
                            failures.lock().unwrap().push(format!("{}: {why}", case.name));
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap();
        let handled = total - failures.len();
        println!("{area}: {total} cases, {handled} handled ({:.1} s)", started.elapsed().as_secs_f64());
        assert!(failures.is_empty(), "{area}: {} not handled:\n{}", failures.len(), failures.join("\n"));
    }

    // --- Fixtures, built once ------------------------------------------------------------

    const GOOD: &str = r#"{"id":"g","prompt":"hi","chosen":"a","rejected":"b"}"#;

    fn job_toml(extra_pack: &str) -> String {
        let pack = example_pack();
        format!(
            "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"example\"\npath = \"{}\"\nsha256 = \"{}\"\n{extra_pack}",
            pack.display(),
            sha256_file(&pack)
        )
    }

    /// rules.toml (the example pack), pairs.jsonl (4 pairs), s.jsonl (their scores) and
    /// l.jsonl (their labels).
    fn job() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("rules.toml"), job_toml("")).unwrap();
            let mut pairs = String::new();
            for i in 0..4 {
                pairs.push_str(&format!(
                    "{{\"id\":\"t{i}\",\"prompt\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}],\"chosen\":\"Answer number {i}, calmly.\",\"rejected\":\"ANSWER {i} IN CAPITALS!\"}}\n"
                ));
            }
            std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
            for command in ["score -q --out s.jsonl", "label --scores s.jsonl --pairs pairs.jsonl --out l.jsonl"] {
                let output = engine(dir.path(), &args(command), BOUND).unwrap();
                assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
            }
            dir
        })
        .path()
    }

    /// The first score record of the job, edited by `edit`.
    fn record(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let text = std::fs::read_to_string(job().join("s.jsonl")).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        edit(&mut value);
        value.to_string()
    }

    fn first_record() -> String {
        record(|_| {})
    }

    // --- Data files ------------------------------------------------------------------------

    #[test]
    fn data_files() {
        // (file name, content, what the error must name)
        let bad_pairs: Vec<(&str, String, Vec<&str>)> = vec![
            ("notjson.jsonl", format!("{GOOD}\n{{not json\n"), vec!["notjson.jsonl:2", "not valid JSON"]),
            ("nochosen.jsonl", format!("{GOOD}\n{{\"id\":\"x\",\"prompt\":\"p\",\"rejected\":\"b\"}}\n"), vec!["nochosen.jsonl:2", "chosen"]),
            ("promptnum.jsonl", "{\"id\":\"x\",\"prompt\":3,\"chosen\":\"a\",\"rejected\":\"b\"}\n".into(), vec!["promptnum.jsonl:1", "prompt"]),
            ("role.jsonl", "{\"id\":\"x\",\"prompt\":[{\"role\":\"robot\",\"content\":\"x\"}],\"chosen\":\"a\",\"rejected\":\"b\"}\n".into(), vec!["role.jsonl:1", "prompt[0].role", "robot"]),
            ("nocontent.jsonl", "{\"id\":\"x\",\"prompt\":[{\"role\":\"user\"}],\"chosen\":\"a\",\"rejected\":\"b\"}\n".into(), vec!["nocontent.jsonl:1", "prompt[0].content"]),
            ("chosennum.jsonl", "{\"id\":\"x\",\"prompt\":\"p\",\"chosen\":7,\"rejected\":\"b\"}\n".into(), vec!["chosennum.jsonl:1", "chosen", "a number"]),
            ("list.jsonl", "[1,2]\n".into(), vec!["list.jsonl:1", "a list"]),
            ("dupid.jsonl", format!("{GOOD}\n{GOOD}\n"), vec!["dupid.jsonl:2", "duplicate id", "line 1"]),
            ("torn.jsonl", format!("{GOOD}\n{{\"id\":\"g2\",\"prompt\":\"hi\"\n{GOOD}\n"), vec!["torn.jsonl:2"]),
            ("rejnull.jsonl", "{\"id\":\"x\",\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":null}\n".into(), vec!["rejnull.jsonl:1", "rejected"]),
            ("idnum.jsonl", "{\"id\":{},\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n".into(), vec!["idnum.jsonl:1", "id"]),
            ("msgnotobj.jsonl", "{\"id\":\"x\",\"prompt\":[\"hi\"],\"chosen\":\"a\",\"rejected\":\"b\"}\n".into(), vec!["msgnotobj.jsonl:1", "prompt[0]"]),
        ];
        let mut cases = Vec::new();
        for (file, text, names) in &bad_pairs {
            for (command, what) in [
                (format!("score -q --input {file} --out o.jsonl"), "score --input"),
                (format!("label --scores s.jsonl --pairs {file} --out o.jsonl"), "label --pairs"),
                (format!("eval-labels --gold {file} --scores s.jsonl"), "eval-labels --gold"),
            ] {
                cases.push(refused(format!("{what} {file}"), job, write(file, text), &command, names));
            }
        }
        // Not valid UTF-8, for the same three readers.
        for (command, what) in [
            ("score -q --input bin.jsonl --out o.jsonl", "score --input"),
            ("label --scores s.jsonl --pairs bin.jsonl --out o.jsonl", "label --pairs"),
            ("eval-labels --gold bin.jsonl --scores s.jsonl", "eval-labels --gold"),
        ] {
            cases.push(refused(
                format!("{what} invalid UTF-8"),
                job,
                write_bytes("bin.jsonl", b"\xff\xfe\x00garbage\n"),
                command,
                &["bin.jsonl:1", "UTF-8"],
            ));
        }
        // Paths that are not files.
        for (command, what) in [
            ("score -q --input nope.jsonl --out o.jsonl", "score --input missing"),
            ("label --scores s.jsonl --pairs nope.jsonl --out o.jsonl", "label --pairs missing"),
            ("eval-labels --gold nope.jsonl --scores s.jsonl", "eval-labels --gold missing"),
            ("label --scores nope.jsonl --pairs pairs.jsonl --out o.jsonl", "label --scores missing"),
            ("merge --out o.jsonl s.jsonl nope.jsonl", "merge missing input"),
            ("explain t1 --labels nope.jsonl", "explain --labels missing"),
        ] {
            cases.push(refused(what, job, nothing(), command, &["nope.jsonl"]));
        }
        for (command, what) in [
            ("score -q --input adir --out o.jsonl", "score --input folder"),
            ("label --scores s.jsonl --pairs adir --out o.jsonl", "label --pairs folder"),
            ("eval-labels --gold adir --scores s.jsonl", "eval-labels --gold folder"),
            ("label --scores adir --pairs pairs.jsonl --out o.jsonl", "label --scores folder"),
            ("merge --out o.jsonl s.jsonl adir", "merge folder input"),
        ] {
            cases.push(refused(what, job, mkdir("adir"), command, &["adir"]));
        }
        cases.push(refused(
            "score --input /dev/zero",
            job,
            nothing(),
            "score -q --input /dev/zero --out o.jsonl",
            &["/dev/zero", "64 MiB"],
        ));
        // Damaged score files, for the three commands that read them.
        let bad_scores: Vec<(&str, String, Vec<&str>)> = vec![
            ("sjunk.jsonl", format!("{}\nnot json\n", first_record()), vec!["sjunk.jsonl:2", "not a score record"]),
            ("snorule.jsonl", format!("{}\n{{\"sample\":\"x\"}}\n", first_record()), vec!["snorule.jsonl:2", "rule"]),
            (
                "sstatus.jsonl",
                format!("{}\n", record(|r| r["status"] = "maybe".into())),
                vec!["sstatus.jsonl:1", "maybe"],
            ),
            ("srel.jsonl", format!("{}\n", record(|r| r["relevance"] = "high".into())), vec!["srel.jsonl:1", "high"]),
            ("slist.jsonl", "[]\n".into(), vec!["slist.jsonl:1", "not a score record"]),
            ("sbin.jsonl", "\u{1}\u{2}{\n".into(), vec!["sbin.jsonl:1"]),
        ];
        for (file, text, names) in &bad_scores {
            for (command, what) in [
                (format!("label --scores {file} --pairs pairs.jsonl --out o.jsonl"), "label --scores"),
                (format!("merge --out o.jsonl s.jsonl {file}"), "merge"),
                (format!("eval-labels --gold pairs.jsonl --scores {file}"), "eval-labels --scores"),
            ] {
                cases.push(refused(format!("{what} {file}"), job, write(file, text), &command, names));
            }
        }
        // Contradictory scores: the same key with two verdicts, in one file or across two.
        let contradiction = record(|r| {
            r["status"] = "error".into();
            r["kind"] = "crash".into();
            r["message"] = "edited".into();
        });
        let both = format!("{}{contradiction}\n", std::fs::read_to_string(job().join("s.jsonl")).unwrap());
        cases.push(refused(
            "label: one key, two verdicts",
            job,
            write("c.jsonl", &both),
            "label --scores c.jsonl --pairs pairs.jsonl --out o.jsonl",
            &["c.jsonl:1", "line 9"],
        ));
        cases.push(refused(
            "merge: two files disagree",
            job,
            write("c.jsonl", &format!("{contradiction}\n")),
            "merge --out o.jsonl s.jsonl c.jsonl",
            &["s.jsonl", "c.jsonl", "disagree"],
        ));
        cases.push(refused(
            "label: scores missing a response",
            job,
            write("c.jsonl", &format!("{}\n", first_record())),
            "label --scores c.jsonl --pairs pairs.jsonl --out o.jsonl",
            &["never scored"],
        ));
        cases.push(refused(
            "explain: unknown pair",
            job,
            nothing(),
            "explain nope --labels l.jsonl",
            &["l.jsonl", "nope"],
        ));
        cases.push(refused(
            "explain: labels not labels",
            job,
            nothing(),
            "explain t1 --labels pairs.jsonl",
            &["pairs.jsonl:1"],
        ));
        // Harmless oddities are accepted.
        cases.push(accepted(
            "blank lines",
            job,
            write("p.jsonl", &format!("\n\n{GOOD}\n")),
            "score -q --input p.jsonl --out o.jsonl",
            "o.jsonl",
        ));
        cases.push(accepted(
            "CRLF line ends",
            job,
            write("p.jsonl", &format!("{GOOD}\r\n")),
            "score -q --input p.jsonl --out o.jsonl",
            "o.jsonl",
        ));
        cases.push(accepted(
            "a UTF-8 byte-order mark",
            job,
            write("p.jsonl", &format!("\u{feff}{GOOD}\n")),
            "score -q --input p.jsonl --out o.jsonl",
            "o.jsonl",
        ));
        cases.push(accepted(
            "an empty input",
            job,
            write("p.jsonl", ""),
            "score -q --input p.jsonl --out o.jsonl",
            "o.jsonl",
        ));
        cases.push(accepted(
            "a duplicated identical score record",
            job,
            write(
                "d.jsonl",
                &format!("{}{}\n", std::fs::read_to_string(job().join("s.jsonl")).unwrap(), first_record()),
            ),
            "label --scores d.jsonl --pairs pairs.jsonl --out o.jsonl",
            "o.jsonl",
        ));
        run_area("data files", cases);
    }

    // --- Configs (rules.toml) ----------------------------------------------------------------

    /// A rules.toml whose `[job]` has `job_extra`, then `between` (other tables), then the
    /// example pack with `pack_extra` (the pack table starts on line 4 + the lines before).
    fn config(job_extra: &str, between: &str, pack_extra: &str) -> String {
        let pack = example_pack();
        format!(
            "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n{job_extra}{between}[[pack]]\nname = \"example\"\npath = \"{}\"\nsha256 = \"{}\"\n{pack_extra}",
            pack.display(),
            sha256_file(&pack)
        )
    }

    #[test]
    fn configs() {
        let hash = sha256_file(&example_pack());
        let path = example_pack().display().to_string();
        // (what, rules.toml, what the error must name)
        let bad: Vec<(&str, String, Vec<&str>)> = vec![
            ("unclosed table", format!("{}[[pack\n", config("", "", "")), vec!["rules.toml:8", "unclosed"]),
            ("unknown pack field", config("", "", "bogus = 1\n"), vec!["rules.toml:8", "bogus"]),
            ("unknown job key", config("unknown_key = 3\n", "", ""), vec!["rules.toml:4", "unknown_key"]),
            (
                "short sha256",
                format!(
                    "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"example\"\npath = \"{path}\"\nsha256 = \"abc\"\n"
                ),
                vec!["rules.toml:7", "pack[0].sha256", "64 hex"],
            ),
            (
                "no sha256",
                format!(
                    "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"example\"\npath = \"{path}\"\n"
                ),
                vec!["rules.toml:4", "sha256"],
            ),
            (
                "no name",
                format!(
                    "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\npath = \"{path}\"\nsha256 = \"{hash}\"\n"
                ),
                vec!["rules.toml:4", "name"],
            ),
            ("unknown sandbox key", config("", "[sandbox]\nfuel = -1\n", ""), vec!["rules.toml:5", "fuel"]),
            (
                "sandbox value of the wrong type",
                config("", "[sandbox]\nmemory_mib = \"lots\"\n", ""),
                vec!["rules.toml:5", "lots"],
            ),
            (
                "a network grant",
                config("", "", "grants = [\"network\"]\n"),
                vec!["rules.toml:8", "pack[0].grants", "network"],
            ),
            (
                "config file /dev/zero",
                config("", "", "config_files = { x = \"/dev/zero\" }\n"),
                vec!["rules.toml:8", "config_files.x", "/dev/zero", "not a regular file"],
            ),
            (
                "config file missing",
                config("", "", "config_files = { x = \"nope.txt\" }\n"),
                vec!["rules.toml:8", "config_files.x", "nope.txt"],
            ),
            (
                "the same pack twice",
                format!("{}[[pack]]\nname = \"example\"\npath = \"{path}\"\nsha256 = \"{hash}\"\n", config("", "", "")),
                vec!["rules.toml:9", "pack[1].name", "twice"],
            ),
            (
                "input of the wrong type",
                format!("[job]\ninput = 3\n[[pack]]\nname = \"example\"\npath = \"{path}\"\nsha256 = \"{hash}\"\n"),
                vec!["rules.toml:2", "integer"],
            ),
            ("unknown format", config("format = \"xml\"\n", "", ""), vec!["rules.toml:4", "job.format", "xml"]),
            (
                "unknown judge backend",
                config("", "[judge]\nbackend = \"magic\"\n", ""),
                vec!["rules.toml:5", "judge.backend", "magic"],
            ),
            (
                "judge context too small",
                config("", "[judge]\nmax_context = -5\n", ""),
                vec!["rules.toml:5", "judge.max_context", "-5"],
            ),
            (
                "unknown strategy",
                config("", "[selection]\nstrategy = \"nope\"\n", ""),
                vec!["rules.toml:5", "selection.strategy", "nope"],
            ),
            (
                "unknown tie policy",
                config("", "[selection]\ntie_policy = \"coin\"\n", ""),
                vec!["rules.toml:5", "selection.tie_policy", "coin"],
            ),
            (
                "judge url not http",
                config("", "[judge]\nbackend = \"openai\"\nurl = \"ftp://x\"\n", ""),
                vec!["rules.toml:6", "judge.url", "ftp://x"],
            ),
            (
                "remote option on a local judge",
                config("", "[judge]\ntimeout_ms = 0\n", ""),
                vec!["rules.toml:5", "judge.timeout_ms"],
            ),
            ("negative quarantine_after", config("quarantine_after = -1\n", "", ""), vec!["rules.toml:4", "-1"]),
            ("unknown top-level table", config("", "[jbo]\nx = 1\n", ""), vec!["rules.toml", "jbo"]),
            ("not TOML at all", "\u{0}\u{1}binary".into(), vec!["rules.toml"]),
            (
                "pack path missing",
                format!(
                    "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"example\"\npath = \"nope.wasm\"\nsha256 = \"{hash}\"\n"
                ),
                vec!["nope.wasm"],
            ),
            (
                "pack hash mismatch",
                format!(
                    "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"example\"\npath = \"{path}\"\nsha256 = \"{}\"\n",
                    "0".repeat(64)
                ),
                vec!["example", "sha256"],
            ),
            ("unknown enabled rule", config("", "", "enable = [\"no-such-rule\"]\n"), vec!["no-such-rule"]),
            (
                "unknown disabled rule",
                config("", "", "disable = [\"no-such-rule\"]\n"),
                vec!["rules.toml:8", "no-such-rule"],
            ),
            (
                "a market key that is not a key",
                config(
                    "",
                    "[market]\nindex = \"i.json\"\n[[market.trusted]]\nname = \"a\"\nkey = \"ed25519:zz\"\n",
                    "",
                ),
                vec!["rules.toml:8", "ed25519:zz"],
            ),
            ("unknown market key", config("", "[market]\nindexx = \"i.json\"\n", ""), vec!["rules.toml:5", "indexx"]),
        ];
        let mut cases = Vec::new();
        for (what, text, names) in &bad {
            for command in ["rules verify", "score -q --out o.jsonl", "rules list"] {
                cases.push(refused(format!("{command}: {what}"), job, write("rules.toml", text), command, names));
            }
        }
        // The config itself is not a readable file.
        for (what, setup, config, name) in [
            ("missing", nothing(), "missing.toml", "missing.toml"),
            ("a folder", mkdir("cdir"), "cdir", "not a regular file"),
            ("a device", nothing(), "/dev/zero", "not a regular file"),
        ] {
            for command in ["rules verify", "score -q --out o.jsonl", "rules list"] {
                let line = format!("{command} --config {config}");
                cases.push(refused(format!("{command}: config {what}"), job, setup.clone(), &line, &[config, name]));
            }
        }
        run_area("configs (rules.toml)", cases);
    }

    // --- Packs and the sandbox ---------------------------------------------------------------

    /// A rules.toml pinning `file` (in the case folder) as pack "p" at its real hash.
    fn pack_job(file: &'static str, bytes: Vec<u8>) -> Setup {
        Arc::new(move |dir: &Path| {
            let path = dir.join(file);
            if bytes.is_empty() && file.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::write(&path, &bytes).unwrap();
            }
            let hash = if path.is_file() { sha256_file(&path) } else { "0".repeat(64) };
            let text = format!(
                "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[[pack]]\nname = \"p\"\npath = \"{}\"\nsha256 = \"{hash}\"\n",
                file.trim_end_matches('/')
            );
            std::fs::write(dir.join("rules.toml"), text).unwrap();
        })
    }

    /// The job with the hostile pack and only `rule` enabled, a 200 ms wall-clock limit.
    fn hostile_job(rule: &'static str) -> Setup {
        Arc::new(move |dir: &Path| {
            let pack = hostile_pack();
            let text = format!(
                "[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[sandbox]\ntimeout_ms = 2000\n[[pack]]\nname = \"hostile\"\npath = \"{}\"\nsha256 = \"{}\"\nenable = [\"{rule}\"]\n",
                pack.display(),
                sha256_file(&pack)
            );
            std::fs::write(dir.join("rules.toml"), text).unwrap();
        })
    }

    #[test]
    fn packs_and_sandbox() {
        let mut cases = Vec::new();
        let mut broken: Vec<(&'static str, Vec<u8>)> = vec![
            ("junk.wasm", b"garbage".to_vec()),
            ("empty.wasm", Vec::new()),
            ("truncated.wasm", std::fs::read(example_pack()).unwrap()[..1000].to_vec()),
        ];
        for name in [
            "abi-too-new",
            "abi-too-old",
            "core-module",
            "imports-environment",
            "imports-filesystem",
            "imports-socket",
            "missing-export",
        ] {
            let file: &'static str = Box::leak(format!("{name}.wasm").into_boxed_str());
            broken.push((file, wat::parse_file(fixture(&format!("{name}.wat"))).unwrap()));
        }
        for (file, bytes) in broken {
            for command in ["rules verify", "score -q --out o.jsonl"] {
                cases.push(refused(
                    format!("{command}: pack {file}"),
                    job,
                    pack_job(file, bytes.clone()),
                    command,
                    &[file],
                ));
            }
        }
        for command in ["rules verify", "score -q --out o.jsonl"] {
            cases.push(refused(
                format!("{command}: pack is a folder"),
                job,
                pack_job("dir.wasm/", Vec::new()),
                command,
                &["dir.wasm"],
            ));
        }
        // Each hostile behaviour ends as an error record of its kind; the run finishes.
        for (rule, kind) in [
            ("loop-forever", "timeout"),
            ("memory-bomb", "out-of-memory"),
            ("panic", "panic"),
            ("huge-rationale", "malformed"),
            ("nan-verdict", "malformed"),
            ("out-of-range", "malformed"),
            ("stack-overflow", "crash"),
            ("always-fails", "rule-error"),
            ("asks-judge", "judge"),
        ] {
            let setup = hostile_job(rule);
            cases.push(custom(format!("hostile rule {rule}"), job, move |dir| {
                setup(dir);
                let output = engine(dir, &args("score -q --out o.jsonl"), BOUND)?;
                if !output.status.success() {
                    return Err(format!("score failed: {}", String::from_utf8_lossy(&output.stderr)));
                }
                let records = engine::score::read_strict(&dir.join("o.jsonl")).map_err(|e| e.to_string())?;
                if records.len() != 8 {
                    return Err(format!("{} records for 8 samples", records.len()));
                }
                for r in &records {
                    let text = serde_json::to_string(r).unwrap();
                    if !text.contains(&format!("\"kind\":\"{kind}\"")) {
                        return Err(format!("expected kind {kind}: {text}"));
                    }
                }
                Ok(())
            }));
        }
        run_area("packs and sandbox", cases);
    }

    // --- Commands that write files --------------------------------------------------------

    #[test]
    fn commands_that_write() {
        let symlink: Setup =
            Arc::new(|dir: &Path| std::os::unix::fs::symlink(dir.join("pairs.jsonl"), dir.join("link.jsonl")).unwrap());
        let mut cases = vec![
            refused(
                "score --out its input",
                job,
                nothing(),
                "score -q --input pairs.jsonl --out pairs.jsonl",
                &["--out", "pairs.jsonl"],
            ),
            refused(
                "score --out a symlink to its input",
                job,
                symlink.clone(),
                "score -q --input pairs.jsonl --out link.jsonl",
                &["link.jsonl", "pairs.jsonl"],
            ),
            refused(
                "score --out ./x/../input",
                job,
                mkdir("x"),
                "score -q --input pairs.jsonl --out ./x/../pairs.jsonl",
                &["pairs.jsonl"],
            ),
            refused("score --out a config", job, nothing(), "score -q --out rules.toml", &["rules.toml"]),
            refused(
                "score --out notes (not scores)",
                job,
                write("notes.txt", "my notes\n"),
                "score -q --out notes.txt",
                &["notes.txt:1", "not a scores file"],
            ),
            refused(
                "score --out scores damaged mid-file",
                job,
                write("d.jsonl", &format!("{}\n{{\"sample\": 17}}\n{}\n", first_record(), first_record())),
                "score -q --out d.jsonl",
                &["d.jsonl:2"],
            ),
            refused("score --out a folder", job, mkdir("adir"), "score -q --out adir", &["adir"]),
            refused(
                "label --out its pairs",
                job,
                nothing(),
                "label --scores s.jsonl --pairs pairs.jsonl --out pairs.jsonl",
                &["--pairs", "pairs.jsonl"],
            ),
            refused(
                "label --out its scores",
                job,
                nothing(),
                "label --scores s.jsonl --pairs pairs.jsonl --out s.jsonl",
                &["--scores", "s.jsonl"],
            ),
            refused(
                "label --out a symlink to its pairs",
                job,
                symlink.clone(),
                "label --scores s.jsonl --pairs pairs.jsonl --out link.jsonl",
                &["link.jsonl"],
            ),
            refused(
                "label --out a folder",
                job,
                mkdir("adir"),
                "label --scores s.jsonl --pairs pairs.jsonl --out adir",
                &["adir"],
            ),
            refused(
                "merge --out one of its inputs",
                job,
                write("e.jsonl", ""),
                "merge --out s.jsonl e.jsonl s.jsonl",
                &["s.jsonl"],
            ),
            refused("merge --out a folder", job, mkdir("adir"), "merge --out adir s.jsonl", &["adir"]),
            refused(
                "eval-labels --json over its gold",
                job,
                nothing(),
                "eval-labels --gold pairs.jsonl --scores s.jsonl --json pairs.jsonl",
                &["pairs.jsonl"],
            ),
            refused(
                "eval-labels --json over its scores",
                job,
                nothing(),
                "eval-labels --gold pairs.jsonl --scores s.jsonl --json s.jsonl",
                &["s.jsonl"],
            ),
            refused(
                "train --out the folder of its data",
                job,
                nothing(),
                "train --data pairs.jsonl --out .",
                &["--out", "pairs.jsonl"],
            ),
            refused(
                "train --out its data file",
                job,
                nothing(),
                "train --data pairs.jsonl --out pairs.jsonl",
                &["pairs.jsonl"],
            ),
            refused(
                "adapter train --out the folder of its data",
                job,
                nothing(),
                "adapter train --scores s.jsonl --pairs pairs.jsonl --out .",
                &["--out"],
            ),
        ];
        // Writes are atomic: a refused rewrite of an existing output keeps it; a good one
        // leaves no temporary files behind.
        cases.push(custom("label leaves no temporary files", job, |dir| {
            let output = engine(dir, &args("label --scores s.jsonl --pairs pairs.jsonl --out l2.jsonl"), BOUND)?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            let names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            // `.cache` is the plugin compile cache, not a half-written output.
            let stray: Vec<&String> =
                names.iter().filter(|n| n.contains(".tmp") || (n.starts_with('.') && *n != ".cache")).collect();
            if stray.is_empty() { Ok(()) } else { Err(format!("left behind: {stray:?}")) }
        }));
        cases.push(custom("score resumes to the same bytes after a torn last line", job, |dir| {
            let full = std::fs::read(dir.join("s.jsonl")).unwrap();
            let torn = &full[..full.len() - 40];
            std::fs::write(dir.join("r.jsonl"), torn).unwrap();
            let output = engine(dir, &args("score -q --out r.jsonl"), BOUND)?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            if std::fs::read(dir.join("r.jsonl")).unwrap() == full {
                Ok(())
            } else {
                Err("the resumed file differs".into())
            }
        }));
        run_area("commands that write files", cases);
    }

    // --- Signals, kills and closed pipes --------------------------------------------------

    /// A reward model export for `engine serve`, made once (an untrained MiniLM).
    fn reward_model() -> Option<&'static Path> {
        static MODEL: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
        MODEL.get_or_init(crate::eval::tiny_model).as_ref().map(|dir| dir.path())
    }

    /// Starts `engine ARGS --addr 127.0.0.1:0` and reads the address it prints.
    fn start_server(args: &[&str]) -> Result<(std::process::Child, String), String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .map_err(|e| e.to_string())?;
        match line.trim().strip_prefix("listening on http://") {
            Some(addr) => Ok((child, addr.to_owned())),
            None => {
                let _ = child.kill();
                Err(format!("the server printed {line:?}"))
            }
        }
    }

    /// What a stalled client sends before it stops: part of a request.
    #[derive(Clone, Copy)]
    enum Stall {
        /// Nothing at all: an idle connection.
        Idle,
        /// Half the headers.
        Headers,
        /// All headers, `Content-Length: 1000`, and 9 bytes of body.
        Body,
    }

    fn stall(addr: &str, path: &str, stall: Stall) -> Result<TcpStream, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let text = match stall {
            Stall::Idle => String::new(),
            Stall::Headers => format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Ty"),
            Stall::Body => format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"items\":"
            ),
        };
        stream.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(stream)
    }

    /// Sends `signal` to the server with a stalled client connected and checks that it
    /// exits within 8 s (the drain is 5 s).
    fn signal_case(name: &str, server: fn() -> Option<Vec<String>>, how: Stall, signal: &'static str) -> Case {
        custom(name, job, move |_| {
            let Some(args) = server() else { return Ok(()) };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (mut child, addr) = start_server(&args)?;
            let path = if args[0] == "serve-judge" { "/v1/completions" } else { "/score" };
            let _client = stall(&addr, path, how)?;
            // The server has the connection once a second one is answered.
            let mut probe = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
            probe
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            let _ = probe.read_to_string(&mut answer);
            Command::new("kill").args([signal, &child.id().to_string()]).status().map_err(|e| e.to_string())?;
            let sent = Instant::now();
            while child.try_wait().map_err(|e| e.to_string())?.is_none() {
                if sent.elapsed() > Duration::from_secs(8) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("still running 8 s after the signal, with a stalled client".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    }

    fn serve_args() -> Option<Vec<String>> {
        reward_model().map(|m| vec!["serve".into(), "--model".into(), m.display().to_string()])
    }

    fn serve_judge_args() -> Option<Vec<String>> {
        let model = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        model.is_file().then(|| vec!["serve-judge".into(), "--model".into(), model.display().to_string()])
    }

    #[test]
    fn signals_and_kills() {
        let mut cases = Vec::new();
        for (server, name) in [(serve_args as fn() -> Option<Vec<String>>, "serve"), (serve_judge_args, "serve-judge")]
        {
            for (how, what) in [
                (Stall::Idle, "an idle client"),
                (Stall::Headers, "half-sent headers"),
                (Stall::Body, "a half-sent body"),
            ] {
                for signal in ["-TERM", "-INT"] {
                    cases.push(signal_case(&format!("{name}: SIG{} with {what}", &signal[1..]), server, how, signal));
                }
            }
        }
        // A closed stdout (SIGPIPE / EPIPE) ends quietly with status 0.
        for command in [
            "rules list",
            "rules verify",
            "score -q --out o.jsonl",
            "label --scores s.jsonl --pairs pairs.jsonl --out o.jsonl",
            "merge --out o.jsonl s.jsonl",
            "explain t1 --labels l.jsonl",
        ] {
            cases.push(custom(format!("closed stdout: {command}"), job, move |dir| {
                let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
                drop(reader);
                let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
                    .args(args(command))
                    .current_dir(dir)
                    .stdout(writer)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                let started = Instant::now();
                let status = loop {
                    if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                        break status;
                    }
                    if started.elapsed() > BOUND {
                        let _ = child.kill();
                        return Err("hung".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).map_err(|e| e.to_string())?;
                if err.contains("panicked") || status.code() != Some(0) {
                    return Err(format!("{status:?}: {err}"));
                }
                Ok(())
            }));
        }
        // kill -9 at an arbitrary point, then the same command: the same bytes as one run.
        for delay_ms in [0u64, 5, 20] {
            cases.push(custom(format!("kill -9 after {delay_ms} ms, then resume"), job, move |dir| {
                let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
                    .args(args("score -q --out k.jsonl"))
                    .current_dir(dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(delay_ms));
                let _ = child.kill();
                let _ = child.wait();
                let output = engine(dir, &args("score -q --out k.jsonl"), BOUND)?;
                if !output.status.success() {
                    return Err(String::from_utf8_lossy(&output.stderr).into_owned());
                }
                if std::fs::read(dir.join("k.jsonl")).unwrap() == std::fs::read(dir.join("s.jsonl")).unwrap() {
                    Ok(())
                } else {
                    Err("the resumed output differs from an uninterrupted run".into())
                }
            }));
        }
        run_area("signals and kills", cases);
    }

    // --- Servers ------------------------------------------------------------------------

    /// Reward = the response's length; each model call takes `delay` and is recorded. While
    /// `gate` holds `true`, calls wait for it to turn `false`.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<String>>,
        calls: std::sync::atomic::AtomicUsize,
        delay: Duration,
        gate: Mutex<bool>,
    }

    impl RewardScorer for Recorder {
        fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, String> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while *self.gate.lock().unwrap() {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(self.delay);
            self.seen.lock().unwrap().extend(items.iter().map(|(_, r)| r.clone()));
            Ok(items.iter().map(|(_, r)| r.len() as f32).collect())
        }

        fn model_id(&self) -> String {
            "recorder".into()
        }
    }

    fn local(opts: ServeOptions, scorer: Arc<Recorder>) -> engine::serve::reward::RunningServer {
        spawn(scorer, ServeOptions { addr: "127.0.0.1:0".parse().unwrap(), ..opts }).unwrap()
    }

    /// Sends raw bytes, then reads the answer until the server closes or `limit` passes.
    fn raw(addr: std::net::SocketAddr, request: &[u8], limit: Duration) -> Result<String, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(limit)).unwrap();
        stream.write_all(request).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => Ok(String::from_utf8_lossy(&answer).into_owned()),
            Err(e) if !answer.is_empty() => Ok(format!("{}{e}", String::from_utf8_lossy(&answer))),
            Err(e) => Err(format!("no answer within {limit:?}: {e}")),
        }
    }

    fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> Result<String, String> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw(addr, request.as_bytes(), Duration::from_secs(20))
    }

    #[test]
    fn servers() {
        let mut cases = Vec::new();
        let big = format!("{{\"items\": [{}]}}", vec![r#"{"prompt": "p", "response": "r"}"#; 5000].join(","));
        // (what, method and path, body, status line, what the answer must name)
        let requests: Vec<(&str, &str, String, &str, &str)> = vec![
            ("not JSON", "POST /score", "{oops".into(), "400", "not valid JSON"),
            ("items missing", "POST /score", "{}".into(), "400", "\"field\":\"items\""),
            ("items not a list", "POST /score", r#"{"items": 3}"#.into(), "400", "expected a list"),
            ("an item not an object", "POST /score", r#"{"items": [3]}"#.into(), "400", "items[0]"),
            ("prompt missing", "POST /score", r#"{"items": [{"response": "r"}]}"#.into(), "400", "items[0].prompt"),
            (
                "response a number",
                "POST /score",
                r#"{"items": [{"prompt": "p", "response": 3}]}"#.into(),
                "400",
                "items[0].response",
            ),
            (
                "a bad role",
                "POST /score",
                r#"{"items": [{"prompt": [{"role": "robot", "content": "x"}], "response": "r"}]}"#.into(),
                "400",
                "items[0].prompt[0].role",
            ),
            ("a body that is a list", "POST /score", "[]".into(), "400", "expected a JSON object"),
            ("query not a list", "POST /get_reward", r#"{"query": "q"}"#.into(), "400", "query"),
            ("a query a number", "POST /get_reward", r#"{"query": [3]}"#.into(), "400", "query[0]"),
            ("too many items", "POST /score", big, "413", "--max-items"),
            (
                "a body over the limit",
                "POST /score",
                format!("{{\"items\": [], \"pad\": \"{}\"}}", "x".repeat(5 << 20)),
                "413",
                "--max-body-bytes",
            ),
            ("unknown path", "POST /nope", "{}".into(), "404", "no such endpoint"),
            ("wrong method", "GET /score", String::new(), "405", "method not allowed"),
            ("empty items", "POST /score", r#"{"items": []}"#.into(), "200", "\"rewards\":[]"),
        ];
        for (what, route, body, status, name) in requests {
            cases.push(custom(format!("serve: {what}"), job, move |_| {
                let server = local(ServeOptions { max_items: 4096, ..ServeOptions::default() }, Arc::new(Recorder::default()));
                let (method, path) = route.split_once(' ').unwrap();
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let answer = raw(server.addr(), request.as_bytes(), Duration::from_secs(20))?;
                let first = answer.lines().next().unwrap_or_default().to_owned();
                if !first.contains(status) || !answer.contains(name) {
                    return Err(format!("expected {status} naming {name:?}: {}", &answer[..answer.len().min(400)]));
                }
                Ok(())
            }));
        }
        cases.push(custom("serve: a garbage request line gets 400", job, |_| {
            let server = local(ServeOptions::default(), Arc::new(Recorder::default()));
            let answer = raw(server.addr(), b"\x16\x03\x01 hello\r\n\r\n", Duration::from_secs(10))?;
            if answer.is_empty() || answer.starts_with("HTTP/1.1 400") { Ok(()) } else { Err(answer) }
        }));
        for (how, what) in
            [(Stall::Idle, "an idle client"), (Stall::Headers, "half-sent headers"), (Stall::Body, "a half-sent body")]
        {
            cases.push(custom(format!("serve: shutdown with {what} ends within the drain"), job, move |_| {
                let server = local(ServeOptions::default(), Arc::new(Recorder::default()));
                let _client = stall(&server.addr().to_string(), "/score", how)?;
                post(server.addr(), "/score", r#"{"items": [{"prompt": "p", "response": "r"}]}"#)?;
                let started = Instant::now();
                let (done, waited) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = done.send(server.shutdown().is_ok());
                });
                match waited.recv_timeout(engine::serve::DRAIN + Duration::from_secs(3)) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("the shutdown failed".into()),
                    Err(_) => Err(format!("still draining after {:?}", started.elapsed())),
                }
            }));
        }
        cases.push(custom("serve: half-sent headers are dropped after the header timeout", job, |_| {
            let server = local(ServeOptions::default(), Arc::new(Recorder::default()));
            let started = Instant::now();
            let mut client = stall(&server.addr().to_string(), "/score", Stall::Headers)?;
            client.set_read_timeout(Some(engine::serve::HEADER_TIMEOUT + Duration::from_secs(10))).unwrap();
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer);
            let waited = started.elapsed();
            if waited < engine::serve::HEADER_TIMEOUT + Duration::from_secs(9) {
                Ok(())
            } else {
                Err(format!("open after {waited:?}"))
            }
        }));
        cases.push(custom("serve: a half-sent body gets 408 after the body timeout", job, |_| {
            let server = local(ServeOptions::default(), Arc::new(Recorder::default()));
            let mut client = stall(&server.addr().to_string(), "/score", Stall::Body)?;
            client.set_read_timeout(Some(engine::serve::BODY_TIMEOUT + Duration::from_secs(10))).unwrap();
            let mut answer = vec![0; 4096];
            let n = client.read(&mut answer).map_err(|e| format!("no answer: {e}"))?;
            let answer = String::from_utf8_lossy(&answer[..n]);
            if answer.starts_with("HTTP/1.1 408") && answer.contains("did not arrive") {
                Ok(())
            } else {
                Err(answer.into_owned())
            }
        }));
        cases.push(custom("serve: a small request is not starved behind a huge one", job, |_| {
            let scorer = Arc::new(Recorder { delay: Duration::from_millis(20), ..Recorder::default() });
            let server = local(ServeOptions { max_batch: 4, ..ServeOptions::default() }, scorer.clone());
            let addr = server.addr();
            let big = format!("{{\"items\": [{}]}}", vec![r#"{"prompt": "p", "response": "big"}"#; 400].join(","));
            let huge = std::thread::spawn(move || post(addr, "/score", &big));
            let deadline = Instant::now() + Duration::from_secs(10);
            while scorer.calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                if Instant::now() > deadline {
                    return Err("the huge request never reached the model".into());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let small = post(addr, "/score", r#"{"items": [{"prompt": "p", "response": "small"}]}"#)?;
            let finished = huge.is_finished();
            let _ = huge.join();
            if !small.contains("\"rewards\":[5.0]") {
                return Err(format!("small answered {small}"));
            }
            if finished {
                Err("the small request was answered only after the huge one (100 batches)".into())
            } else {
                Ok(())
            }
        }));
        cases.push(custom("serve: a request whose client left is not scored", job, |_| {
            let scorer = Arc::new(Recorder::default());
            *scorer.gate.lock().unwrap() = true;
            let server =
                local(ServeOptions { max_wait: Duration::from_millis(1), ..ServeOptions::default() }, scorer.clone());
            let addr = server.addr();
            let first = std::thread::spawn(move || {
                post(addr, "/score", r#"{"items": [{"prompt": "p", "response": "first"}]}"#)
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while scorer.calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                if Instant::now() > deadline {
                    return Err("the first request never reached the model".into());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // The model is busy with `first`: this request waits, and its client leaves.
            let body = r#"{"items": [{"prompt": "p", "response": "gone"}]}"#;
            let mut leaver = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            write!(leaver, "POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .map_err(|e| e.to_string())?;
            // The request reaches the server once a later one on another connection is parsed.
            let mut probe = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            probe
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            let _ = probe.read_to_string(&mut answer);
            drop(leaver);
            // Give the server the FIN: a third request after the close is parsed after it.
            let mut probe = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            probe
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let _ = probe.read_to_string(&mut answer);
            std::thread::sleep(Duration::from_millis(200));
            *scorer.gate.lock().unwrap() = false;
            first.join().unwrap()?;
            server.shutdown().map_err(|e| e.to_string())?;
            let seen = scorer.seen.lock().unwrap();
            if seen.iter().any(|r| r == "gone") { Err(format!("scored for nobody: {seen:?}")) } else { Ok(()) }
        }));
        run_area("servers", cases);
    }

    // --- The marketplace ------------------------------------------------------------------

    /// Keys alice and bob, ex.rpack (signed by alice) and u.rpack (unsigned), an index in
    /// idx/ holding ex 1.0.0, and job/rules.toml trusting alice with that index.
    fn market() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            std::fs::write(
                d.join("info.toml"),
                "name = \"ex\"\nversion = \"1.0.0\"\ndescription = \"d\"\ncategories = [\"tone\"]\nauthor = \"A\"\nlicense = \"MIT\"\ncapabilities = []\n[prompts]\n",
            )
            .unwrap();
            let wasm = example_pack().display().to_string();
            for command in [
                "pack keygen -o alice.key".to_owned(),
                "pack keygen -o bob.key".to_owned(),
                format!("pack build --wasm {wasm} --manifest info.toml -o ex.rpack"),
                format!("pack build --wasm {wasm} --manifest info.toml -o u.rpack"),
                "pack sign ex.rpack -k alice.key".to_owned(),
                "pack publish ex.rpack --index idx/index.json".to_owned(),
            ] {
                let output = engine(d, &args(&command), BOUND).unwrap();
                assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
            }
            let key = std::fs::read_to_string(d.join("alice.key.pub")).unwrap();
            std::fs::create_dir_all(d.join("job")).unwrap();
            std::fs::write(
                d.join("job/rules.toml"),
                format!("[job]\ninput = \"pairs.jsonl\"\noutput = \"out\"\n[market]\nindex = \"../idx/index.json\"\n[[market.trusted]]\nname = \"alice\"\nkey = \"{}\"\n", key.trim()),
            )
            .unwrap();
            dir
        })
        .path()
    }

    /// Edits idx/index.json's only entry.
    fn edit_index(edit: fn(&mut serde_json::Value)) -> Setup {
        Arc::new(move |dir: &Path| {
            let path = dir.join("idx/index.json");
            let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            edit(&mut index["packs"][0]);
            std::fs::write(path, index.to_string()).unwrap();
        })
    }

    #[test]
    fn marketplace() {
        let truncate: Setup = Arc::new(|dir: &Path| {
            let bytes = std::fs::read(dir.join("ex.rpack")).unwrap();
            std::fs::write(dir.join("t.rpack"), &bytes[..200]).unwrap();
        });
        let cut_bundle: Setup = Arc::new(|dir: &Path| {
            let path = dir.join("idx/bundles/ex-1.0.0.rpack");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        });
        let trust_bob: Setup = Arc::new(|dir: &Path| {
            let path = dir.join("job/rules.toml");
            let alice = std::fs::read_to_string(dir.join("alice.key.pub")).unwrap();
            let bob = std::fs::read_to_string(dir.join("bob.key.pub")).unwrap();
            let text = std::fs::read_to_string(&path).unwrap().replace(alice.trim(), bob.trim());
            std::fs::write(path, text).unwrap();
        });
        let c = "--config job/rules.toml";
        let cases = vec![
            refused(
                "keygen over an existing key",
                market,
                nothing(),
                "pack keygen -o alice.key",
                &["alice.key", "overwrite"],
            ),
            refused(
                "verify a truncated bundle",
                market,
                truncate,
                "pack verify t.rpack --trusted-key alice.key.pub",
                &["t.rpack", "truncated"],
            ),
            refused(
                "verify a file that is not a bundle",
                market,
                write("j.rpack", "junk"),
                "pack verify j.rpack --allow-unsigned",
                &["j.rpack", "not a bundle"],
            ),
            refused(
                "verify a wasm as a bundle",
                market,
                nothing(),
                "pack verify info.toml --allow-unsigned",
                &["info.toml"],
            ),
            refused("verify an unsigned bundle", market, nothing(), "pack verify u.rpack", &["u.rpack", "UNSIGNED"]),
            refused(
                "verify with a key that did not sign",
                market,
                nothing(),
                "pack verify ex.rpack --trusted-key bob.key.pub",
                &["ex.rpack", "does not trust"],
            ),
            refused(
                "sign with a public key",
                market,
                nothing(),
                "pack sign u.rpack -k alice.key.pub",
                &["alice.key.pub", "public key"],
            ),
            refused("sign with a missing key", market, nothing(), "pack sign u.rpack -k nokey", &["nokey"]),
            refused(
                "build from a bad manifest",
                market,
                write("bad.toml", "name = 3\n"),
                "pack build --wasm u.rpack --manifest bad.toml -o b.rpack",
                &["bad.toml"],
            ),
            refused(
                "build from a wasm that is not one",
                market,
                nothing(),
                "pack build --wasm info.toml --manifest info.toml -o b.rpack",
                &["info.toml"],
            ),
            refused(
                "search an index that is not JSON",
                market,
                write("bad.json", "{oops"),
                &format!("rules search ex --index bad.json {c}"),
                &["bad.json", "not an index"],
            ),
            refused(
                "publish into an index that is not JSON",
                market,
                write("bad.json", "{oops"),
                "pack publish ex.rpack --index bad.json",
                &["bad.json", "not an index"],
            ),
            refused(
                "add a pack the index lacks",
                market,
                nothing(),
                &format!("rules add nope {c}"),
                &["no pack named", "nope"],
            ),
            refused(
                "add a version the index lacks",
                market,
                nothing(),
                &format!("rules add ex@>=2 {c}"),
                &["no version of ex", ">=2"],
            ),
            refused(
                "add with a bad version requirement",
                market,
                nothing(),
                &format!("rules add ex@garbage {c}"),
                &["garbage"],
            ),
            refused(
                "remove a pack not installed",
                market,
                nothing(),
                &format!("rules remove ex {c}"),
                &["ex", "not installed"],
            ),
            refused(
                "add from an index that misstates the rules",
                market,
                edit_index(|p| p["rules"] = serde_json::json!(["other-rule"])),
                &format!("rules add ex {c}"),
                &["ex"],
            ),
            refused(
                "add from an index that lies about the hash",
                market,
                edit_index(|p| p["sha256"] = "0".repeat(64).into()),
                &format!("rules add ex {c}"),
                &["ex", "sha256"],
            ),
            refused("add a bundle cut short", market, cut_bundle, &format!("rules add ex {c}"), &["ex"]),
            refused("add a pack by a publisher not trusted", market, trust_bob, &format!("rules add ex {c}"), &["ex"]),
            refused(
                "add from a missing index",
                market,
                nothing(),
                &format!("rules add ex --index nowhere.json {c}"),
                &["nowhere.json"],
            ),
            refused(
                "add from an index with a bad version",
                market,
                edit_index(|p| p["version"] = "1.x".into()),
                &format!("rules add ex {c}"),
                &["1.x"],
            ),
        ];
        run_area("marketplace", cases);
    }
}
