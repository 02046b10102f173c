//! `engine score`: canonical output, exact resume after kill -9, shards that merge into
//! the unsharded file, quarantine, and reuse after the rule set changes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::score::{Outcome, read_strict};

use crate::util::{Pack, TempJob, core_pack, example_pack, hostile_pack, shared_data, stderr, stdout};
use engine::data::Pref;

/// The example pack plus two honest hostile-pack rules.
fn job(extra: &str) -> TempJob {
    let hostile_only_honest = "disable = [\"loop-forever\", \"memory-bomb\", \"panic\", \"huge-rationale\", \"nan-verdict\", \
        \"out-of-range\", \"stack-overflow\", \"read-file\", \"read-env\", \"open-socket\", \"log-flood\", \"always-fails\", \
        \"asks-judge\", \"asks-adaptively\", \"traps-sometimes\"]";
    TempJob::new(
        &[Pack::new("example", example_pack()), Pack::new("hostile", hostile_pack()).with(hostile_only_honest)],
        extra,
        "",
    )
}

fn score(job: &TempJob, args: &[&str]) -> String {
    let mut all = vec!["score", "--quiet"];
    all.extend_from_slice(args);
    let output = job.engine(&all);
    assert!(output.status.success(), "{}", stderr(&output));
    stderr(&output)
}

fn read(job: &TempJob, name: &str) -> String {
    std::fs::read_to_string(job.path(name)).unwrap()
}

#[test]
fn output_is_canonical_and_a_rerun_resumes_everything() {
    let job = job("");
    job.write_pairs(30);
    score(&job, &["--out", "a.jsonl"]);
    let text = read(&job, "a.jsonl");
    let records = read_strict(&job.path("a.jsonl")).unwrap();
    assert_eq!(records.len(), 60 * 3, "30 pairs = 60 unique samples, 3 rules");
    let keys: Vec<(String, String)> = records.iter().map(|r| (r.sample.clone(), r.rule.clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by sample hash, then rule id");
    let shouting = records
        .iter()
        .filter(|r| r.rule == "no-shouting" && matches!(r.outcome, Outcome::Ok { score, .. } if score < 0.0));
    assert_eq!(shouting.count(), 30, "every rejected (capitals) response violates no-shouting");

    let again = score(&job, &["--out", "a.jsonl", "-j", "1"]);
    assert!(again.contains("0 computed, 180 resumed"), "{again}");
    assert_eq!(read(&job, "a.jsonl"), text);
}

#[test]
fn a_torn_write_is_dropped_and_the_finished_file_is_identical() {
    let job = job("");
    job.write_pairs(40);
    score(&job, &["--out", "full.jsonl"]);
    let full = read(&job, "full.jsonl");
    // What kill -9 in the middle of a write leaves: a prefix ending in half a line.
    let cut = full.len() * 2 / 5 + 17;
    std::fs::write(job.path("cut.jsonl"), &full[..cut]).unwrap();
    let complete_lines = full[..cut].matches('\n').count();
    let log = score(&job, &["--out", "cut.jsonl"]);
    assert!(log.contains(&format!("{complete_lines} resumed")), "{log}");
    assert_eq!(read(&job, "cut.jsonl"), full);
}

#[test]
fn kill_dash_nine_midway_then_rerun_matches_an_uninterrupted_run() {
    // `busy` burns a few million instructions per call, so the run takes long enough to
    // be killed in the middle.
    let job = TempJob::new(
        &[Pack::new("hostile", hostile_pack()).with(
            "disable = [\"loop-forever\", \"memory-bomb\", \"panic\", \"huge-rationale\", \"nan-verdict\", \"out-of-range\", \
             \"stack-overflow\", \"read-file\", \"read-env\", \"open-socket\", \"log-flood\", \"always-fails\", \"asks-judge\", \
             \"traps-sometimes\"]",
        )],
        "",
        "",
    );
    job.write_pairs(150);
    score(&job, &["--out", "reference.jsonl", "-j", "2"]);
    let reference = read(&job, "reference.jsonl");

    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["score", "--quiet", "--out", "killed.jsonl", "-j", "2"])
        .current_dir(job.dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = std::fs::metadata(job.path("killed.jsonl")).map(|m| m.len()).unwrap_or(0);
        if written > 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let partial = read(&job, "killed.jsonl");
    assert!(partial.len() < reference.len(), "the run was killed before it finished");

    score(&job, &["--out", "killed.jsonl"]);
    assert_eq!(read(&job, "killed.jsonl"), reference);
}

#[test]
fn shards_merge_into_exactly_the_unsharded_file() {
    let job = job("");
    job.write_pairs(25);
    score(&job, &["--out", "all.jsonl"]);
    for i in 0..3 {
        score(&job, &["--out", &format!("shard{i}.jsonl"), "--shard", &format!("{i}/3")]);
    }
    let sizes: Vec<usize> = (0..3).map(|i| read(&job, &format!("shard{i}.jsonl")).lines().count()).collect();
    assert!(sizes.iter().all(|&n| n > 0) && sizes.iter().sum::<usize>() == 150, "{sizes:?}");
    let output = job.engine(&["merge", "--out", "merged.jsonl", "shard2.jsonl", "shard0.jsonl", "shard1.jsonl"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read(&job, "merged.jsonl"), read(&job, "all.jsonl"));

    // A shard from another job disagrees about one record: merging refuses.
    let first = read(&job, "shard0.jsonl").lines().next().unwrap().to_string();
    let mut record: serde_json::Value = serde_json::from_str(&first).unwrap();
    record["score"] = serde_json::json!(0.123);
    std::fs::write(job.path("other.jsonl"), format!("{record}\n")).unwrap();
    let output = job.engine(&["merge", "--out", "bad.jsonl", "shard0.jsonl", "other.jsonl"]);
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("shard0.jsonl and other.jsonl disagree"), "{message}");
    assert!(!job.path("bad.jsonl").exists());
}

#[test]
fn adding_a_rule_reuses_every_earlier_result() {
    let before = job("");
    before.write_pairs(20);
    score(&before, &["--out", "s.jsonl"]);
    // Same folder, one more pack rule enabled: the layout changes, old records are reused.
    let config = read(&before, "rules.toml").replace("\"traps-sometimes\"]", "]");
    std::fs::write(before.path("rules.toml"), config).unwrap();
    let log = score(&before, &["--out", "s.jsonl"]);
    assert!(log.contains("40 computed, 0 resumed, 120 reused"), "{log}");
    score(&before, &["--out", "fresh.jsonl"]);
    assert_eq!(read(&before, "s.jsonl"), read(&before, "fresh.jsonl"));
    assert!(!before.path("s.jsonl.prev").exists(), "the parked records are removed once done");
}

#[test]
fn a_failing_rule_is_quarantined_and_the_rest_of_the_run_is_intact() {
    let job = TempJob::new(
        &[Pack::new("hostile", hostile_pack()).with(
            "disable = [\"loop-forever\", \"memory-bomb\", \"panic\", \"huge-rationale\", \"nan-verdict\", \"out-of-range\", \
             \"stack-overflow\", \"read-file\", \"read-env\", \"open-socket\", \"log-flood\", \"asks-judge\", \"busy\"]",
        )],
        "quarantine_after = 5",
        "",
    );
    job.write_pairs(50);
    let log = score(&job, &["--out", "s.jsonl"]);
    assert!(log.contains("quarantined always-fails: quarantined after 5 failures in a row"), "{log}");
    let records = read_strict(&job.path("s.jsonl")).unwrap();
    let of = |rule: &'static str| records.iter().filter(move |r| r.rule == rule);
    assert!(of("ok-rule").all(|r| matches!(r.outcome, Outcome::Ok { .. })));
    assert!(of("traps-sometimes").all(|r| matches!(r.outcome, Outcome::Ok { .. })), "no response says 'trap'");
    let quarantined =
        of("always-fails").filter(|r| r.outcome.failure_kind() == Some(engine::plugin::FailureKind::Quarantined));
    assert!(quarantined.count() > 50, "most of the 100 evaluations were never run");
}

/// All bundled deterministic rules over the real HH-RLHF dev split.
#[test]
fn bundled_rules_score_the_real_dev_split_without_failures() {
    let Some(dev) = shared_data("hh-harmless-dev.jsonl") else { return };
    let job = TempJob::new(&[Pack::new("core", core_pack())], "", "");
    let output = job.engine(&["score", "--quiet", "--input", dev.to_str().unwrap(), "--out", "s.jsonl"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = read_strict(&job.path("s.jsonl")).unwrap();
    let rules: std::collections::BTreeSet<&str> = records.iter().map(|r| r.rule.as_str()).collect();
    assert!(rules.len() >= 8, "{rules:?}");
    assert_eq!(records.len() % rules.len(), 0);
    let failures: Vec<_> = records.iter().filter(|r| r.outcome.failure_kind().is_some()).take(3).collect();
    assert!(failures.is_empty(), "{failures:?}");
    // Rules must discriminate: on real data some verdicts are relevant, some are not.
    let relevant =
        records.iter().filter(|r| matches!(r.outcome, Outcome::Ok { relevance, .. } if relevance >= 0.5)).count();
    assert!(relevant > 0 && relevant < records.len(), "{relevant}");
}

/// A job with the judge rule pack (two of its rules) on the real SmolLM2, or `None` when
/// the model is absent (`scripts/setup.sh` downloads it).
pub(crate) fn judge_job(judge_extra: &str) -> Option<TempJob> {
    let model = crate::util::root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.is_file() {
        eprintln!("skipping: {} is absent (run scripts/setup.sh)", model.display());
        return None;
    }
    let rules = crate::util::root().join("plugins/judge-rules/rules.toml");
    let pack = format!(
        "grants = [\"judge\"]\nenable = [\"weapons.no-build-instructions\", \"harassment.no-insults\"]\n\
         [pack.config_files]\nrules = \"{}\"\n",
        rules.display()
    );
    let pack: &'static str = Box::leak(pack.into_boxed_str());
    let extra = format!("[judge]\nmodel = \"{}\"\n{judge_extra}\n", model.display());
    let job = TempJob::new(
        &[Pack::new("judge", crate::util::root().join("plugins/dist/judge-rules.wasm")).with(pack)],
        &extra,
        "",
    );
    job.write_pairs(2);
    Some(job)
}

/// The judge pack scores with the real model through the `judge` import; the judge's
/// counters are printed; the judge id is in the rule hash (a different precision re-scores
/// everything) and in the audit records of `engine label`.
#[test]
fn judge_rules_score_with_the_model_and_a_new_judge_rescores() {
    let Some(job) = judge_job("") else { return };
    let log = score(&job, &["-j", "2"]);
    assert!(log.contains("x 2 rules") && log.contains("8 computed"), "{log}");
    assert!(log.contains("judge candle/SmolLM2-135M-Instruct.Q4_1.gguf/b179c9523d0e/f32/"), "{log}");
    // 8 follow questions and one relevance question per category and sample: 8 more.
    assert!(log.contains("16 questions, 4 sample prefixes computed"), "{log}");
    let records = read_strict(&job.path("out/scores.jsonl")).unwrap();
    assert_eq!(records.len(), 8);
    for r in &records {
        let Outcome::Ok { score, relevance, rationale } = &r.outcome else { panic!("{r:?}") };
        assert!((-1.0..=1.0).contains(score) && (0.0..=1.0).contains(relevance), "{r:?}");
        assert!(rationale.as_deref().unwrap().starts_with("judge: P(yes)"), "{r:?}");
        assert_eq!(r.judge_calls, 2, "a rule's follow question and its category's relevance question");
    }
    let again = score(&job, &[]);
    assert!(again.contains("0 computed, 8 resumed"), "{again}");

    let label = job.engine(&["label"]);
    assert!(label.status.success(), "{}", stderr(&label));
    let labels = engine::app::read_labels(&job.path("out/labeled.jsonl")).unwrap();
    let judged = labels.iter().filter_map(|r| r.judge.as_deref()).collect::<Vec<_>>();
    assert!(!judged.is_empty() && judged.iter().all(|j| j.contains("/f32/")), "{labels:?}");

    // Same job, the judge's weights kept quantised: a different judge id, so nothing resumes.
    // On CPU kept-quantised weights are multiplied in f32 (`quantized-f32` in the id).
    let text = std::fs::read_to_string(job.config()).unwrap();
    std::fs::write(job.config(), text.replace("[judge]\n", "[judge]\nprecision = \"quantized\"\n")).unwrap();
    let log = score(&job, &[]);
    assert!(log.contains("8 computed, 0 resumed, 0 reused") && log.contains("/quantized-f32/"), "{log}");
    let requantized = read_strict(&job.path("out/scores.jsonl")).unwrap();
    assert!(records.iter().zip(&requantized).all(|(a, b)| a.rule_hash != b.rule_hash));
}

/// `engine pairwise` asks the judge to compare the two responses under the selected rules,
/// in both orders, labels each pair by the summed preferences, compares with gold and with
/// the pointwise labels, and resumes after a torn write.
#[test]
fn pairwise_rating_asks_both_orders_and_resumes() {
    let Some(job) = judge_job("") else { return };
    score(&job, &[]);
    let run = |extra: &[&str]| {
        let mut args = vec!["pairwise", "--strategy", "all", "--json", "summary.json", "-q"];
        args.extend_from_slice(extra);
        let out = job.engine(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (table, log) = run(&[]);
    assert!(log.contains("rated 2 pairs pairwise") && log.contains("0 questions failed"), "{log}");
    assert!(table.contains("| pairwise (both orders) |") && table.contains("| pointwise, same rules |"), "{table}");
    let path = job.path("out/pairwise.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<engine::pairwise::PairwiseRecord> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.rules.len(), 2, "both enabled rules, as `all` selects: {r:?}");
        let mut sum = 0.0;
        for rule in &r.rules {
            assert!((-1.0..=1.0).contains(&rule.forward) && (-1.0..=1.0).contains(&rule.backward), "{rule:?}");
            assert!((rule.preference - (rule.forward - rule.backward) / 2.0).abs() < 1e-12);
            sum += rule.preference;
        }
        assert!((r.sum - sum).abs() < 1e-9);
        assert_eq!(r.label, if sum > 0.0 { Some(Pref::A) } else { Some(Pref::B) });
        assert_eq!(r.gold, Some(Pref::A));
        assert!(r.judge.starts_with("candle/"), "{}", r.judge);
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["pairs"], 2);
    // The pairwise wording is the judge's own setting: another judge id than the pointwise one.
    let pointwise = std::fs::read_to_string(job.path("out/scores.judge.json")).unwrap();
    assert!(!pointwise.contains(&records[0].judge), "{pointwise}");

    // A run killed mid-write: the second record lost, a torn line left. The rerun keeps the
    // first, rates the second again, and ends with the same file.
    let first = text.lines().next().unwrap();
    std::fs::write(&path, format!("{first}\n{{\"pair\":\"t1\",\"ru")).unwrap();
    let (_, log) = run(&[]);
    assert!(log.contains("rated 2 pairs pairwise"), "{log}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// The `[judge]` section and the files a pack's config names are checked with file, line
/// and field.
#[test]
fn judge_config_errors_name_file_line_and_field() {
    let Some(job) = judge_job("colour = \"blue\"") else { return };
    let err = stderr(&job.engine(&["score", "--quiet"]));
    assert!(err.contains("rules.toml:") && err.contains("colour"), "{err}");
    let Some(job) = judge_job("precision = \"f16\"") else { return };
    let err = stderr(&job.engine(&["score", "--quiet"]));
    assert!(err.contains("rules.toml:6: judge.precision: \"f16\": expected auto, f32, quantized or int8"), "{err}");
    let Some(job) = judge_job("") else { return };
    let text = std::fs::read_to_string(job.config()).unwrap();
    let model = crate::util::root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let missing = text.replace(&model.display().to_string(), "models/nowhere.gguf");
    std::fs::write(job.config(), missing).unwrap();
    let err = stderr(&job.engine(&["score", "--quiet"]));
    assert!(
        err.contains("rules.toml:5: judge.model:")
            && err.contains("nowhere.gguf not found")
            && err.contains("scripts/setup.sh"),
        "{err}"
    );
    let rules = crate::util::root().join("plugins/judge-rules/rules.toml");
    std::fs::write(job.config(), text.replace(&rules.display().to_string(), "no/such/rules.toml")).unwrap();
    let err = stderr(&job.engine(&["score", "--quiet"]));
    assert!(err.contains("pack[0].config_files.rules: cannot read") && err.contains("no/such/rules.toml"), "{err}");
    // A job without judge packs never needs the model.
    std::fs::write(
        job.config(),
        text.replace(&model.display().to_string(), "models/nowhere.gguf").replace("grants = [\"judge\"]\n", ""),
    )
    .unwrap();
    let out = job.engine(&["score", "--quiet"]);
    let err = stderr(&out);
    assert!(!err.contains("judge.model"), "{err}");
}
