//! The command line as users meet it: help, errors that name file and line, the rule
//! commands, and the repository's default job.

use crate::util::{Pack, TempJob, core_pack, engine, example_pack, root, stderr, stdout};

#[test]
fn help_teaches_the_commands() {
    let output = engine(&root(), &["--help"]);
    let text = stdout(&output);
    for needle in ["score", "merge", "rules", "Examples:", "--shard 0/4"] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let text = stdout(&engine(&root(), &["score", "--help"]));
    assert!(text.contains("kill -9") && text.contains("--skip-invalid"), "{text}");
}

#[test]
fn a_malformed_input_line_is_named_and_skip_invalid_counts_it() {
    let job = TempJob::new(&[Pack::new("example", example_pack())], "", "");
    job.write_pairs(3);
    let mut text = std::fs::read_to_string(job.path("pairs.jsonl")).unwrap();
    text.push_str(
        "{\"id\":\"bad\",\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"chosen\":7,\"rejected\":\"r\"}\n",
    );
    std::fs::write(job.path("pairs.jsonl"), text).unwrap();

    let output = job.engine(&["score", "--quiet"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("pairs.jsonl:4") && message.contains("\"chosen\""), "{message}");

    let output = job.engine(&["score", "--quiet", "--skip-invalid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("3 pairs, 1 invalid lines skipped"), "{message}");
}

#[test]
fn reward_bench_rows_with_integer_ids_score() {
    // RewardBench's `id` column is int64; such rows must score as they are.
    let job = TempJob::new(&[Pack::new("example", example_pack())], "", "");
    std::fs::write(
        job.path("pairs.jsonl"),
        "{\"prompt\":\"Hi\",\"chosen\":\"Hello.\",\"rejected\":\"HELLO!\",\"subset\":\"xstest\",\"id\":30}\n\
         {\"prompt\":\"Yo\",\"chosen\":\"Hey.\",\"rejected\":\"HEY!\",\"subset\":\"xstest\",\"id\":31}\n",
    )
    .unwrap();
    let output = job.engine(&["score", "--quiet"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("2 pairs"), "{}", stderr(&output));
}

#[test]
fn skip_invalid_that_skips_every_line_fails_and_says_why() {
    let job = TempJob::new(&[Pack::new("example", example_pack())], "", "");
    std::fs::write(job.path("pairs.jsonl"), "{\"prompt\":\"q\",\"chosen\":7,\"rejected\":\"r\"}\nnot json\n").unwrap();
    let output = job.engine(&["score", "--quiet", "--skip-invalid"]);
    let message = stderr(&output);
    assert!(!output.status.success(), "{message}");
    assert!(
        message.contains("pairs.jsonl: no valid row: --skip-invalid skipped all 2 non-blank lines; the first, line 1: field \"chosen\""),
        "{message}"
    );
    assert!(!job.path("out/scores.jsonl").exists(), "nothing is written");
}

#[test]
fn config_errors_name_the_file_line_and_field() {
    let job = TempJob::new(&[Pack::new("example", example_pack()).with("grants = [\"network\"]")], "", "");
    let text = std::fs::read_to_string(job.config()).unwrap();
    let line = text.lines().position(|l| l.starts_with("grants")).unwrap() + 1;
    let output = job.engine(&["rules", "list"]);
    let message = stderr(&output);
    assert!(!output.status.success());
    let expected = format!("rules.toml:{line}: pack[0].grants: \"network\" is never granted");
    assert!(message.contains(&expected), "{message}");
}

#[test]
fn rules_verify_reports_every_pack_and_fails_on_a_bad_pin() {
    let job = TempJob::new(&[Pack::new("example", example_pack()), Pack::new("core", core_pack())], "", "");
    let output = job.engine(&["rules", "verify"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("ok    example") && text.contains("ok    core"), "{text}");

    let config = std::fs::read_to_string(job.config()).unwrap();
    let pinned = crate::util::sha256_file(&example_pack());
    let wrong = format!("{}{}", &pinned[..63], if pinned.ends_with('0') { '1' } else { '0' });
    std::fs::write(job.config(), config.replace(&pinned, &wrong)).unwrap();
    let output = job.engine(&["rules", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("FAIL  example") && text.contains(&wrong) && text.contains(&pinned), "{text}");
    assert!(text.contains("ok    core"), "the other pack is still checked: {text}");

    // The error names the job file that holds the pin, whatever it is called.
    std::fs::rename(job.config(), job.path("my-job.toml")).unwrap();
    let output = job.engine(&["score", "-q", "--config", "my-job.toml"]);
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains(&format!("my-job.toml (its [[pack]] sha256) pins {wrong}")), "{message}");
    assert!(!message.contains("rules.toml"), "{message}");
}

#[test]
fn rules_list_and_inspect() {
    let job = TempJob::new(&[Pack::new("example", example_pack()).with("[pack.config]\nthreshold = 0.8")], "", "");
    let text = stdout(&job.engine(&["rules", "list"]));
    assert!(text.contains("no-shouting") && text.contains("1 rules from 1 packs"), "{text}");
    let text = stdout(&job.engine(&["rules", "inspect", "no-shouting"]));
    for needle in [
        "safety:rules@0.1.0",
        "imports      safety:rules/types@0.1.0, safety:rules/host@0.1.0",
        "grants       none",
        "threshold=0.8",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    let output = job.engine(&["rules", "inspect", "no-such-rule"]);
    assert!(!output.status.success() && stderr(&output).contains("rules: no-shouting"));
}

/// The repository's own rules.toml: every bundled pack verifies against its pin and the
/// default job scores the shipped demo data.
/// The default job's packs without the judge pack (scripts/jobs/deterministic.toml).
const DETERMINISTIC: &str = "scripts/jobs/deterministic.toml";

#[test]
fn the_default_job_verifies_and_scores_the_demo_data() {
    let output = engine(&root(), &["rules", "verify"]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let out = tempfile::tempdir().unwrap();
    let scores = out.path().join("scores.jsonl");
    // The default job's deterministic packs (the judge pack is covered in scoring.rs).
    let output = engine(&root(), &["score", "--config", DETERMINISTIC, "--quiet", "--out", scores.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = engine::score::read_strict(&scores).unwrap();
    assert!(records.len() >= 96 * 8, "{}", records.len());
    assert!(records.iter().all(|r| r.outcome.failure_kind().is_none()));
}

/// score → label → explain → eval-labels on the shipped demo data.
#[test]
fn label_explain_and_eval_labels_on_the_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let output = engine(&root(), args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        output
    };
    run(&["score", "--config", DETERMINISTIC, "--quiet", "--out", &path("scores.jsonl")]);
    let output =
        run(&["label", "--config", DETERMINISTIC, "--scores", &path("scores.jsonl"), "--out", &path("labeled.jsonl")]);
    let log = stderr(&output);
    assert!(log.contains("labeled 48 pairs") && log.contains("agreement with gold"), "{log}");
    let records = engine::app::read_labels(std::path::Path::new(&path("labeled.jsonl"))).unwrap();
    assert_eq!(records.len(), 48);
    let decided: Vec<_> = records.iter().filter(|r| r.label.winner().is_some()).collect();
    assert!(decided.iter().all(|r| r.selected.len() <= 5 && r.margin > 0.0 && r.packs.contains_key("core")));

    let text = stdout(&run(&["explain", "demo-20", "--labels", &path("labeled.jsonl")]));
    assert!(text.contains("Pair demo-20: response A is preferred") && text.contains("pii-leak (core)"), "{text}");
    assert!(!text.contains("rank-calibrated"), "{text}");

    // The same scores, rank-calibrated: recorded per pair and explained.
    let scores = path("scores.jsonl");
    let ranked = path("ranked.jsonl");
    run(&["label", "--config", DETERMINISTIC, "--scores", &scores, "--calibrate", "rank", "--out", &ranked]);
    let ranked_records = engine::app::read_labels(std::path::Path::new(&ranked)).unwrap();
    assert!(ranked_records.iter().all(|r| r.calibration == engine::labeling::Calibration::Rank));
    // The scores behind the labels are the calibrated ones: some rule that both files kept
    // for a pair scored it differently.
    let recalibrated = records.iter().zip(&ranked_records).any(|(raw, rank)| {
        raw.selected.iter().any(|r| rank.selected.iter().any(|c| c.rule == r.rule && c.score_a != r.score_a))
    });
    assert!(recalibrated, "rank calibration changed no selected score");
    assert!(std::fs::read_to_string(&ranked).unwrap().contains("\"calibration\":\"rank\""));
    let text = stdout(&run(&["explain", "demo-20", "--labels", &ranked]));
    assert!(text.contains("Scores are rank-calibrated"), "{text}");

    let eval_labels = |extra: &[&str]| {
        let mut args = vec!["eval-labels", "--config", DETERMINISTIC, "--scores", &scores, "--gold", "data/demo.jsonl"];
        args.extend_from_slice(extra);
        stdout(&run(&args))
    };
    let table = eval_labels(&[]);
    for strategy in
        ["max-discrepancy:k=5,lambda=0.5", "| all |", "random-k:k=5,seed=0", "relevance-only", "entropy-weighted"]
    {
        assert!(table.contains(strategy), "{strategy}: {table}");
    }
    assert!(!table.contains("Each rule on its own"), "the per-rule table only with --per-rule: {table}");
    let json = path("agreement.json");
    let table = eval_labels(&["--strategies", "all", "--calibrate", "none,rank", "--per-rule", "--json", &json]);
    assert!(table.contains("| all |") && table.contains("| all (rank-calibrated) |"), "{table}");
    assert!(table.contains("Each rule on its own") && table.contains("| pii-leak | core |"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["strategies"].as_array().unwrap().len(), 2);
    assert_eq!(json["rules"].as_array().unwrap().len(), 13, "{json}");
}

#[test]
fn train_and_adapter_train_find_their_model_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pairs.jsonl"),
        "{\"id\":1,\"prompt\":\"Hi\",\"chosen\":\"Hello.\",\"rejected\":\"Go away.\"}\n\
         {\"id\":2,\"prompt\":\"Yo\",\"chosen\":\"Hey.\",\"rejected\":\"No.\"}\n",
    )
    .unwrap();
    // Outside the repository the default (relative to the working directory) is not there:
    // the error says what to set, instead of a bare "No such file".
    let output = engine(dir.path(), &["train", "--data", "pairs.jsonl", "--out", "rm", "-q"]);
    let message = stderr(&output);
    assert!(!output.status.success());
    for needle in ["models/all-minilm-l6-v2", "working directory", "--backbone DIR", "--config", "scripts/setup.sh"] {
        assert!(message.contains(needle), "lacks {needle:?}: {message}");
    }
    let args = ["adapter", "train", "--scores", "s.jsonl", "--pairs", "pairs.jsonl", "--out", "a"];
    let message = stderr(&engine(dir.path(), &args));
    assert!(message.contains("--encoder DIR") && message.contains("scripts/setup.sh"), "{message}");

    // --config resolves `[train] encoder` (here the default) relative to the job file.
    if !root().join("models/all-minilm-l6-v2/model.safetensors").exists() {
        eprintln!("skipping the training half: run scripts/setup.sh");
        return;
    }
    let config = root().join("rules.toml");
    let args = ["train", "--config", config.to_str().unwrap(), "--data", "pairs.jsonl", "--out", "rm", "-q"];
    let output = engine(dir.path(), &[&args[..], &["--epochs", "1", "--max-len", "32", "--batch-size", "2"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("rm/model.safetensors").is_file());
}
