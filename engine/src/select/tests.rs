//! Unit and property tests of rule selection. Every test name contains `select` so that
//! `cargo test -p engine --lib select` runs them all.

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::*;
// Ours, not proptest's (whose trait the line above keeps in scope for its methods).
use super::Strategy;

const EPS: f64 = 1e-12;

fn v(score: f64, relevance: f64) -> Option<RuleScore> {
    Some(RuleScore { score, relevance })
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn selector(strategy: Strategy, names: &[&str]) -> Selector {
    Selector::new(strategy, ids(names), None).unwrap()
}

/// The running example: five rules, one without a verdict on B.
///
/// | rule | A (score, rel) | B (score, rel) | relevance | discrepancy | rel + ½·disc |
/// |---|---|---|---|---|---|
/// | 0 harm     | (0.9, 0.8)  | (-0.7, 0.9) | 0.9 | 1.6 | 1.7 |
/// | 1 privacy  | (0.0, 0.1)  | none        | —   | —   | —   |
/// | 2 tone     | (0.2, 0.3)  | (0.6, 0.2)  | 0.3 | 0.4 | 0.5 |
/// | 3 violence | (0.5, 0.6)  | (-0.5, 0.1) | 0.6 | 1.0 | 1.1 |
/// | 4 weapons  | (-0.2, 1.0) | (0.0, 0.7)  | 1.0 | 0.2 | 1.1 |
const NAMES: [&str; 5] = ["harm", "privacy", "tone", "violence", "weapons"];

fn example() -> (Vec<Option<RuleScore>>, Vec<Option<RuleScore>>) {
    (
        vec![v(0.9, 0.8), v(0.0, 0.1), v(0.2, 0.3), v(0.5, 0.6), v(-0.2, 1.0)],
        vec![v(-0.7, 0.9), None, v(0.6, 0.2), v(-0.5, 0.1), v(0.0, 0.7)],
    )
}

fn select_example(strategy: Strategy) -> Selection {
    let (a, b) = example();
    selector(strategy, &NAMES).select("p", PairScores::new(&a, &b), None).unwrap()
}

#[test]
fn select_max_discrepancy_worked_example() {
    let selection = select_example(Strategy::max_discrepancy(3, 0.5).unwrap());
    assert_eq!(selection.selectable, 4);
    // violence and weapons tie at 1.1: the lower id, "violence", comes first.
    assert_eq!(selection.indices(), [0, 3, 4]);
    let harm = selection.rules[0];
    assert_eq!((harm.score_a, harm.score_b, harm.relevance, harm.weight), (0.9, -0.7, 0.9, 1.0));
    assert!((harm.discrepancy - 1.6).abs() < EPS);
    assert!((harm.selection_score - 1.7).abs() < EPS);
    let violence = selection.rules[1];
    assert_eq!((violence.relevance, violence.discrepancy), (0.6, 1.0));
    assert!((violence.selection_score - 1.1).abs() < EPS);
    let weapons = selection.rules[2];
    assert_eq!((weapons.relevance, weapons.discrepancy), (1.0, 0.2));
    assert_eq!(weapons.selection_score, violence.selection_score);
}

#[test]
fn select_lambda_trades_relevance_for_discrepancy() {
    // λ = 0 ranks by relevance alone: weapons 1.0, harm 0.9, violence 0.6, tone 0.3.
    assert_eq!(select_example(Strategy::max_discrepancy(4, 0.0).unwrap()).indices(), [4, 0, 3, 2]);
    // λ = 2: harm 0.9 + 3.2 = 4.1, violence 0.6 + 2 = 2.6, weapons 1.0 + 0.4 = 1.4, tone 0.3 + 0.8 = 1.1.
    let selection = select_example(Strategy::max_discrepancy(4, 2.0).unwrap());
    assert_eq!(selection.indices(), [0, 3, 4, 2]);
    let scores: Vec<f64> = selection.rules.iter().map(|r| r.selection_score).collect();
    for (got, want) in scores.iter().zip([4.1, 2.6, 1.4, 1.1]) {
        assert!((got - want).abs() < EPS, "{scores:?}");
    }
}

#[test]
fn select_relevance_only_worked_example() {
    let selection = select_example(Strategy::relevance_only(2).unwrap());
    assert_eq!(selection.indices(), [4, 0]);
    assert_eq!(selection.rules[0].selection_score, 1.0);
    assert_eq!(selection.rules[1].selection_score, 0.9);
}

#[test]
fn select_relevance_of_a_pair_is_the_larger_of_the_two() {
    // Relevant to A only, or to B only: either way the rule applies to the comparison.
    let a = [v(-1.0, 1.0), v(0.0, 0.0)];
    let b = [v(1.0, 0.0), v(0.0, 0.9)];
    let selection =
        selector(Strategy::relevance_only(2).unwrap(), &["x", "y"]).select("p", PairScores::new(&a, &b), None).unwrap();
    let relevances: Vec<f64> = selection.rules.iter().map(|r| r.relevance).collect();
    assert_eq!(relevances, [1.0, 0.9]);
}

#[test]
fn select_ties_break_by_rule_id_in_string_order() {
    // Equal selection scores everywhere; string order puts "rule-10" before "rule-2"
    // before "rule-9", whatever the column order.
    let names = ["rule-9", "rule-10", "rule-2"];
    let row = [v(0.5, 0.5), v(0.5, 0.5), v(0.5, 0.5)];
    for strategy in [Strategy::default(), Strategy::All, Strategy::relevance_only(3).unwrap()] {
        let selection = selector(strategy, &names).select("p", PairScores::new(&row, &row), None).unwrap();
        assert_eq!(selection.indices(), [1, 2, 0]);
    }
    // With k = 1 the tie is resolved by id, not by column.
    let selection = selector(Strategy::max_discrepancy(1, 0.5).unwrap(), &names)
        .select("p", PairScores::new(&row, &row), None)
        .unwrap();
    assert_eq!(selection.indices(), [1]);
    // A higher score beats a lower id.
    let a = [v(0.5, 0.5), v(0.5, 0.5), v(0.5, 0.6)];
    let selection = selector(Strategy::max_discrepancy(1, 0.5).unwrap(), &names)
        .select("p", PairScores::new(&a, &row), None)
        .unwrap();
    assert_eq!(selection.indices(), [2]);
}

#[test]
fn select_zero_and_negative_zero_scores_tie_and_fall_back_to_ids() {
    let a = [v(0.0, -0.0), v(0.0, 0.0)];
    let selection =
        selector(Strategy::relevance_only(2).unwrap(), &["b", "a"]).select("p", PairScores::new(&a, &a), None).unwrap();
    assert_eq!(selection.indices(), [1, 0]);
}

#[test]
fn select_k_larger_than_the_selectable_rules_keeps_them_all() {
    let all = select_example(Strategy::All);
    for strategy in [
        Strategy::max_discrepancy(10, 0.5).unwrap(),
        Strategy::relevance_only(10).unwrap(),
        Strategy::random_k(10, 3).unwrap(),
    ] {
        let selection = select_example(strategy);
        assert_eq!(selection.len(), 4);
        let mut indices = selection.indices();
        indices.sort_unstable();
        assert_eq!(indices, [0, 2, 3, 4]);
    }
    assert_eq!(all.indices(), [0, 2, 3, 4]); // id order: harm, tone, violence, weapons
    assert!(all.rules.iter().all(|r| r.selection_score == 1.0));
}

#[test]
fn select_never_picks_a_rule_missing_on_either_side() {
    // Rule 1 (privacy) has no verdict on B; swap so it lacks A instead; every strategy
    // must leave it out, even when it would rank first.
    let a = [v(1.0, 1.0), v(0.0, 0.0), v(0.0, 0.0)];
    let b = [None, v(0.1, 0.1), v(0.0, 0.0)];
    let names = ["a-first", "b", "c"];
    let strategies = [
        Strategy::max_discrepancy(3, 0.5).unwrap(),
        Strategy::All,
        Strategy::random_k(3, 1).unwrap(),
        Strategy::relevance_only(3).unwrap(),
        Strategy::adapter(3).unwrap(),
    ];
    for strategy in strategies {
        let s = selector(strategy.clone(), &names);
        for scores in [PairScores::new(&a, &b), PairScores::new(&b, &a)] {
            let selection = s.select("p", scores, Some(&[0, 1, 2])).unwrap();
            assert_eq!(selection.selectable, 2, "{strategy}");
            assert!(!selection.indices().contains(&0), "{strategy}: {selection:?}");
        }
    }
    // Nothing selectable at all: an empty selection, not an error.
    let none = [None, None, None];
    let selection = selector(Strategy::default(), &names).select("p", PairScores::new(&a, &none), None).unwrap();
    assert!(selection.is_empty());
    assert_eq!(selection.selectable, 0);
}

#[test]
fn select_entropy_weighted_worked_example() {
    // Entropies [0, ½, 1, ½, 0] with τ = ½: exp(-2H) = [1, e^-1, e^-2, e^-1, 1],
    // total 2.871094, so w = 5 / 2.871094 · exp(-2H)
    //   = [1.741496, 0.640661, 0.235686, 0.640661, 1.741496].
    // Selection scores w · (rel + ½·disc):
    //   harm 1.741496 · 1.7 = 2.960544, tone 0.235686 · 0.5 = 0.117843,
    //   violence 0.640661 · 1.1 = 0.704727, weapons 1.741496 · 1.1 = 1.915646.
    let (a, b) = example();
    let entropies = [0.0, 0.5, 1.0, 0.5, 0.0];
    let s = Selector::new(Strategy::entropy_weighted(2).unwrap(), ids(&NAMES), Some(&entropies)).unwrap();
    assert!((s.weight(0) - 1.741_496_347).abs() < 1e-8);
    let selection = s.select("p", PairScores::new(&a, &b), None).unwrap();
    assert_eq!(selection.indices(), [0, 4]);
    assert!((selection.rules[0].selection_score - 2.960_543_789).abs() < 1e-8);
    assert!((selection.rules[1].selection_score - 1.915_645_981).abs() < 1e-8);
    assert_eq!(selection.rules[0].weight, s.weight(0));
    // All four, best first: harm, weapons, violence, tone.
    let s4 = Selector::new(Strategy::entropy_weighted(4).unwrap(), ids(&NAMES), Some(&entropies)).unwrap();
    assert_eq!(s4.select("p", PairScores::new(&a, &b), None).unwrap().indices(), [0, 4, 3, 2]);
    // Weights are also carried by select_all, for the labeler's fallback.
    let all = s.select_all("p", PairScores::new(&a, &b)).unwrap();
    assert_eq!(all.indices(), [0, 2, 3, 4]);
    assert!((all.rules[1].weight - 0.235_685_901).abs() < 1e-8);
    // Other strategies weigh every rule 1 and ignore entropies.
    let plain = Selector::new(Strategy::default(), ids(&NAMES), Some(&entropies)).unwrap();
    assert_eq!(plain.weight(0), 1.0);
}

#[test]
fn select_entropy_weighted_needs_valid_entropies() {
    let strategy = Strategy::entropy_weighted(2).unwrap();
    let err = Selector::new(strategy.clone(), ids(&["a", "b"]), None).unwrap_err();
    assert_eq!(err, SelectError::MissingEntropies);
    assert!(err.to_string().contains("rule_entropies"), "{err}");
    let err = Selector::new(strategy.clone(), ids(&["a", "b"]), Some(&[0.5])).unwrap_err();
    assert_eq!(err.to_string(), "1 rule entropies given for 2 rules");
    let err = Selector::new(strategy, ids(&["a", "b"]), Some(&[0.5, f64::NAN])).unwrap_err();
    assert!(err.to_string().starts_with("rule b: entropy NaN"), "{err}");
}

#[test]
fn select_entropy_weighted_end_to_end_prefers_the_decisive_rule() {
    // Two rules with the same pair statistics; across the dataset rule "zcalm" always
    // scores 1.0 or -1.0 (two bins) while "noisy" spreads over all ten bins. The ids
    // are such that, unweighted, the tie goes to "noisy" ("noisy" < "zcalm").
    let names = ["zcalm", "noisy"];
    let rows: Vec<Vec<Option<RuleScore>>> =
        (0..10).map(|i| vec![v(if i % 2 == 0 { 1.0 } else { -1.0 }, 1.0), v(-0.9 + 0.2 * f64::from(i), 1.0)]).collect();
    let entropies = rule_entropies(&rows, 2);
    assert!(entropies[0] < entropies[1]);
    let s = Selector::new(Strategy::entropy_weighted(1).unwrap(), ids(&names), Some(&entropies)).unwrap();
    let a = [v(0.5, 0.5), v(0.5, 0.5)];
    let b = [v(-0.5, 0.5), v(-0.5, 0.5)];
    assert_eq!(s.select("p", PairScores::new(&a, &b), None).unwrap().indices(), [0]);
    // Unweighted, the same tie goes to the lower id.
    let plain = selector(Strategy::max_discrepancy(1, 0.5).unwrap(), &names);
    assert_eq!(plain.select("p", PairScores::new(&a, &b), None).unwrap().indices(), [1]);
}

#[test]
fn select_random_k_is_seeded_and_deterministic_per_pair() {
    let names: Vec<String> = (0..20).map(|i| format!("rule-{i:02}")).collect();
    let row: Vec<Option<RuleScore>> = (0..20).map(|i| v(f64::from(i) / 20.0, 0.5)).collect();
    let scores = PairScores::new(&row, &row);
    let pick = |seed: u64, pair: &str| {
        Selector::new(Strategy::random_k(5, seed).unwrap(), names.clone(), None)
            .unwrap()
            .select(pair, scores, None)
            .unwrap()
    };
    let first = pick(7, "pair-1");
    assert_eq!(first, pick(7, "pair-1"));
    assert_eq!(first.len(), 5);
    assert!(first.rules.iter().all(|r| (0.0..1.0).contains(&r.selection_score)));
    assert!(first.rules.windows(2).all(|w| w[0].selection_score >= w[1].selection_score));
    // Other pairs and other seeds draw other rules (for these ids, all of them do).
    assert!((2..6).all(|n| pick(7, &format!("pair-{n}")).indices() != first.indices()));
    assert!((8..12).all(|seed| pick(seed, "pair-1").indices() != first.indices()));
}

#[test]
fn select_random_k_follows_rule_ids_not_columns() {
    // Reversing the columns (ids and scores together) selects the same rule ids.
    let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let row: Vec<Option<RuleScore>> = (0..12).map(|i| v(0.0, f64::from(i) / 12.0)).collect();
    let reversed_names: Vec<String> = names.iter().rev().cloned().collect();
    let reversed_row: Vec<Option<RuleScore>> = row.iter().rev().copied().collect();
    let strategy = Strategy::random_k(4, 99).unwrap();
    for pair in ["x", "y", "z"] {
        let forward = Selector::new(strategy.clone(), names.clone(), None).unwrap();
        let backward = Selector::new(strategy.clone(), reversed_names.clone(), None).unwrap();
        let f = forward.select(pair, PairScores::new(&row, &row), None).unwrap();
        let b = backward.select(pair, PairScores::new(&reversed_row, &reversed_row), None).unwrap();
        let f_ids: Vec<&str> = f.rules.iter().map(|r| names[r.rule].as_str()).collect();
        let b_ids: Vec<&str> = b.rules.iter().map(|r| reversed_names[r.rule].as_str()).collect();
        assert_eq!(f_ids, b_ids);
    }
}

#[test]
fn select_random_k_is_roughly_uniform() {
    // 10 rules, k = 3, 4000 pairs: each rule should be picked about 1200 times.
    let names: Vec<String> = (0..10).map(|i| format!("rule-{i}")).collect();
    let row: Vec<Option<RuleScore>> = (0..10).map(|_| v(0.0, 1.0)).collect();
    let s = Selector::new(Strategy::random_k(3, 42).unwrap(), names, None).unwrap();
    let mut counts = [0usize; 10];
    for n in 0..4000 {
        for r in s.select(&format!("pair-{n}"), PairScores::new(&row, &row), None).unwrap().indices() {
            counts[r] += 1;
        }
    }
    assert!(counts.iter().all(|&c| (1080..=1320).contains(&c)), "{counts:?}");
}

#[test]
fn select_all_takes_every_selectable_rule_in_id_order() {
    let selection = select_example(Strategy::All);
    assert_eq!(selection.indices(), [0, 2, 3, 4]);
    assert_eq!(selection.selectable, 4);
    let (a, b) = example();
    let s = selector(Strategy::default(), &NAMES);
    let all = s.select_all("p", PairScores::new(&a, &b)).unwrap();
    assert_eq!(all.indices(), [0, 2, 3, 4]);
    assert_eq!(all, selection);
}

#[test]
fn select_adapter_follows_the_predicted_order() {
    let (a, b) = example();
    let s = selector(Strategy::adapter(2).unwrap(), &NAMES);
    let scores = PairScores::new(&a, &b);
    // Predicted: privacy (no verdict on B: skipped), tone, tone again (skipped), harm, weapons.
    let selection = s.select("p", scores, Some(&[1, 2, 2, 0, 4])).unwrap();
    assert_eq!(selection.indices(), [2, 0]);
    // Scores from the position in the list: tone at 1 -> 1/2, harm at 3 -> 1/4.
    assert_eq!(selection.rules[0].selection_score, 0.5);
    assert_eq!(selection.rules[1].selection_score, 0.25);
    assert_eq!(selection.selectable, 4);
    // Fewer usable predictions than k: only those.
    assert_eq!(s.select("p", scores, Some(&[3])).unwrap().indices(), [3]);
    assert!(s.select("p", scores, Some(&[])).unwrap().is_empty());
    // k larger than the predictions.
    let wide = selector(Strategy::adapter(10).unwrap(), &NAMES);
    assert_eq!(wide.select("p", scores, Some(&[4, 3, 2, 1, 0])).unwrap().indices(), [4, 3, 2, 0]);
}

#[test]
fn select_adapter_needs_predictions_in_range() {
    let (a, b) = example();
    let s = selector(Strategy::adapter(2).unwrap(), &NAMES);
    let scores = PairScores::new(&a, &b);
    let err = s.select("p7", scores, None).unwrap_err();
    assert_eq!(err.to_string(), "pair p7: strategy adapter needs the adapter's predicted rules for this pair");
    let err = s.select("p7", scores, Some(&[0, 5])).unwrap_err();
    assert_eq!(err.to_string(), "pair p7: predicted rule index 5 is out of range (there are 5 rules)");
    // Other strategies ignore predictions.
    let md = selector(Strategy::default(), &NAMES);
    assert_eq!(md.select("p", scores, Some(&[99])).unwrap(), md.select("p", scores, None).unwrap());
}

#[test]
fn select_rejects_rows_that_do_not_fit_the_rules() {
    let s = selector(Strategy::default(), &["a", "b"]);
    let good = [v(0.0, 0.0), v(0.0, 0.0)];
    let short = [v(0.0, 0.0)];
    let err = s.select("p1", PairScores::new(&good, &short), None).unwrap_err();
    assert_eq!(err.to_string(), "pair p1: response B has 1 rule scores, expected one per rule (2)");

    let cases = [
        (v(1.5, 0.0), "pair p1, rule b, response A: score 1.5 is outside [-1, 1]"),
        (v(0.0, -0.1), "pair p1, rule b, response A: relevance -0.1 is outside [0, 1]"),
        (v(f64::NAN, 0.0), "pair p1, rule b, response A: score NaN is outside [-1, 1]"),
        (v(0.0, f64::INFINITY), "pair p1, rule b, response A: relevance inf is outside [0, 1]"),
    ];
    for (bad, message) in cases {
        let a = [v(0.0, 0.0), bad];
        // Checked even where the other side has no verdict.
        let b = [v(0.0, 0.0), None];
        assert_eq!(s.select("p1", PairScores::new(&a, &b), None).unwrap_err().to_string(), message);
        assert_eq!(s.select_all("p1", PairScores::new(&a, &b)).unwrap_err().to_string(), message);
    }
    // The ends of the ranges are fine.
    let edges = [v(-1.0, 0.0), v(1.0, 1.0)];
    assert_eq!(s.select("p", PairScores::new(&edges, &edges), None).unwrap().len(), 2);
}

#[test]
fn select_rejects_duplicate_rule_ids() {
    let err = Selector::new(Strategy::All, ids(&["a", "b", "a"]), None).unwrap_err();
    assert_eq!(err, SelectError::DuplicateRule { id: "a".into() });
    // No rules at all is fine: every selection is empty.
    let empty = Selector::new(Strategy::All, Vec::new(), None).unwrap();
    assert!(empty.select("p", PairScores::new(&[], &[]), None).unwrap().is_empty());
}

#[test]
fn select_k_zero_is_rejected_everywhere() {
    let message = |strategy: &str| {
        format!(
            "strategy {strategy}: k must be at least 1 (with k = 0 no rule would be selected and no pair could be labeled)"
        )
    };
    assert_eq!(Strategy::max_discrepancy(0, 0.5).unwrap_err().to_string(), message("max-discrepancy"));
    assert_eq!(Strategy::random_k(0, 1).unwrap_err().to_string(), message("random-k"));
    assert_eq!(Strategy::relevance_only(0).unwrap_err().to_string(), message("relevance-only"));
    assert_eq!(Strategy::entropy_weighted(0).unwrap_err().to_string(), message("entropy-weighted"));
    assert_eq!(Strategy::adapter(0).unwrap_err().to_string(), message("adapter"));
    // A hand-built variant is caught by the selector.
    let err = Selector::new(Strategy::Adapter { k: 0 }, ids(&["a"]), None).unwrap_err();
    assert_eq!(err, SelectError::ZeroK { strategy: "adapter" });
    // And by parsing, in text and in serde form.
    assert_eq!("adapter:k=0".parse::<Strategy>().unwrap_err(), SelectError::ZeroK { strategy: "adapter" });
    let err = serde_json::from_str::<Strategy>(r#"{"strategy":"random-k","k":0}"#).unwrap_err();
    assert!(err.to_string().contains("k must be at least 1"), "{err}");
}

#[test]
fn select_lambda_must_be_finite_and_non_negative() {
    for lambda in [-0.1, f64::NAN, f64::INFINITY] {
        let err = Strategy::max_discrepancy(5, lambda).unwrap_err();
        assert!(err.to_string().starts_with("strategy max-discrepancy: lambda must be a finite number >= 0"), "{err}");
    }
    assert!(Strategy::max_discrepancy(5, 0.0).is_ok());
    assert!("max-discrepancy:lambda=-1".parse::<Strategy>().is_err());
}

fn every_strategy() -> Vec<Strategy> {
    vec![
        Strategy::max_discrepancy(3, 0.25).unwrap(),
        Strategy::All,
        Strategy::random_k(2, 18_446_744_073_709_551_615).unwrap(),
        Strategy::relevance_only(1).unwrap(),
        Strategy::entropy_weighted(7).unwrap(),
        Strategy::adapter(4).unwrap(),
    ]
}

#[test]
fn select_strategy_text_form_round_trips() {
    let texts = [
        "max-discrepancy:k=3,lambda=0.25",
        "all",
        "random-k:k=2,seed=18446744073709551615",
        "relevance-only:k=1",
        "entropy-weighted:k=7",
        "adapter:k=4",
    ];
    for (strategy, text) in every_strategy().into_iter().zip(texts) {
        assert_eq!(strategy.to_string(), text);
        assert_eq!(text.parse::<Strategy>().unwrap(), strategy);
        assert!(Strategy::NAMES.contains(&strategy.name()));
    }
    assert_eq!(Strategy::default().to_string(), "max-discrepancy:k=5,lambda=0.5");
}

#[test]
fn select_strategy_text_form_defaults_and_spacing() {
    assert_eq!("max-discrepancy".parse::<Strategy>().unwrap(), Strategy::MaxDiscrepancy { k: 5, lambda: 0.5 });
    assert_eq!(
        " max-discrepancy : lambda = 1 ".parse::<Strategy>().unwrap(),
        Strategy::MaxDiscrepancy { k: 5, lambda: 1.0 }
    );
    assert_eq!("random-k".parse::<Strategy>().unwrap(), Strategy::RandomK { k: 5, seed: 0 });
    assert_eq!("random-k:seed=3".parse::<Strategy>().unwrap(), Strategy::RandomK { k: 5, seed: 3 });
    assert_eq!("relevance-only".parse::<Strategy>().unwrap(), Strategy::RelevanceOnly { k: 5 });
    assert_eq!("entropy-weighted".parse::<Strategy>().unwrap(), Strategy::EntropyWeighted { k: 5 });
    assert_eq!("adapter:k=2".parse::<Strategy>().unwrap(), Strategy::Adapter { k: 2 });
    assert_eq!(
        "all:".parse::<Strategy>().unwrap_err().to_string(),
        r#"cannot parse strategy "all:": expected key=value, found """#
    );
}

#[test]
fn select_strategy_text_form_errors_say_what_is_wrong() {
    let cases = [
        (
            "top-k",
            r#"unknown strategy "top-k"; expected one of max-discrepancy, all, random-k, relevance-only, entropy-weighted, adapter"#,
        ),
        ("all:k=3", r#"all has no parameter "k" (parameters: none)"#),
        ("relevance-only:lambda=1", r#"relevance-only has no parameter "lambda" (parameters: k)"#),
        ("random-k:k=2,k=3", "parameter k is given twice"),
        ("max-discrepancy:k=two", r#"k = "two" is not a whole number"#),
        ("max-discrepancy:lambda=x", r#"lambda = "x" is not a number"#),
        ("random-k:seed=-1", r#"seed = "-1" is not a whole number >= 0"#),
        ("adapter:k", r#"expected key=value, found "k""#),
    ];
    for (input, message) in cases {
        let err = input.parse::<Strategy>().unwrap_err();
        assert_eq!(err, SelectError::Parse { input: input.into(), message: message.into() }, "{input}");
    }
}

#[test]
fn select_strategy_serde_form() {
    for strategy in every_strategy() {
        let json = serde_json::to_string(&strategy).unwrap();
        assert_eq!(serde_json::from_str::<Strategy>(&json).unwrap(), strategy, "{json}");
    }
    assert_eq!(
        serde_json::to_string(&Strategy::default()).unwrap(),
        r#"{"strategy":"max-discrepancy","k":5,"lambda":0.5}"#
    );
    assert_eq!(serde_json::to_string(&Strategy::All).unwrap(), r#"{"strategy":"all"}"#);
    // Defaults fill missing fields; TOML works the same way.
    assert_eq!(serde_json::from_str::<Strategy>(r#"{"strategy":"max-discrepancy"}"#).unwrap(), Strategy::default());
    assert_eq!(
        toml::from_str::<Strategy>("strategy = \"random-k\"\nseed = 7").unwrap(),
        Strategy::RandomK { k: 5, seed: 7 }
    );
    // Unknown names and fields are errors.
    assert!(serde_json::from_str::<Strategy>(r#"{"strategy":"top-k"}"#).is_err());
    let err = serde_json::from_str::<Strategy>(r#"{"strategy":"relevance-only","lambda":1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `lambda`"), "{err}");
    assert!(serde_json::from_str::<Strategy>(r#"{"strategy":"max-discrepancy","lambda":-1}"#).is_err());
}

#[test]
fn select_strategy_accessors() {
    assert_eq!(Strategy::default().k(), Some(5));
    assert_eq!(Strategy::All.k(), None);
    assert!(Strategy::entropy_weighted(1).unwrap().needs_entropies());
    assert!(!Strategy::default().needs_entropies());
    assert!(Strategy::adapter(1).unwrap().needs_predictions());
    assert!(!Strategy::All.needs_predictions());
    let s = selector(Strategy::All, &["x"]);
    assert_eq!((s.strategy(), s.rule_ids()), (&Strategy::All, &ids(&["x"])[..]));
}

#[test]
fn select_pair_scores_helpers() {
    let a = [v(0.1, 0.2), None];
    let b = [v(0.3, 0.4), v(0.5, 0.6)];
    let scores = PairScores::new(&a, &b);
    assert_eq!(
        scores.both(0),
        Some((RuleScore { score: 0.1, relevance: 0.2 }, RuleScore { score: 0.3, relevance: 0.4 }))
    );
    assert_eq!(scores.both(1), None);
    assert_eq!(scores.both(2), None);
    assert_eq!(scores.swapped().side(Pref::A), &b);
    assert_eq!(scores.swapped().swapped(), scores);
}

// ---------------------------------------------------------------------------------
// Properties.

/// A score on a coarse grid (to provoke ties) or anywhere in the range.
fn score() -> impl proptest::strategy::Strategy<Value = f64> {
    prop_oneof![(-4i32..=4).prop_map(|i| f64::from(i) / 4.0), -1.0f64..=1.0]
}

fn relevance() -> impl proptest::strategy::Strategy<Value = f64> {
    prop_oneof![(0i32..=4).prop_map(|i| f64::from(i) / 4.0), 0.0f64..=1.0]
}

fn verdict() -> impl proptest::strategy::Strategy<Value = Option<RuleScore>> {
    prop_oneof![
        1 => Just(None),
        4 => (score(), relevance()).prop_map(|(score, relevance)| Some(RuleScore { score, relevance })),
    ]
}

fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        (1usize..8, 0.0f64..3.0).prop_map(|(k, lambda)| Strategy::MaxDiscrepancy { k, lambda }),
        Just(Strategy::All),
        (1usize..8, any::<u64>()).prop_map(|(k, seed)| Strategy::RandomK { k, seed }),
        (1usize..8).prop_map(|k| Strategy::RelevanceOnly { k }),
        (1usize..8).prop_map(|k| Strategy::EntropyWeighted { k }),
        (1usize..8).prop_map(|k| Strategy::Adapter { k }),
    ]
}

/// A random pair over 0..10 rules, with everything any strategy needs: rule ids
/// whose string order differs from column order, entropies, and a full ranked
/// prediction list for the adapter.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub strategy: Strategy,
    pub ids: Vec<String>,
    pub entropies: Vec<f64>,
    pub predicted: Vec<usize>,
    pub a: Vec<Option<RuleScore>>,
    pub b: Vec<Option<RuleScore>>,
    pub pair_id: String,
}

impl Case {
    pub fn selector(&self) -> Selector {
        Selector::new(self.strategy.clone(), self.ids.clone(), Some(&self.entropies)).unwrap()
    }

    pub fn scores(&self) -> PairScores<'_> {
        PairScores::new(&self.a, &self.b)
    }

    pub fn select(&self, scores: PairScores<'_>) -> Selection {
        self.selector().select(&self.pair_id, scores, Some(&self.predicted)).unwrap()
    }
}

pub(crate) fn any_case() -> impl proptest::strategy::Strategy<Value = Case> {
    (0usize..10).prop_flat_map(|rules| {
        let order: Vec<usize> = (0..rules).collect();
        (
            any_strategy(),
            Just(order.clone()).prop_shuffle(),
            proptest::collection::vec(0.0f64..=1.0, rules),
            Just(order).prop_shuffle(),
            proptest::collection::vec(verdict(), rules),
            proptest::collection::vec(verdict(), rules),
            "[a-z0-9-]{1,12}",
        )
            .prop_map(|(strategy, names, entropies, predicted, a, b, pair_id)| Case {
                strategy,
                ids: names.iter().map(|n| format!("rule-{n}")).collect(),
                entropies,
                predicted,
                a,
                b,
                pair_id,
            })
    })
}

proptest! {
    #[test]
    fn select_prop_swapping_a_and_b_keeps_the_selection(case in any_case()) {
        let forward = case.select(case.scores());
        let backward = case.select(case.scores().swapped());
        prop_assert_eq!(forward.indices(), backward.indices());
        prop_assert_eq!(forward.selectable, backward.selectable);
        for (f, b) in forward.rules.iter().zip(&backward.rules) {
            prop_assert_eq!((f.score_a, f.score_b), (b.score_b, b.score_a));
            prop_assert_eq!((f.relevance, f.discrepancy, f.selection_score, f.weight),
                            (b.relevance, b.discrepancy, b.selection_score, b.weight));
        }
    }

    #[test]
    fn select_prop_selection_size_is_min_of_k_and_selectable(case in any_case()) {
        let selection = case.select(case.scores());
        let selectable = (0..case.ids.len()).filter(|&r| case.a[r].is_some() && case.b[r].is_some()).count();
        prop_assert_eq!(selection.selectable, selectable);
        // The adapter's list here ranks every rule, so it too reaches min(k, selectable).
        let k = case.strategy.k().unwrap_or(usize::MAX);
        prop_assert_eq!(selection.len(), k.min(selectable));
    }

    #[test]
    fn select_prop_selected_rules_are_usable_distinct_and_ordered(case in any_case()) {
        let selection = case.select(case.scores());
        let mut seen = std::collections::HashSet::new();
        for rule in &selection.rules {
            prop_assert!(case.a[rule.rule].is_some() && case.b[rule.rule].is_some());
            prop_assert!(seen.insert(rule.rule));
            prop_assert!(rule.discrepancy >= 0.0 && rule.weight > 0.0);
        }
        if !case.strategy.needs_predictions() {
            for w in selection.rules.windows(2) {
                let (x, y) = (&w[0], &w[1]);
                prop_assert!(x.selection_score > y.selection_score
                    || (x.selection_score == y.selection_score && case.ids[x.rule] < case.ids[y.rule]));
            }
        }
    }

    #[test]
    fn select_prop_top_k_keeps_the_best_scores(case in any_case()) {
        // The selection is a prefix of the full ranking (for the ranking strategies),
        // so no rule left out outranks a rule kept.
        let wide = match case.strategy {
            Strategy::MaxDiscrepancy { lambda, .. } => Strategy::MaxDiscrepancy { k: 100, lambda },
            Strategy::RandomK { seed, .. } => Strategy::RandomK { k: 100, seed },
            Strategy::RelevanceOnly { .. } => Strategy::RelevanceOnly { k: 100 },
            Strategy::EntropyWeighted { .. } => Strategy::EntropyWeighted { k: 100 },
            Strategy::All | Strategy::Adapter { .. } => return Ok(()),
        };
        let kept = case.select(case.scores());
        let ranking = Selector::new(wide, case.ids.clone(), Some(&case.entropies))
            .unwrap()
            .select(&case.pair_id, case.scores(), None)
            .unwrap();
        prop_assert_eq!(&ranking.rules[..kept.len()], &kept.rules[..]);
    }
}
