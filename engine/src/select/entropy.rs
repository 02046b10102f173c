//! Dataset-level rule statistics for [`Strategy::EntropyWeighted`](super::Strategy::EntropyWeighted),
//! after Li et al., "Multi-head Reward Aggregation Guided by Entropy" (ENCORE, 2025):
//! rules whose ratings are spread out (high entropy) agree less with human preferences,
//! so they get less weight, `w ∝ exp(−H / τ)`.
//!
//! The exact recipe:
//!
//! 1. **Binning.** Scores lie in `[-1, 1]`; they fall into [`ENTROPY_BINS`] = 10 bins of
//!    width 0.2: bin `i` holds `[-1 + 0.2·i, -1 + 0.2·(i + 1))`, and the last bin also
//!    holds `1`. That is `i = min(⌊(s + 1) / 2 · 10⌋, 9)` (boundaries up to rounding).
//!    Only verdicts count; missing scores (failures, quarantine, abstentions) are skipped.
//! 2. **Entropy.** With `p_i` the share of a rule's verdicts in bin `i`,
//!    `H = −Σ_i p_i · ln p_i / ln 10`: Shannon entropy normalised to `[0, 1]` (0 when
//!    every score lands in one bin, 1 when they are spread evenly over all ten). A rule
//!    with no verdict at all gets `H = 1`: nothing is known about it, so it is trusted least.
//! 3. **Weights.** `w_r = R · exp(−H_r / τ) / Σ_j exp(−H_j / τ)` with
//!    τ = [`ENTROPY_TEMPERATURE`] = 0.5 and `R` the number of rules: a softmax of the
//!    negative entropies, rescaled so the weights average 1 (weighted sums then stay
//!    on the scale of unweighted ones). The most and least decisive rules differ in
//!    weight by at most a factor `e^(1/τ) = e² ≈ 7.4`.
//!
//! Low entropy means decisive, not necessarily informative: a rule that always gives
//! the same score has `H = 0` and the top weight, but never tells two responses apart
//! (its discrepancy is 0), so it only wins a place in a selection through relevance.

use super::RuleScore;

/// Number of equal-width score bins over `[-1, 1]` used for the entropy.
pub const ENTROPY_BINS: usize = 10;
/// The softmax temperature τ over normalised entropies.
pub const ENTROPY_TEMPERATURE: f64 = 0.5;

/// The normalised entropy (in `[0, 1]`) of each rule's score distribution over `rows`,
/// one row per scored sample (ideally each unique sample once), one entry per rule.
///
/// Returns `rules` values. A row's entries past `rules` are ignored, and a short row
/// counts as missing verdicts for the rules it lacks; non-finite scores are skipped.
pub fn rule_entropies<R: AsRef<[Option<RuleScore>]>>(rows: &[R], rules: usize) -> Vec<f64> {
    let mut counts = vec![[0u64; ENTROPY_BINS]; rules];
    for row in rows {
        for (rule, verdict) in row.as_ref().iter().take(rules).enumerate() {
            if let Some(verdict) = verdict
                && verdict.score.is_finite()
            {
                counts[rule][bin(verdict.score)] += 1;
            }
        }
    }
    counts.iter().map(normalised_entropy).collect()
}

/// The weight of each rule from its entropy: `R · softmax(−H / τ)`, averaging 1.
pub fn entropy_weights(entropies: &[f64]) -> Vec<f64> {
    // Shifting by the smallest entropy keeps exp() in range; the softmax is unchanged.
    let min = entropies.iter().copied().fold(f64::INFINITY, f64::min);
    let raw: Vec<f64> = entropies.iter().map(|h| (-(h - min) / ENTROPY_TEMPERATURE).exp()).collect();
    let total: f64 = raw.iter().sum();
    let scale = entropies.len() as f64 / total;
    raw.into_iter().map(|w| w * scale).collect()
}

fn bin(score: f64) -> usize {
    let position = (score.clamp(-1.0, 1.0) + 1.0) / 2.0 * ENTROPY_BINS as f64;
    (position.floor() as usize).min(ENTROPY_BINS - 1)
}

fn normalised_entropy(counts: &[u64; ENTROPY_BINS]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 1.0;
    }
    let nats: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    // `max(0.0)` turns the -0.0 of a single full bin into 0.0.
    (nats / (ENTROPY_BINS as f64).ln()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(score: f64) -> Option<RuleScore> {
        Some(RuleScore { score, relevance: 1.0 })
    }

    #[test]
    fn select_entropy_bins_cover_the_score_range() {
        assert_eq!(bin(-1.0), 0);
        assert_eq!(bin(-0.81), 0);
        assert_eq!(bin(-0.7), 1);
        assert_eq!(bin(-0.05), 4);
        assert_eq!(bin(0.0), 5);
        assert_eq!(bin(0.95), 9);
        assert_eq!(bin(1.0), 9);
        // Out-of-range scores (never produced by validated verdicts) clamp to the ends.
        assert_eq!(bin(-3.0), 0);
        assert_eq!(bin(3.0), 9);
    }

    #[test]
    fn select_entropy_worked_example() {
        // Four samples, four rules (columns):
        //   rule 0: always 0.5                      -> one bin            -> H = 0
        //   rule 1: -0.9, -0.9, 0.9, 0.9            -> two bins, p = ½, ½ -> H = ln 2 / ln 10
        //   rule 2: never scored                    -> H = 1
        //   rule 3: -0.9, -0.5, 0.1, missing        -> three bins, ⅓ each -> H = ln 3 / ln 10
        let rows = vec![
            vec![v(0.5), v(-0.9), None, v(-0.9)],
            vec![v(0.5), v(-0.9), None, v(-0.5)],
            vec![v(0.5), v(0.9), None, v(0.1)],
            vec![v(0.5), v(0.9), None, None],
        ];
        let h = rule_entropies(&rows, 4);
        let expected = [0.0, std::f64::consts::LOG10_2, 1.0, 3f64.log10()];
        for (got, want) in h.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{h:?}");
        }
        // Ten samples, one per bin: the maximum, 1.
        let spread: Vec<Vec<Option<RuleScore>>> = (0..10).map(|i| vec![v(-0.9 + 0.2 * f64::from(i))]).collect();
        assert!((rule_entropies(&spread, 1)[0] - 1.0).abs() < 1e-12);
        // Borrowed rows work too, and extra columns are ignored.
        let borrowed: Vec<&[Option<RuleScore>]> = rows.iter().map(Vec::as_slice).collect();
        assert_eq!(rule_entropies(&borrowed, 2), h[..2]);
    }

    #[test]
    fn select_entropy_weights_worked_example() {
        // H = [0, ½, 1], τ = ½: exp(-2H) = [1, e^-1, e^-2] = [1, 0.367879, 0.135335],
        // total 1.503215; each times R / total = 3 / 1.503215 = 1.995723:
        let w = entropy_weights(&[0.0, 0.5, 1.0]);
        let expected = [1.995_722_867, 0.734_185_413, 0.270_091_720];
        for (got, want) in w.iter().zip(expected) {
            assert!((got - want).abs() < 1e-8, "{w:?}");
        }
        assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-12);
        // Equal entropies: equal weights of 1. No rules: no weights.
        assert_eq!(entropy_weights(&[0.3, 0.3]), [1.0, 1.0]);
        assert!(entropy_weights(&[]).is_empty());
    }
}
