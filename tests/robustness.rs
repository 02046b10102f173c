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
