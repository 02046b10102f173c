//! Rule selection: which of the many rules get to decide a preference pair.
//!
//! Every response is scored under every rule (see [`crate::score`]); a rule's verdict
//! on a response is a [`RuleScore`]: a score in `[-1, 1]` (higher is safer/better) and
//! a relevance in `[0, 1]` (how squarely the rule applies). Following "Data-adaptive
//! Safety Rules for Training Reward Models" (RAMO, ICML 2025), a pair is not labeled by
//! all rules but by the few where its two responses differ most; this module picks
//! those rules, [`crate::label`] sums their scores into a label.
//!
//! Everything here is a pure function of score matrices: no I/O, no clock, no global
//! randomness.
//!
//! # Which rules can be selected
//!
//! Only rules with a verdict on **both** responses. A `None` (the rule failed, was
//! quarantined or abstained on one response) means there is nothing to compare, so the
//! rule is never selected, whatever the strategy.
//!
//! For each such rule `r` of a pair:
//!
//! * `discrepancy_r = |s_A − s_B|`
//! * `relevance_r = max(rel_A, rel_B)`: a rule that applies squarely to *either*
//!   response matters to the comparison. If one response is an unsafe answer and the
//!   other a refusal, a rule about the unsafe content is highly relevant to the first
//!   and irrelevant to the second, yet it is exactly the rule that should decide the
//!   pair; a mean or minimum would halve or erase its relevance. The maximum is also
//!   symmetric, so swapping A and B cannot change a selection.
//!
//! # Strategies and their selection scores
//!
//! | [`Strategy`] | selection score of rule `r` | rules kept |
//! |---|---|---|
//! | `MaxDiscrepancy { k, lambda }` | `relevance_r + lambda · discrepancy_r` | top `k` |
//! | `RelevanceOnly { k }` | `relevance_r` | top `k` |
//! | `EntropyWeighted { k }` | `w_r · (relevance_r + 0.5 · discrepancy_r)`, `w_r` from [`entropy_weights`] | top `k` |
//! | `RandomK { k, seed }` | a uniform draw in `[0, 1)` (below) | top `k` |
//! | `All` | `1` | all |
//! | `Adapter { k }` | `1 / (1 + p)`, `p` the rule's position in the predicted list | first `k` usable predictions |
//!
//! When fewer rules are selectable than `k`, all of them are kept: a selection has
//! `min(k, selectable)` rules (for the adapter, at most that many: only predicted rules
//! count).
//!
//! **Ties** are broken deterministically: higher selection score first, then the lower
//! rule id in string (byte) order. Selections are listed in that order. So the result
//! never depends on the order of the rules in the score matrix, only on their ids.
//!
//! **Random-k** derives a per-pair generator from the seed and the pair id
//! (`SplitMix64(seed ⊕ FNV-1a(pair id))`) and draws one 64-bit value from it; rule
//! `r`'s draw is the first output of `SplitMix64(that value ⊕ FNV-1a(rule id))`, as a
//! number in `[0, 1)`. The same seed, pair id and rule id always give the same draw, so
//! a run is reproducible, and adding or removing a rule does not reshuffle the others.
//!
//! **Weights.** Every [`SelectedRule`] carries the weight its scores get when the
//! labeler sums them: the entropy weight `w_r` for `EntropyWeighted`, 1 otherwise.
//!
//! # Example
//!
//! ```
//! use engine::select::{PairScores, RuleScore, Selector, Strategy};
//!
//! let ids = vec!["harm".to_owned(), "privacy".to_owned(), "tone".to_owned()];
//! let selector = Selector::new(Strategy::max_discrepancy(2, 0.5).unwrap(), ids, None).unwrap();
//! let v = |score, relevance| Some(RuleScore { score, relevance });
//! let a = [v(0.9, 0.8), v(0.0, 0.1), v(0.2, 0.3)];
//! let b = [v(-0.7, 0.9), None, v(0.6, 0.2)];
//! let selection = selector.select("pair-1", PairScores::new(&a, &b), None).unwrap();
//! // harm: 0.9 + 0.5·1.6 = 1.7; tone: 0.3 + 0.5·0.4 = 0.5; privacy has no verdict on B.
//! assert_eq!(selection.indices(), [0, 2]);
//! assert_eq!(selection.selectable, 2);
//! ```

mod entropy;
mod error;
pub(crate) mod rng;
mod strategy;

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::data::Pref;

pub use entropy::{ENTROPY_BINS, ENTROPY_TEMPERATURE, entropy_weights, rule_entropies};
pub use error::SelectError;
pub use strategy::{DEFAULT_K, DEFAULT_LAMBDA, DEFAULT_SEED, Strategy};

/// One rule's verdict on one response. Build it from a score record's
/// `Outcome::Ok { score, relevance, .. }` (`f32` widens losslessly); failures,
/// quarantine and abstentions become `None` in the score rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleScore {
    /// In `[-1, 1]`; higher means the response does better under the rule.
    pub score: f64,
    /// In `[0, 1]`; how squarely the rule applies to the response.
    pub relevance: f64,
}

/// The verdicts of every rule on both responses of one pair: `a[r]` and `b[r]` belong
/// to rule `r` (the rule ids given to [`Selector::new`], in the same order).
///
/// The rows are borrowed because responses are scored once per unique sample and
/// often shared by several pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairScores<'a> {
    pub a: &'a [Option<RuleScore>],
    pub b: &'a [Option<RuleScore>],
}

impl<'a> PairScores<'a> {
    pub fn new(a: &'a [Option<RuleScore>], b: &'a [Option<RuleScore>]) -> Self {
        PairScores { a, b }
    }

    /// The same pair with A and B exchanged.
    pub fn swapped(self) -> Self {
        PairScores { a: self.b, b: self.a }
    }

    /// The row of response `side`.
    pub fn side(&self, side: Pref) -> &'a [Option<RuleScore>] {
        match side {
            Pref::A => self.a,
            Pref::B => self.b,
        }
    }

    /// Rule `rule`'s verdicts on A and B, when it has both.
    pub fn both(&self, rule: usize) -> Option<(RuleScore, RuleScore)> {
        Some(((*self.a.get(rule)?)?, (*self.b.get(rule)?)?))
    }
}

/// A rule chosen to decide a pair, with the numbers it was chosen by.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectedRule {
    /// Index of the rule (column of the score rows).
    pub rule: usize,
    pub score_a: f64,
    pub score_b: f64,
    /// `max(rel_A, rel_B)`.
    pub relevance: f64,
    /// `|score_a − score_b|`.
    pub discrepancy: f64,
    /// What the strategy ranked by (see the module docs).
    pub selection_score: f64,
    /// The factor the labeler multiplies this rule's scores by: the entropy weight
    /// under `entropy-weighted`, 1 otherwise.
    pub weight: f64,
}

/// The rules chosen for one pair, best first (highest selection score, then lowest id).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub rules: Vec<SelectedRule>,
    /// How many rules had verdicts on both responses: the pool the strategy drew from.
    pub selectable: usize,
}

impl Selection {
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The selected rules' indices, best first.
    pub fn indices(&self) -> Vec<usize> {
        self.rules.iter().map(|r| r.rule).collect()
    }
}

/// Selects rules for pairs under one strategy. Holds what is fixed for a whole dataset
/// (the strategy, the rule ids, the entropy weights), so selecting is a pure function
/// of one pair's scores.
#[derive(Clone, Debug)]
pub struct Selector {
    strategy: Strategy,
    rule_ids: Vec<String>,
    /// `Some` only for `entropy-weighted`; one weight per rule.
    weights: Option<Vec<f64>>,
}

impl Selector {
    /// A selector for the rules `rule_ids` (the columns of the score rows; ids must be
    /// unique). `entropies` (from [`rule_entropies`], one per rule) are required by
    /// `entropy-weighted` (see [`Strategy::needs_entropies`]) and ignored otherwise.
    pub fn new(strategy: Strategy, rule_ids: Vec<String>, entropies: Option<&[f64]>) -> Result<Selector, SelectError> {
        strategy.validate()?;
        let mut seen = HashSet::new();
        if let Some(id) = rule_ids.iter().find(|id| !seen.insert(id.as_str())) {
            return Err(SelectError::DuplicateRule { id: id.clone() });
        }
        let weights = if strategy.needs_entropies() {
            let entropies = entropies.ok_or(SelectError::MissingEntropies)?;
            if entropies.len() != rule_ids.len() {
                return Err(SelectError::EntropyCount { found: entropies.len(), expected: rule_ids.len() });
            }
            if let Some((rule, &value)) = entropies.iter().enumerate().find(|(_, h)| !(h.is_finite() && **h >= 0.0)) {
                return Err(SelectError::InvalidEntropy { rule: rule_ids[rule].clone(), value });
            }
            Some(entropy_weights(entropies))
        } else {
            None
        };
        Ok(Selector { strategy, rule_ids, weights })
    }

    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// The rule ids, in column order.
    pub fn rule_ids(&self) -> &[String] {
        &self.rule_ids
    }

    /// The weight the labeler gives rule `rule`: its entropy weight under
    /// `entropy-weighted`, 1 otherwise.
    pub fn weight(&self, rule: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |w| w[rule])
    }

    /// Selects the rules that decide pair `pair_id`.
    ///
    /// `predicted` is the rule adapter's ranked list of rule indices for this pair,
    /// required by `adapter` and ignored otherwise; indices without verdicts on both
    /// sides and repeats are skipped.
    ///
    /// Fails when a row's length differs from the number of rules, a verdict is out of
    /// range (or NaN), or the adapter's predictions are missing or out of range.
    pub fn select(
        &self,
        pair_id: &str,
        scores: PairScores<'_>,
        predicted: Option<&[usize]>,
    ) -> Result<Selection, SelectError> {
        let mut candidates = self.candidates(pair_id, scores)?;
        let selectable = candidates.len();
        let k = match self.strategy {
            Strategy::MaxDiscrepancy { k, lambda } => {
                for c in &mut candidates {
                    c.selection_score = c.relevance + lambda * c.discrepancy;
                }
                k
            }
            Strategy::RelevanceOnly { k } => {
                for c in &mut candidates {
                    c.selection_score = c.relevance;
                }
                k
            }
            Strategy::EntropyWeighted { k } => {
                for c in &mut candidates {
                    c.selection_score = c.weight * (c.relevance + DEFAULT_LAMBDA * c.discrepancy);
                }
                k
            }
            Strategy::RandomK { k, seed } => {
                let pair_draw = rng::SplitMix64::new(seed ^ rng::fnv1a(pair_id.as_bytes())).next_u64();
                for c in &mut candidates {
                    let rule_seed = pair_draw ^ rng::fnv1a(self.rule_ids[c.rule].as_bytes());
                    c.selection_score = rng::SplitMix64::new(rule_seed).next_f64();
                }
                k
            }
            Strategy::All => {
                for c in &mut candidates {
                    c.selection_score = 1.0;
                }
                selectable
            }
            Strategy::Adapter { k } => {
                let predicted =
                    predicted.ok_or_else(|| SelectError::MissingPredictions { pair: pair_id.to_owned() })?;
                return self.adapter(pair_id, candidates, predicted, k);
            }
        };
        candidates.sort_by(|x, y| self.rank(x, y));
        candidates.truncate(k);
        Ok(Selection { rules: candidates, selectable })
    }

    /// Every rule with verdicts on both responses, as [`Strategy::All`] selects them
    /// (selection score 1, rule-id order) but with this selector's weights, whatever
    /// its strategy: what the labeler's `fallback-all` policy re-labels with.
    pub fn select_all(&self, pair_id: &str, scores: PairScores<'_>) -> Result<Selection, SelectError> {
        let mut candidates = self.candidates(pair_id, scores)?;
        for c in &mut candidates {
            c.selection_score = 1.0;
        }
        candidates.sort_by(|x, y| self.rank(x, y));
        Ok(Selection { selectable: candidates.len(), rules: candidates })
    }

    /// The selection order: higher selection score first, then lower rule id.
    fn rank(&self, x: &SelectedRule, y: &SelectedRule) -> Ordering {
        // Selection scores are finite (inputs are validated), so `partial_cmp` always
        // succeeds; it treats -0.0 and 0.0 as equal, leaving that tie to the ids.
        y.selection_score
            .partial_cmp(&x.selection_score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.rule_ids[x.rule].cmp(&self.rule_ids[y.rule]))
    }

    /// The adapter's selection: predicted rules in predicted order, usable ones only.
    fn adapter(
        &self,
        pair_id: &str,
        candidates: Vec<SelectedRule>,
        predicted: &[usize],
        k: usize,
    ) -> Result<Selection, SelectError> {
        let selectable = candidates.len();
        let mut by_rule: Vec<Option<SelectedRule>> = vec![None; self.rule_ids.len()];
        for c in candidates {
            by_rule[c.rule] = Some(c);
        }
        let mut rules = Vec::with_capacity(k.min(selectable));
        for (position, &index) in predicted.iter().enumerate() {
            let slot = by_rule.get_mut(index).ok_or_else(|| SelectError::PredictionOutOfRange {
                pair: pair_id.to_owned(),
                index,
                rules: self.rule_ids.len(),
            })?;
            // `take` also skips a rule predicted twice.
            if let Some(mut chosen) = slot.take()
                && rules.len() < k
            {
                chosen.selection_score = 1.0 / (1.0 + position as f64);
                rules.push(chosen);
            }
        }
        Ok(Selection { rules, selectable })
    }

    /// Validates the rows and returns every selectable rule with its pair statistics
    /// (selection score still 0), in column order.
    fn candidates(&self, pair_id: &str, scores: PairScores<'_>) -> Result<Vec<SelectedRule>, SelectError> {
        for side in [Pref::A, Pref::B] {
            let row = scores.side(side);
            if row.len() != self.rule_ids.len() {
                return Err(SelectError::RowLength {
                    pair: pair_id.to_owned(),
                    side,
                    found: row.len(),
                    expected: self.rule_ids.len(),
                });
            }
            for (rule, verdict) in row.iter().enumerate() {
                if let Some(verdict) = verdict {
                    self.check(pair_id, rule, side, verdict)?;
                }
            }
        }
        Ok((0..self.rule_ids.len())
            .filter_map(|rule| {
                let (a, b) = scores.both(rule)?;
                Some(SelectedRule {
                    rule,
                    score_a: a.score,
                    score_b: b.score,
                    relevance: a.relevance.max(b.relevance),
                    discrepancy: (a.score - b.score).abs(),
                    selection_score: 0.0,
                    weight: self.weight(rule),
                })
            })
            .collect())
    }

    fn check(&self, pair_id: &str, rule: usize, side: Pref, verdict: &RuleScore) -> Result<(), SelectError> {
        let out_of_range = |field, value, range| SelectError::OutOfRange {
            pair: pair_id.to_owned(),
            rule: self.rule_ids[rule].clone(),
            side,
            field,
            value,
            range,
        };
        if !(-1.0..=1.0).contains(&verdict.score) {
            return Err(out_of_range("score", verdict.score, "[-1, 1]"));
        }
        if !(0.0..=1.0).contains(&verdict.relevance) {
            return Err(out_of_range("relevance", verdict.relevance, "[0, 1]"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
