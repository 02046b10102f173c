//! Unit and property tests of labeling. Every test name contains `label` so that
//! `cargo test -p engine --lib label` runs them all.

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::*;
use crate::select::tests::any_case;
use crate::select::{RuleScore, Strategy};

const EPS: f64 = 1e-12;

fn v(score: f64, relevance: f64) -> Option<RuleScore> {
    Some(RuleScore { score, relevance })
}

fn selector(strategy: Strategy, names: &[&str]) -> Selector {
    Selector::new(strategy, names.iter().map(|s| (*s).to_owned()).collect(), None).unwrap()
}

fn labeler(policy: TiePolicy) -> Labeler {
    Labeler::new(policy, DEFAULT_EPSILON).unwrap()
}

fn chosen(winner: Pref) -> Label {
    Label::Chosen { winner }
}

fn abstain(reason: AbstainReason) -> Label {
    Label::Abstain { reason }
}

/// Labels `a` vs `b` under `strategy` and `policy`.
fn run(
    strategy: Strategy,
    names: &[&str],
    policy: TiePolicy,
    a: &[Option<RuleScore>],
    b: &[Option<RuleScore>],
) -> Labeled {
    let selector = selector(strategy, names);
    labeler(policy).label_pair(&selector, "p", PairScores::new(a, b), None).unwrap().1
}

#[test]
fn label_max_discrepancy_worked_example() {
    // The selection tests' running example with k = 3 selects harm, violence, weapons:
    //   Σ_A = 0.9 + 0.5 − 0.2 = 1.2,  Σ_B = −0.7 − 0.5 + 0.0 = −1.2,
    //   margin 2.4, normalised 2.4 / 3 = 0.8.
    let names = ["harm", "privacy", "tone", "violence", "weapons"];
    let a = [v(0.9, 0.8), v(0.0, 0.1), v(0.2, 0.3), v(0.5, 0.6), v(-0.2, 1.0)];
    let b = [v(-0.7, 0.9), None, v(0.6, 0.2), v(-0.5, 0.1), v(0.0, 0.7)];
    let labeled = run(Strategy::max_discrepancy(3, 0.5).unwrap(), &names, TiePolicy::Drop, &a, &b);
    assert_eq!(labeled.label, chosen(Pref::A));
    assert!((labeled.sum_a - 1.2).abs() < EPS && (labeled.sum_b + 1.2).abs() < EPS, "{labeled:?}");
    assert!((labeled.margin - 2.4).abs() < EPS);
    assert!((labeled.normalized_margin - 0.8).abs() < EPS);
    assert_eq!((labeled.rules, labeled.fallback.as_ref()), (3, None));

    // The same pair swapped: B wins by the same margin.
    let swapped = run(Strategy::max_discrepancy(3, 0.5).unwrap(), &names, TiePolicy::Drop, &b, &a);
    assert_eq!(swapped.label, chosen(Pref::B));
    assert_eq!((swapped.sum_a, swapped.sum_b, swapped.margin), (labeled.sum_b, labeled.sum_a, labeled.margin));

    // Relevance-only k = 1 keeps only weapons (relevance 1.0), where B is better:
    // Σ_A = −0.2, Σ_B = 0.0, so the label flips to B, margin 0.2.
    let labeled = run(Strategy::relevance_only(1).unwrap(), &names, TiePolicy::Drop, &a, &b);
    assert_eq!(labeled.label, chosen(Pref::B));
    assert!((labeled.margin - 0.2).abs() < EPS && (labeled.normalized_margin - 0.2).abs() < EPS);
}

#[test]
fn label_entropy_weighted_sums_weighted_scores() {
    // Weights from the selection tests: w = [1.741496, 0.640661, 0.235686, 0.640661, 1.741496];
    // k = 2 keeps harm and weapons:
    //   Σ_A = 1.741496 · 0.9 + 1.741496 · (−0.2) = 1.219047,
    //   Σ_B = 1.741496 · (−0.7) + 1.741496 · 0.0 = −1.219047,
    //   margin 2.438095, normalised 1.219047.
    let names: Vec<String> = ["harm", "privacy", "tone", "violence", "weapons"].map(String::from).to_vec();
    let a = [v(0.9, 0.8), v(0.0, 0.1), v(0.2, 0.3), v(0.5, 0.6), v(-0.2, 1.0)];
    let b = [v(-0.7, 0.9), None, v(0.6, 0.2), v(-0.5, 0.1), v(0.0, 0.7)];
    let entropies = [0.0, 0.5, 1.0, 0.5, 0.0];
    let selector = Selector::new(Strategy::entropy_weighted(2).unwrap(), names, Some(&entropies)).unwrap();
    let (selection, labeled) = Labeler::default().label_pair(&selector, "p", PairScores::new(&a, &b), None).unwrap();
    assert_eq!(selection.indices(), [0, 4]);
    assert_eq!(labeled.label, chosen(Pref::A));
    assert!((labeled.sum_a - 1.219_047_443).abs() < 1e-8, "{labeled:?}");
    assert!((labeled.sum_b + 1.219_047_443).abs() < 1e-8);
    assert!((labeled.margin - 2.438_094_885).abs() < 1e-8);
    assert!((labeled.normalized_margin - 1.219_047_443).abs() < 1e-8);
}

#[test]
fn label_weights_can_overturn_the_unweighted_vote() {
    // Unweighted: 0.4 + (−0.3) = 0.1 > 0, A wins. With weights 1 and 2: 0.4 − 0.6 < 0, B wins.
    let rule = |rule, score_a, weight| SelectedRule {
        rule,
        score_a,
        score_b: 0.0,
        relevance: 1.0,
        discrepancy: f64::abs(score_a),
        selection_score: 1.0,
        weight,
    };
    let plain = Selection { rules: vec![rule(0, 0.4, 1.0), rule(1, -0.3, 1.0)], selectable: 2 };
    let weighted = Selection { rules: vec![rule(0, 0.4, 1.0), rule(1, -0.3, 2.0)], selectable: 2 };
    let labeler = Labeler::default();
    assert_eq!(labeler.label(&plain, || unreachable!()).label, chosen(Pref::A));
    let labeled = labeler.label(&weighted, || unreachable!());
    assert_eq!(labeled.label, chosen(Pref::B));
    assert!((labeled.sum_a + 0.2).abs() < EPS && labeled.sum_b == 0.0);
}

/// Rules x and y cancel out (+0.5 and −0.5 for A, the reverse for B) and are always
/// selected first; z decides only if everything votes.
fn tied_pair(z_a: f64, z_b: f64) -> (Vec<Option<RuleScore>>, Vec<Option<RuleScore>>) {
    (vec![v(0.5, 1.0), v(-0.5, 1.0), v(z_a, 0.0)], vec![v(-0.5, 1.0), v(0.5, 1.0), v(z_b, 0.0)])
}

#[test]
fn label_tie_policies() {
    let names = ["x", "y", "z"];
    let two = || Strategy::max_discrepancy(2, 0.5).unwrap();
    let (a, b) = tied_pair(0.2, 0.0);

    let dropped = run(two(), &names, TiePolicy::Drop, &a, &b);
    assert_eq!(dropped.label, abstain(AbstainReason::Tied));
    assert_eq!((dropped.sum_a, dropped.sum_b, dropped.margin, dropped.rules), (0.0, 0.0, 0.0, 2));

    let half = run(two(), &names, TiePolicy::Half, &a, &b);
    assert_eq!(half.label, Label::Tie);
    assert_eq!(half.label.target_a(), Some(0.5));
    assert!(half.fallback.is_none());

    // Fallback: all three rules vote; z makes A win by 0.2 (normalised 0.2 / 3).
    let fallback = run(two(), &names, TiePolicy::FallbackAll, &a, &b);
    assert_eq!(fallback.label, chosen(Pref::A));
    assert!((fallback.margin - 0.2).abs() < EPS);
    assert!((fallback.normalized_margin - 0.2 / 3.0).abs() < EPS);
    assert_eq!(fallback.rules, 3);
    assert_eq!(fallback.fallback.as_ref().map(Selection::indices), Some(vec![0, 1, 2]));

    // Still tied with every rule: abstain, and say so.
    let (a, b) = tied_pair(0.3, 0.3);
    let still = run(two(), &names, TiePolicy::FallbackAll, &a, &b);
    assert_eq!(still.label, abstain(AbstainReason::TiedAfterFallback));
    assert_eq!(still.rules, 3);
    assert!(still.fallback.is_some());
}

#[test]
fn label_a_tie_is_never_a_win_for_b() {
    // The paper's code labels ties "B wins"; here no policy turns a tie into a winner.
    let (a, b) = tied_pair(0.0, 0.0);
    for policy in TiePolicy::ALL {
        for strategy in [Strategy::max_discrepancy(2, 0.5).unwrap(), Strategy::All] {
            let labeled = run(strategy, &["x", "y", "z"], policy, &a, &b);
            assert_eq!(labeled.label.winner(), None, "{policy}: {labeled:?}");
        }
    }
}

#[test]
fn label_pairs_no_rule_can_judge_follow_the_policy() {
    let names = ["x", "y"];
    let a = [v(1.0, 1.0), None];
    let b = [None, v(-1.0, 1.0)];
    let dropped = run(Strategy::default(), &names, TiePolicy::Drop, &a, &b);
    assert_eq!(dropped.label, abstain(AbstainReason::NoSelectableRule));
    assert_eq!(
        (dropped.sum_a, dropped.sum_b, dropped.margin, dropped.normalized_margin, dropped.rules),
        (0.0, 0.0, 0.0, 0.0, 0)
    );
    assert!(dropped.sum_a.is_sign_positive());
    assert_eq!(run(Strategy::default(), &names, TiePolicy::Half, &a, &b).label, Label::Tie);
    let fallback = run(Strategy::default(), &names, TiePolicy::FallbackAll, &a, &b);
    assert_eq!(fallback.label, abstain(AbstainReason::NoSelectableRule));
    assert_eq!(fallback.fallback, Some(Selection::default()));
}

#[test]
fn label_fallback_rescues_an_adapter_that_predicted_nothing_usable() {
    // The adapter predicted only rule x, which has no verdict on B; y can still judge.
    let s = selector(Strategy::adapter(1).unwrap(), &["x", "y"]);
    let a = [v(1.0, 1.0), v(0.5, 1.0)];
    let b = [None, v(-0.5, 1.0)];
    let scores = PairScores::new(&a, &b);
    let (selection, labeled) = labeler(TiePolicy::Drop).label_pair(&s, "p", scores, Some(&[0])).unwrap();
    assert!(selection.is_empty());
    assert_eq!(labeled.label, abstain(AbstainReason::NoSelectableRule));
    let (_, labeled) = labeler(TiePolicy::FallbackAll).label_pair(&s, "p", scores, Some(&[0])).unwrap();
    assert_eq!(labeled.label, chosen(Pref::A));
    assert_eq!((labeled.margin, labeled.rules), (1.0, 1));
}

#[test]
fn label_fallback_is_computed_only_when_needed() {
    let (a, b) = tied_pair(0.2, 0.0);
    let s = selector(Strategy::max_discrepancy(2, 0.5).unwrap(), &["x", "y", "z"]);
    let selection = s.select("p", PairScores::new(&a, &b), None).unwrap();
    // Drop and Half never call it, even on a tie.
    for policy in [TiePolicy::Drop, TiePolicy::Half] {
        labeler(policy).label(&selection, || panic!("{policy} must not fall back"));
    }
    // A decisive selection never calls it either.
    let decisive = s.select("p", PairScores::new(&a, &[v(-0.5, 1.0), v(-0.5, 1.0), v(0.0, 0.0)]), None).unwrap();
    let labeled = labeler(TiePolicy::FallbackAll).label(&decisive, || panic!("decisive pairs must not fall back"));
    assert_eq!(labeled.label, chosen(Pref::A));
}

#[test]
fn label_epsilon_sets_what_counts_as_a_tie() {
    let s = selector(Strategy::All, &["x"]);
    let label_with = |epsilon: f64, score_a: f64, score_b: f64| {
        let (a, b) = ([v(score_a, 1.0)], [v(score_b, 1.0)]);
        Labeler::new(TiePolicy::Drop, epsilon)
            .unwrap()
            .label_pair(&s, "p", PairScores::new(&a, &b), None)
            .unwrap()
            .1
            .label
    };
    // The default ε = 1e-6 absorbs rounding-sized differences only.
    assert_eq!(label_with(DEFAULT_EPSILON, 0.5 + 1e-7, 0.5), abstain(AbstainReason::Tied));
    assert_eq!(label_with(DEFAULT_EPSILON, 0.5 + 1e-5, 0.5), chosen(Pref::A));
    // |Δ| = ε exactly is still a tie (0.25 is exact in binary).
    assert_eq!(label_with(0.25, 0.25, 0.0), abstain(AbstainReason::Tied));
    assert_eq!(label_with(0.249, 0.25, 0.0), chosen(Pref::A));
    // ε = 0: only exact equality ties.
    assert_eq!(label_with(0.0, 0.0, 0.0), abstain(AbstainReason::Tied));
    assert_eq!(label_with(0.0, 0.0, 1e-300), chosen(Pref::B));
}

#[test]
fn label_settings_are_validated() {
    for epsilon in [-1e-9, f64::NAN, f64::INFINITY] {
        let err = Labeler::new(TiePolicy::Half, epsilon).unwrap_err();
        assert!(err.to_string().starts_with("tie epsilon must be a finite number >= 0"), "{err}");
    }
    let default = Labeler::default();
    assert_eq!((default.tie_policy(), default.epsilon()), (TiePolicy::Drop, 1e-6));
}

#[test]
fn label_tie_policy_text_and_serde_forms() {
    for (policy, name) in TiePolicy::ALL.into_iter().zip(["drop", "half", "fallback-all"]) {
        assert_eq!(policy.to_string(), name);
        assert_eq!(name.parse::<TiePolicy>().unwrap(), policy);
        assert_eq!(serde_json::to_string(&policy).unwrap(), format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<TiePolicy>(&format!("\"{name}\"")).unwrap(), policy);
    }
    assert_eq!(
        "fallback".parse::<TiePolicy>().unwrap_err().to_string(),
        r#"unknown tie policy "fallback"; expected one of drop, half, fallback-all"#
    );
    assert_eq!(TiePolicy::default(), TiePolicy::Drop);
}

#[test]
fn label_serde_forms() {
    let cases = [
        (chosen(Pref::A), r#"{"label":"chosen","winner":"a"}"#),
        (chosen(Pref::B), r#"{"label":"chosen","winner":"b"}"#),
        (Label::Tie, r#"{"label":"tie"}"#),
        (abstain(AbstainReason::NoSelectableRule), r#"{"label":"abstain","reason":"no-selectable-rule"}"#),
        (abstain(AbstainReason::TiedAfterFallback), r#"{"label":"abstain","reason":"tied-after-fallback"}"#),
    ];
    for (label, json) in cases {
        assert_eq!(serde_json::to_string(&label).unwrap(), json);
        assert_eq!(serde_json::from_str::<Label>(json).unwrap(), label);
    }
    let (a, b) = tied_pair(0.2, 0.0);
    let labeled = run(Strategy::max_discrepancy(2, 0.5).unwrap(), &["x", "y", "z"], TiePolicy::FallbackAll, &a, &b);
    let json = serde_json::to_string(&labeled).unwrap();
    assert_eq!(serde_json::from_str::<Labeled>(&json).unwrap(), labeled);
    let plain = run(Strategy::All, &["x", "y", "z"], TiePolicy::Drop, &a, &b);
    let json = serde_json::to_string(&plain).unwrap();
    assert!(
        json.starts_with(r#"{"label":{"label":"chosen","winner":"a"},"sum_a":"#) && !json.contains("fallback"),
        "{json}"
    );
    assert_eq!(AbstainReason::Tied.to_string(), "the selected rules tie");
}

#[test]
fn label_helpers() {
    assert_eq!(chosen(Pref::A).swapped(), chosen(Pref::B));
    assert_eq!(Label::Tie.swapped(), Label::Tie);
    assert_eq!(abstain(AbstainReason::Tied).swapped(), abstain(AbstainReason::Tied));
    assert_eq!((chosen(Pref::A).target_a(), chosen(Pref::B).target_a()), (Some(1.0), Some(0.0)));
    assert_eq!(abstain(AbstainReason::Tied).target_a(), None);
    assert_eq!(chosen(Pref::B).winner(), Some(Pref::B));
    assert_eq!(Label::Tie.winner(), None);
}

#[test]
fn label_pair_passes_selection_errors_through() {
    let s = selector(Strategy::default(), &["x"]);
    let err = Labeler::default().label_pair(&s, "p9", PairScores::new(&[v(2.0, 0.0)], &[None]), None).unwrap_err();
    assert_eq!(err.to_string(), "pair p9, rule x, response A: score 2 is outside [-1, 1]");
}

fn any_labeler() -> impl proptest::strategy::Strategy<Value = Labeler> {
    let policy = prop_oneof![Just(TiePolicy::Drop), Just(TiePolicy::Half), Just(TiePolicy::FallbackAll)];
    let epsilon = prop_oneof![Just(0.0), Just(DEFAULT_EPSILON), 0.0f64..0.5];
    (policy, epsilon).prop_map(|(policy, epsilon)| Labeler::new(policy, epsilon).unwrap())
}

proptest! {
    #[test]
    fn label_prop_swapping_a_and_b_flips_the_label(case in any_case(), labeler in any_labeler()) {
        let selector = case.selector();
        let label = |scores| labeler.label_pair(&selector, &case.pair_id, scores, Some(&case.predicted)).unwrap();
        let (selection, forward) = label(case.scores());
        let (swapped_selection, backward) = label(case.scores().swapped());
        prop_assert_eq!(selection.indices(), swapped_selection.indices());
        prop_assert_eq!(backward.label, forward.label.swapped());
        prop_assert_eq!((backward.sum_a, backward.sum_b), (forward.sum_b, forward.sum_a));
        prop_assert_eq!(backward.margin, forward.margin);
        prop_assert_eq!(backward.normalized_margin, forward.normalized_margin);
        prop_assert_eq!(backward.rules, forward.rules);
        prop_assert_eq!(backward.fallback.is_some(), forward.fallback.is_some());
    }

    #[test]
    fn label_prop_margins_and_labels_are_consistent(case in any_case(), labeler in any_labeler()) {
        let selector = case.selector();
        let (selection, labeled) =
            labeler.label_pair(&selector, &case.pair_id, case.scores(), Some(&case.predicted)).unwrap();
        prop_assert!(labeled.margin >= 0.0 && labeled.normalized_margin >= 0.0);
        prop_assert_eq!(labeled.margin, (labeled.sum_a - labeled.sum_b).abs());
        if labeled.rules > 0 {
            prop_assert!((labeled.normalized_margin * labeled.rules as f64 - labeled.margin).abs() < 1e-9);
        }
        match labeled.label {
            Label::Chosen { winner } => {
                prop_assert!(labeled.margin > labeler.epsilon());
                prop_assert_eq!(winner == Pref::A, labeled.sum_a > labeled.sum_b);
            }
            Label::Tie => prop_assert_eq!(labeler.tie_policy(), TiePolicy::Half),
            Label::Abstain { reason } => {
                prop_assert!(labeler.tie_policy() != TiePolicy::Half);
                prop_assert_eq!(reason == AbstainReason::NoSelectableRule, labeled.rules == 0);
                prop_assert!(labeled.margin <= labeler.epsilon());
            }
        }
        // The fallback happens exactly when the policy asks for it and the selection is undecided.
        let undecided = selection.is_empty()
            || (Labeler::new(TiePolicy::Drop, labeler.epsilon()).unwrap().label(&selection, Selection::default).label.winner().is_none());
        prop_assert_eq!(labeled.fallback.is_some(), labeler.tie_policy() == TiePolicy::FallbackAll && undecided);
        if labeled.fallback.is_none() {
            prop_assert_eq!(labeled.rules, selection.len());
        }
    }
}
