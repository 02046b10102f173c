//! A simulation of the paper's argument for data-adaptive selection.
//!
//! Synthetic world: 30 rules. In each pair, 3 rules (different ones per pair) are
//! relevant: they apply squarely (relevance 0.7–1.0) and the two responses truly
//! differ under them by 0.4–1.0, in either direction, plus a little measurement noise.
//! The hidden true preference is the sign of the summed true differences of those
//! rules. The other 27 rules are irrelevant to the pair (relevance 0–0.3) and score
//! each response with independent noise in [-0.5, 0.5]; 5% of their verdicts are
//! missing, as when a rule fails or abstains.
//!
//! Random-k mostly samples noise (on average 0.5 of its 5 rules are relevant), so it
//! is right little more often than a coin. Max-discrepancy top-k ranks the relevant
//! rules first (high relevance, real differences) and so recovers the truth most of
//! the time. All rules drown the 3 relevant ones in 27 noisy votes.
//!
//! The run also prints the other strategies, which shows a weakness of max-discrepancy
//! when k exceeds the number of rules that truly matter: its 4th and 5th picks are the
//! irrelevant rules with the *largest* noise, so relevance-only (whose extra picks have
//! ordinary noise) does better here, and max-discrepancy with k = 3 better still. In
//! this world relevance is a perfect signal of which rules matter; real judges' is not.

use super::*;
use crate::select::rng::SplitMix64;
use crate::select::{RuleScore, Strategy, rule_entropies};

const RULES: usize = 30;
const RELEVANT: usize = 3;
const PAIRS: usize = 2000;
const K: usize = 5;
const SEED: u64 = 20_250_713;

struct SimPair {
    id: String,
    a: Vec<Option<RuleScore>>,
    b: Vec<Option<RuleScore>>,
    truth: Pref,
}

fn world(seed: u64) -> Vec<SimPair> {
    let mut rng = SplitMix64::new(seed);
    (0..PAIRS)
        .map(|p| {
            let mut relevant = Vec::with_capacity(RELEVANT);
            while relevant.len() < RELEVANT {
                let rule = rng.below(RULES);
                if !relevant.contains(&rule) {
                    relevant.push(rule);
                }
            }
            // True per-rule differences s_A − s_B; resampled until their sum is clearly
            // non-zero, so the truth is well defined.
            let differences = loop {
                let d: Vec<f64> =
                    (0..RELEVANT).map(|_| rng.range(0.4, 1.0) * if rng.chance(0.5) { 1.0 } else { -1.0 }).collect();
                if d.iter().sum::<f64>().abs() >= 0.2 {
                    break d;
                }
            };
            let truth = if differences.iter().sum::<f64>() > 0.0 { Pref::A } else { Pref::B };
            let (mut a, mut b) = (Vec::with_capacity(RULES), Vec::with_capacity(RULES));
            for rule in 0..RULES {
                if let Some(i) = relevant.iter().position(|&r| r == rule) {
                    let base = rng.range(-0.4, 0.4);
                    let mut measured = |true_score: f64| {
                        Some(RuleScore {
                            score: (true_score + rng.range(-0.05, 0.05)).clamp(-1.0, 1.0),
                            relevance: rng.range(0.7, 1.0),
                        })
                    };
                    a.push(measured(base + differences[i] / 2.0));
                    b.push(measured(base - differences[i] / 2.0));
                } else {
                    let mut noise = || {
                        let verdict = RuleScore { score: rng.range(-0.5, 0.5), relevance: rng.range(0.0, 0.3) };
                        (!rng.chance(0.05)).then_some(verdict)
                    };
                    a.push(noise());
                    b.push(noise());
                }
            }
            SimPair { id: format!("sim-{p}"), a, b, truth }
        })
        .collect()
}

/// The share of pairs whose label names the true winner (ties and abstentions count
/// as misses).
fn agreement(pairs: &[SimPair], strategy: Strategy) -> f64 {
    let ids: Vec<String> = (0..RULES).map(|r| format!("rule-{r:02}")).collect();
    let entropies = strategy.needs_entropies().then(|| {
        let rows: Vec<&[Option<RuleScore>]> = pairs.iter().flat_map(|p| [&p.a[..], &p.b[..]]).collect();
        rule_entropies(&rows, RULES)
    });
    let selector = Selector::new(strategy, ids, entropies.as_deref()).unwrap();
    let labeler = Labeler::new(TiePolicy::Drop, DEFAULT_EPSILON).unwrap();
    let right = pairs
        .iter()
        .filter(|p| {
            let (_, labeled) = labeler.label_pair(&selector, &p.id, PairScores::new(&p.a, &p.b), None).unwrap();
            labeled.label.winner() == Some(p.truth)
        })
        .count();
    right as f64 / pairs.len() as f64
}

#[test]
fn label_simulation_max_discrepancy_beats_random_k() {
    let pairs = world(SEED);
    let max_discrepancy = agreement(&pairs, Strategy::max_discrepancy(K, 0.5).unwrap());
    let random = agreement(&pairs, Strategy::random_k(K, 1).unwrap());
    let all = agreement(&pairs, Strategy::All);
    let relevance_only = agreement(&pairs, Strategy::relevance_only(K).unwrap());
    let entropy_weighted = agreement(&pairs, Strategy::entropy_weighted(K).unwrap());
    let max_discrepancy_3 = agreement(&pairs, Strategy::max_discrepancy(RELEVANT, 0.5).unwrap());
    eprintln!(
        "simulation ({PAIRS} pairs, {RULES} rules, {RELEVANT} relevant per pair, k = {K}): agreement with the hidden truth: \
         max-discrepancy {max_discrepancy:.3}, random-k {random:.3}, all {all:.3}, relevance-only {relevance_only:.3}, \
         entropy-weighted {entropy_weighted:.3}; max-discrepancy with k = {RELEVANT}: {max_discrepancy_3:.3}"
    );
    // For this seed the gaps are 0.23 and 0.10 (seeds 1-4: 0.23-0.26 and 0.11-0.14).
    assert!(max_discrepancy >= random + 0.15, "max-discrepancy {max_discrepancy:.3} vs random-k {random:.3}");
    assert!(max_discrepancy >= all + 0.05, "max-discrepancy {max_discrepancy:.3} vs all {all:.3}");
    assert!(max_discrepancy >= 0.75, "max-discrepancy {max_discrepancy:.3}");
}
