//! Hostile plugins: each misbehaviour gives its own clear, classified error, fails only
//! that one evaluation, and costs no other result.

use std::sync::Arc;

use engine::data::{Message, Sample};
use engine::judge::{Judge, JudgeError, Judgement};
use engine::plugin::{FailureKind, Grants, PluginError, PluginSpec, Runtime, SandboxLimits};

use crate::util::{example_pack, fixture, hostile_pack, sha256_file};

fn spec(path: std::path::PathBuf) -> PluginSpec {
    PluginSpec { name: "t".into(), sha256: Some(sha256_file(&path)), path, config: vec![], grants: Grants::default() }
}

fn limits() -> SandboxLimits {
    // Small fuel so the runaway loop ends fast; still ample for every honest rule.
    SandboxLimits { fuel_per_call: 100_000_000, memory_mib: 16, ..SandboxLimits::default() }
}

fn sample(response: &str) -> Arc<Sample> {
    Arc::new(Sample { prompt: vec![Message::user("hello?")], response: response.into() })
}

fn failure(runtime: &Runtime, spec: &PluginSpec, rule: &str) -> (FailureKind, String) {
    let plugin = runtime.load(spec).unwrap();
    let failure = plugin.evaluate(rule, &sample("a response")).result.unwrap_err();
    (failure.kind, failure.message)
}

#[test]
fn each_hostile_behaviour_is_classified_and_the_instance_recovers() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let plugin = runtime.load(&spec(hostile_pack())).unwrap();
    let cases: &[(&str, FailureKind, &str)] = &[
        ("loop-forever", FailureKind::Timeout, "ran out of fuel (100000000 units per call)"),
        ("memory-bomb", FailureKind::OutOfMemory, "limit 16777216"),
        ("panic", FailureKind::Panic, "hostile panic on a 10-byte response"),
        ("huge-rationale", FailureKind::Malformed, "rationale is 8388608 bytes; the limit is 2048"),
        ("nan-verdict", FailureKind::Malformed, "score NaN is not a number in [-1, 1]"),
        ("out-of-range", FailureKind::Malformed, "score 3 is not a number in [-1, 1]"),
        ("stack-overflow", FailureKind::Crash, "stack overflow"),
        ("always-fails", FailureKind::RuleError, "this rule always fails"),
        ("asks-judge", FailureKind::Judge, "judge not granted"),
    ];
    let honest = sample("a response");
    let expected_ok = plugin.evaluate("ok-rule", &honest).result.unwrap();
    for (rule, kind, message) in cases {
        let failure = plugin.evaluate(rule, &honest).result.unwrap_err();
        assert_eq!(failure.kind, *kind, "{rule}: {failure}");
        assert!(failure.message.contains(message), "{rule}: {failure}");
        // The trapped instance was dropped; the next call gets a working one.
        assert_eq!(plugin.evaluate("ok-rule", &honest).result.unwrap(), expected_ok, "after {rule}");
    }
}

#[test]
fn no_files_environment_or_network_inside_the_sandbox() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let plugin = runtime.load(&spec(hostile_pack())).unwrap();
    for rule in ["read-file", "read-env", "open-socket"] {
        let verdict = plugin.evaluate(rule, &sample("x")).result.unwrap();
        assert_eq!(verdict.score, 1.0, "{rule} reached the outside world: {:?}", verdict.rationale);
        assert!(verdict.rationale.unwrap().starts_with("no "), "{rule}");
    }
}

#[test]
fn a_wall_clock_deadline_stops_what_fuel_would_not() {
    let generous_fuel = SandboxLimits { fuel_per_call: u64::MAX / 2, timeout_ms: 200, ..limits() };
    let runtime = Runtime::new(generous_fuel, None, None).unwrap();
    let (kind, message) = failure(&runtime, &spec(hostile_pack()), "loop-forever");
    assert_eq!(kind, FailureKind::Timeout);
    assert_eq!(message, "exceeded the 200 ms deadline");
}

#[test]
fn log_volume_is_capped_and_counted() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let plugin = runtime.load(&spec(hostile_pack())).unwrap();
    let evaluation = plugin.evaluate("log-flood", &sample("x"));
    assert!(evaluation.result.is_ok());
    let bytes: usize = evaluation.logs.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= SandboxLimits::default().max_log_bytes_per_call, "{bytes}");
    assert!(evaluation.logs_dropped > 90_000, "{}", evaluation.logs_dropped);
}

#[test]
fn judge_needs_a_grant_and_then_a_configured_judge() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let granted = PluginSpec { grants: Grants { judge: true }, ..spec(hostile_pack()) };
    let (kind, message) = failure(&runtime, &granted, "asks-judge");
    assert_eq!(kind, FailureKind::Judge);
    assert_eq!(message, "no judge configured for this job");
}

#[test]
fn a_refused_config_fails_the_load_naming_the_file() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let refusing = PluginSpec { config: vec![("refuse".into(), "because".into())], ..spec(hostile_pack()) };
    let err = runtime.load(&refusing).unwrap_err().to_string();
    assert!(err.contains("hostile-pack.wasm") && err.contains("refusing config: because"), "{err}");
}

#[test]
fn a_tampered_file_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let original = example_pack();
    let mut bytes = std::fs::read(&original).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = dir.path().join("example-rule.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let pinned = PluginSpec { path: tampered.clone(), ..spec(original) };
    let err = runtime.load(&pinned).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::HashMismatch { .. }));
    assert!(text.contains(&tampered.display().to_string()), "{text}");
    assert!(text.contains(pinned.sha256.as_deref().unwrap()) && text.contains(&sha256_file(&tampered)), "{text}");
}

/// Components that try to import WASI, or carry the wrong ABI, never get compiled.
#[test]
fn forbidden_imports_wrong_abi_and_missing_exports_are_refused_at_load() {
    let runtime = Runtime::new(limits(), None, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("imports-filesystem.wat", "imports `wasi:filesystem/preopens@0.2.0`, which is not allowed"),
        ("imports-environment.wat", "imports `wasi:cli/environment@0.2.0`, which is not allowed"),
        ("imports-socket.wat", "imports `wasi:sockets/tcp-create-socket@0.2.0`, which is not allowed"),
        (
            "abi-too-old.wat",
            "built for ABI safety:rules@0.0.3, which is too old for this engine (supports 0.1.0 through 0.1.x)",
        ),
        (
            "abi-too-new.wat",
            "built for ABI safety:rules@0.2.0, which is newer than this engine supports (0.1.0 through 0.1.x)",
        ),
        ("missing-export.wat", "exports no `safety:rules/rule-pack` interface"),
        ("core-module.wat", "is a core WebAssembly module, not a component"),
    ];
    for (name, expected) in cases {
        let wasm = dir.path().join(name.replace(".wat", ".wasm"));
        std::fs::write(&wasm, wat::parse_file(fixture(name)).unwrap()).unwrap();
        let err = runtime.load(&spec(wasm.clone())).unwrap_err().to_string();
        assert!(err.starts_with(&wasm.display().to_string()), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn the_compiled_cache_is_used_on_the_second_load_and_a_damaged_entry_is_replaced() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(limits(), Some(cache.path().to_path_buf()), None).unwrap();
    let first = runtime.load(&spec(example_pack())).unwrap();
    assert!(!first.from_cache);
    let second = runtime.load(&spec(example_pack())).unwrap();
    assert!(second.from_cache);
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].file_name().unwrap().to_str().unwrap().starts_with(&first.sha256));
    std::fs::write(&entries[0], b"garbage").unwrap();
    let third = runtime.load(&spec(example_pack())).unwrap();
    assert!(!third.from_cache, "a damaged entry is recompiled, not trusted");
    assert_eq!(third.evaluate("no-shouting", &sample("STOP SHOUTING AT ME")).result.unwrap().score, -1.0);
}

/// A judge that answers from the question's text and notes how it was asked.
struct NotingJudge {
    batches: bool,
    asked_one_by_one: std::sync::Mutex<Vec<String>>,
    asked_together: std::sync::Mutex<Vec<Vec<String>>>,
}

impl NotingJudge {
    fn new(batches: bool) -> Arc<NotingJudge> {
        Arc::new(NotingJudge { batches, asked_one_by_one: Default::default(), asked_together: Default::default() })
    }

    fn answer(question: &str) -> Judgement {
        // "Is the response about the request?" gets a confident yes, so the adaptive rule
        // asks its second question; everything else a length-dependent answer.
        let p_yes =
            if question.starts_with("Is the response about") { 0.9 } else { (question.len() % 7) as f32 / 10.0 };
        Judgement { p_yes, p_no: 0.25 }
    }
}

impl Judge for NotingJudge {
    fn id(&self) -> &str {
        "noting"
    }
    fn ask(&self, _: &Sample, question: &str) -> Result<Judgement, JudgeError> {
        self.asked_one_by_one.lock().unwrap().push(question.to_owned());
        Ok(Self::answer(question))
    }
    fn ask_many(&self, _: &Sample, questions: &[&str]) -> Vec<Result<Judgement, JudgeError>> {
        self.asked_together.lock().unwrap().push(questions.iter().map(|q| q.to_string()).collect());
        questions.iter().map(|q| Ok(Self::answer(q))).collect()
    }
    fn batches(&self) -> bool {
        self.batches
    }
}

/// With a judge that batches, a pack's questions about a sample reach it together (the
/// dry run notes them), and the verdicts, logs and judge-call counts are exactly those of
/// asking one by one. A question that depends on an answer is asked on its own.
#[test]
fn a_packs_judge_questions_about_a_sample_are_batched_without_changing_a_verdict() {
    let rules_file = std::fs::read_to_string(crate::util::root().join("plugins/judge-rules/rules.toml")).unwrap();
    let judge_pack = PluginSpec {
        grants: Grants { judge: true },
        config: vec![("rules".into(), rules_file)],
        ..spec(crate::util::root().join("plugins/dist/judge-rules.wasm"))
    };
    let hostile = PluginSpec { grants: Grants { judge: true }, ..spec(hostile_pack()) };
    let cases: [(&PluginSpec, &[&str]); 2] = [
        (&judge_pack, &["weapons.no-build-instructions", "harassment.no-insults", "weapons.no-illegal-acquisition"]),
        (&hostile, &["asks-judge", "asks-adaptively", "ok-rule"]),
    ];
    for (spec, rules) in cases {
        let (plain, batching) = (NotingJudge::new(false), NotingJudge::new(true));
        let one_by_one = Runtime::new(limits(), None, Some(plain.clone())).unwrap().load(spec).unwrap();
        let together = Runtime::new(limits(), None, Some(batching.clone())).unwrap().load(spec).unwrap();
        for response in ["Sure, here is how.", "No."] {
            let s = sample(response);
            assert_eq!(together.evaluate_many(rules, &s), one_by_one.evaluate_many(rules, &s), "{rules:?}");
        }
        assert!(plain.asked_together.lock().unwrap().is_empty(), "a judge that does not batch is asked one by one");
        let batches = batching.asked_together.lock().unwrap().clone();
        assert_eq!(batches.len(), 2, "one batch per sample: {batches:?}");
        let live = batching.asked_one_by_one.lock().unwrap().clone();
        if spec.path.ends_with("judge-rules.wasm") {
            // Three follow questions and two categories' relevance questions.
            assert_eq!(batches[0].len(), 5, "{batches:?}");
            assert!(live.is_empty(), "every question was in the batch: {live:?}");
        } else {
            assert_eq!(batches[0], ["Does the response follow the rule?", "Is the response about the request?"]);
            assert_eq!(live, ["Does the response answer the request in full?"; 2], "asked after the answer it needs");
        }
    }
}

/// A pack granted the judge whose dry runs note no question on 8 samples in a row stops
/// getting them: the next sample's questions go to the judge one by one, with the same
/// verdicts. Those questions bring the dry runs (and the batches) back for later samples.
#[test]
fn dry_runs_stop_for_a_pack_that_asks_nothing_and_resume_when_it_asks() {
    let hostile = PluginSpec { grants: Grants { judge: true }, ..spec(hostile_pack()) };
    let (plain, batching) = (NotingJudge::new(false), NotingJudge::new(true));
    let one_by_one = Runtime::new(limits(), None, Some(plain.clone())).unwrap().load(&hostile).unwrap();
    let together = Runtime::new(limits(), None, Some(batching.clone())).unwrap().load(&hostile).unwrap();
    for n in 0..8 {
        let s = sample(&format!("response {n}"));
        assert_eq!(together.evaluate_many(&["ok-rule"], &s), one_by_one.evaluate_many(&["ok-rule"], &s));
    }
    let rules = ["asks-judge", "asks-adaptively"];
    let s = sample("Sure, here is how.");
    assert_eq!(together.evaluate_many(&rules, &s), one_by_one.evaluate_many(&rules, &s));
    assert!(batching.asked_together.lock().unwrap().is_empty(), "no dry run, so no batch");
    assert_eq!(batching.asked_one_by_one.lock().unwrap().len(), 3, "every question asked on its own");
    let s = sample("No.");
    assert_eq!(together.evaluate_many(&rules, &s), one_by_one.evaluate_many(&rules, &s));
    assert_eq!(batching.asked_together.lock().unwrap().len(), 1, "dry runs again: one batch");
}
