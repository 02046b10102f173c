//! `engine run`: the whole job end to end on a slice of the demo data, with the embedded
//! encoder (a small, fast training setting).

use serde_json::Value;

use crate::util::{Pack, TempJob, core_pack, example_pack, root, stderr, stdout};

fn demo_job(pairs: usize, extra: &str) -> TempJob {
    let job = TempJob::new(
        &[
            Pack::new("core", core_pack()),
            Pack::new("example", example_pack()).with("[pack.config]\nthreshold = \"0.5\""),
        ],
        "",
        "",
    );
    let demo = std::fs::read_to_string(root().join("data/demo.jsonl")).unwrap();
    let slice: String = demo.lines().take(pairs).map(|l| format!("{l}\n")).collect();
    std::fs::write(job.path("pairs.jsonl"), slice).unwrap();
    let encoder = root().join("models/all-minilm-l6-v2");
    let mut config = std::fs::read_to_string(job.config()).unwrap();
    config.push_str(&format!(
        "\n[train]\nencoder = \"{}\"\nepochs = 1\nbatch_size = 4\nmax_len = 64\n{extra}\n",
        encoder.display()
    ));
    std::fs::write(job.config(), config).unwrap();
    job
}

fn report(job: &TempJob) -> Value {
    serde_json::from_str(&std::fs::read_to_string(job.path("out/report.json")).unwrap()).unwrap()
}

fn note(report: &Value, stage: &str) -> String {
    report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn run_scores_labels_trains_evaluates_and_reports_then_a_rerun_is_up_to_date() {
    let job = demo_job(16, "[eval]\nholdout = 0.25\nseed = 3\n");
    let out = job.engine(&["run", "--config", "rules.toml", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("report.md"), "{}", stdout(&out));
    for file in [
        "scores.jsonl",
        "labeled.jsonl",
        "heldout.jsonl",
        "rm/model.safetensors",
        "rm/config.json",
        "eval/eval.json",
        "report.md",
        "plots/rule-usage.svg",
        "plots/scores.svg",
        "plots/training.svg",
        "plots/rewards.svg",
    ] {
        assert!(job.path("out").join(file).exists(), "missing {file}");
    }
    let r = report(&job);
    assert_eq!(r["pairs"], 16);
    let (train, heldout) = (r["train_pairs"].as_u64().unwrap(), r["heldout_pairs"].as_u64().unwrap());
    assert!(heldout >= 1 && train >= 8 && train + heldout <= 16, "train {train} heldout {heldout}");
    assert_eq!(r["eval"]["overall"]["pairs"].as_u64(), Some(heldout));
    assert_eq!(r["train"]["epochs"].as_array().unwrap().len(), 1);
    // Held-out pairs never reach the trainer.
    let heldout_ids: Vec<String> = std::fs::read_to_string(job.path("out/heldout.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(heldout_ids.len() as u64, heldout);
    assert_eq!(r["train"]["pairs"].as_u64(), Some(train));
    let md = std::fs::read_to_string(job.path("out/report.md")).unwrap();
    assert!(md.contains("## Labels") && md.contains("## Reward model") && md.contains("plots/training.svg"), "{md}");
    // report.md says what report.json says.
    let header = format!("{} pairs, {} unique responses, {} rules.", r["pairs"], r["samples"], r["rules"]);
    let l = &r["labels"];
    let labels = format!("| {} | {} | {} | {} |", l["a_preferred"], l["b_preferred"], l["ties"], l["abstained"]);
    let a = &r["label_agreement"];
    let agreement = format!(
        "**{:.1}%** of {} decided pairs",
        100.0 * a["accuracy"].as_f64().unwrap(),
        a["decided"].as_u64().unwrap()
    );
    let split = format!("Trained on {train} rule-labelled pairs; {heldout} gold-labelled pairs held out");
    for line in [header, labels, agreement, split] {
        assert!(md.contains(&line), "report.md lacks {line:?}: {md}");
    }

    // Again: nothing to redo.
    let again = job.engine(&["run", "--config", "rules.toml", "--quiet"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let r2 = report(&job);
    assert_eq!(note(&r2, "score"), "up to date");
    assert!(note(&r2, "train").starts_with("up to date"), "{}", note(&r2, "train"));
    assert_eq!(r2["eval"]["overall"], r["eval"]["overall"]);
}

#[test]
fn run_settings_errors_name_the_file_line_and_field() {
    let job = demo_job(4, "[eval]\nholdout = 1.5\n");
    let out = job.engine(&["run", "--config", "rules.toml", "--quiet"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let line =
        std::fs::read_to_string(job.config()).unwrap().lines().position(|l| l.starts_with("holdout")).unwrap() + 1;
    assert!(err.contains(&format!("rules.toml:{line}: eval.holdout: must be in [0, 1)")), "{err}");

    let job = demo_job(4, "[eval]\nholdouts = 0.2\n");
    let err = stderr(&job.engine(&["run", "--config", "rules.toml", "--quiet"]));
    assert!(err.contains("rules.toml:") && err.contains("unknown field `holdouts`"), "{err}");
}
