use candle_core::{Device, Tensor};

use super::model::bce_with_logits;
use super::*;
use crate::data::{Message, Pair, Pref};
use crate::labeling::ScoreTable;
use crate::score::{Outcome, ScoreRecord};

fn pair(i: usize) -> Pair {
    Pair {
        id: format!("p{i}"),
        prompt: vec![Message::user(format!("question {i}"))],
        a: format!("answer a {i}"),
        b: format!("answer b {i}"),
        gold: Some(Pref::A),
        subset: None,
    }
}

const RULES: usize = 8;

/// Pair `i` belongs to cluster `i % 4`; in cluster c, rules 2c and 2c+1 separate the two
/// responses (A follows, B violates) and every other rule sees no difference. So the
/// max-discrepancy top-2 of a pair is exactly its cluster's two rules.
fn synthetic(n: usize) -> (Vec<Pair>, Vec<Vec<f32>>, ScoreTable) {
    let pairs: Vec<Pair> = (0..n).map(pair).collect();
    let mut records = Vec::new();
    let mut features = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let cluster = i % 4;
        let mut onehot = vec![0f32; 4];
        onehot[cluster] = 1.0;
        features.push(pair_features(&onehot, &[0.0; 4], &[0.0; 4]));
        for side in [Pref::A, Pref::B] {
            for r in 0..RULES {
                let hot = r / 2 == cluster;
                let score = match (hot, side) {
                    (true, Pref::A) => 1.0,
                    (true, Pref::B) => -1.0,
                    _ => 0.0,
                };
                records.push(ScoreRecord {
                    sample: p.sample(side).hash().to_hex(),
                    rule: format!("rule-{r}"),
                    rule_hash: "h".into(),
                    pack: "test".into(),
                    judge_calls: 2,
                    outcome: Outcome::Ok { score, relevance: if hot { 1.0 } else { 0.0 }, rationale: None },
                });
            }
        }
    }
    (pairs, features, ScoreTable::from_records(&records).unwrap())
}

fn options() -> TrainOptions {
    TrainOptions {
        k: 2,
        hidden: 16,
        epochs: 150,
        learning_rate: 1e-2,
        batch_size: 8,
        holdout: 0.3,
        ..Default::default()
    }
}

#[test]
fn bce_matches_hand_computed_values() {
    let z = Tensor::new(&[0f32, 2.0, -3.0, 40.0], &Device::Cpu).unwrap();
    let t = Tensor::new(&[1f32, 0.0, 1.0, 1.0], &Device::Cpu).unwrap();
    let got = bce_with_logits(&z, &t).unwrap().to_scalar::<f32>().unwrap() as f64;
    // -ln σ(0) = ln 2; -ln(1 − σ(2)) = 2 + ln(1 + e^-2); -ln σ(-3) = 3 + ln(1 + e^-3); σ(40) ≈ 1.
    let want = (2f64.ln() + (2.0 + (1.0 + (-2f64).exp()).ln()) + (3.0 + (1.0 + (-3f64).exp()).ln()) + 0.0) / 4.0;
    assert!((got - want).abs() < 1e-5, "got {got}, want {want}");
}

#[test]
fn features_are_symmetric_in_the_two_responses() {
    let (p, a, b) = ([0.1, 0.2], [0.3, -0.4], [0.9, 0.5]);
    assert_eq!(pair_features(&p, &a, &b), pair_features(&p, &b, &a));
    assert_eq!(pair_features(&p, &a, &b).len(), 6);
}

#[test]
fn learns_which_rules_separate_a_pair_and_saves_judge_calls() {
    let (pairs, features, table) = synthetic(80);
    let (adapter, report) = train(&pairs, &features, &table, "test-encoder", &options()).unwrap();
    assert!(report.heldout_pairs > 10 && report.train_pairs > 40, "{report:?}");
    assert_eq!(report.recall_at_k, 1.0, "{report}");
    assert_eq!(report.label_agreement, 1.0, "{report}");
    assert!(report.random_recall_at_k < 0.3, "{report}");
    // Every rule on both responses against two rules on both: 4x fewer evaluations and calls.
    assert_eq!(report.evaluations_full, report.evaluations_adapter * 4);
    assert_eq!(report.judge_calls_full, report.judge_calls_adapter * 4);
    assert_eq!(report.gold_agreement, Some((1.0, 1.0)));

    let predictions = predict(&adapter, &pairs, &features).unwrap();
    assert_eq!(&predictions["p5"][..2], ["rule-2", "rule-3"]);
    let plan = scoring_plan(&pairs, &predictions, 2);
    let wanted: Vec<&str> = plan[&pairs[5].sample(Pref::B).hash()].iter().map(String::as_str).collect();
    assert_eq!(wanted, ["rule-2", "rule-3"]);
}

#[test]
fn save_and_load_give_the_same_predictions() {
    let (pairs, features, table) = synthetic(24);
    let (adapter, _) = train(&pairs, &features, &table, "test-encoder", &options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    adapter.save(dir.path()).unwrap();
    let loaded = load(dir.path()).unwrap();
    assert_eq!(loaded.meta(), adapter.meta());
    assert_eq!(loaded.rank(&features).unwrap(), adapter.rank(&features).unwrap());

    let bad = loaded.rank(&[vec![0.0; 5]]).unwrap_err().to_string();
    assert!(bad.contains("expects 12") && bad.contains("test-encoder"), "{bad}");

    let json = dir.path().join("adapter.json");
    let text = std::fs::read_to_string(&json).unwrap().replace("\"version\": 1", "\"version\": 99");
    std::fs::write(&json, text).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("adapter.json") && err.contains("format version 99"), "{err}");
}

#[test]
fn training_is_reproducible_with_a_seed() {
    let (pairs, features, table) = synthetic(24);
    let opts = TrainOptions { epochs: 5, ..options() };
    let (a, ra) = train(&pairs, &features, &table, "e", &opts).unwrap();
    let (b, rb) = train(&pairs, &features, &table, "e", &opts).unwrap();
    assert_eq!(ra.final_train_loss, rb.final_train_loss);
    assert_eq!(a.rank(&features).unwrap(), b.rank(&features).unwrap());
}

#[test]
fn refuses_bad_options() {
    let (pairs, features, table) = synthetic(8);
    let err = train(&pairs, &features, &table, "e", &TrainOptions { holdout: 1.0, ..options() }).unwrap_err();
    assert!(err.to_string().contains("holdout"), "{err}");
}
