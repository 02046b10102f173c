//! Labeling: turns the rules [`crate::select`] chose for a pair into a preference.
//!
//! The selected rules vote with their scores: `Σ_A = Σ_r w_r · s_A,r` against
//! `Σ_B = Σ_r w_r · s_B,r`, where `w_r` is each [`SelectedRule::weight`] (the entropy
//! weight under `entropy-weighted`, 1 otherwise). With `Δ = Σ_A − Σ_B`:
//!
//! * `|Δ| > ε` (default [`DEFAULT_EPSILON`] = 1e-6): the response with the larger sum
//!   is chosen;
//! * `|Δ| ≤ ε`, or no rule was selected (no rule has verdicts on both responses): the
//!   [`TiePolicy`] decides:
//!   * [`TiePolicy::Drop`] → [`Label::Abstain`] with the reason;
//!   * [`TiePolicy::Half`] → [`Label::Tie`], a 0.5 Bradley–Terry target;
//!   * [`TiePolicy::FallbackAll`] → the pair is labeled again by every rule with
//!     verdicts on both responses; if that is still tied (or empty), it abstains.
//!
//! The margin is `|Δ|`, also reported divided by the number of rules that voted. Both
//! are symmetric: swapping A and B flips the label and leaves the margins unchanged.
//!
//! **No side wins by default.** The paper's reference code breaks ties (and pairs no
//! rule could judge) in favour of the second response, `B`. That silently turns "the
//! rules cannot tell" into a confident label, and biases the training data toward
//! whichever response happens to be listed second. Here a tie is never a win: it is
//! dropped, kept as a tie, or re-judged by more rules, as the job chooses.
//!
//! ```
//! use engine::data::Pref;
//! use engine::label::{Label, Labeler, TiePolicy};
//! use engine::select::{PairScores, RuleScore, Selector, Strategy};
//!
//! let ids = vec!["harm".to_owned(), "tone".to_owned()];
//! let selector = Selector::new(Strategy::default(), ids, None).unwrap();
//! let v = |score, relevance| Some(RuleScore { score, relevance });
//! let (a, b) = ([v(0.8, 1.0), v(-0.2, 0.5)], [v(-0.6, 1.0), v(0.3, 0.5)]);
//! let labeler = Labeler::new(TiePolicy::Drop, 1e-6).unwrap();
//! let (selection, labeled) = labeler.label_pair(&selector, "p1", PairScores::new(&a, &b), None).unwrap();
//! assert_eq!(selection.len(), 2);
//! // Σ_A = 0.8 − 0.2 = 0.6, Σ_B = −0.6 + 0.3 = −0.3: A wins by 0.9.
//! assert_eq!(labeled.label, Label::Chosen { winner: Pref::A });
//! assert!((labeled.margin - 0.9).abs() < 1e-12);
//! assert!((labeled.normalized_margin - 0.45).abs() < 1e-12);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::Pref;
use crate::select::{PairScores, SelectError, SelectedRule, Selection, Selector};

/// Largest `|Σ_A − Σ_B|` that still counts as a tie, unless configured otherwise.
pub const DEFAULT_EPSILON: f64 = 1e-6;

/// What to do with a pair whose selected rules tie, or that no rule could judge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TiePolicy {
    /// Abstain: the pair gives no training signal.
    #[default]
    Drop,
    /// Keep the pair as a tie (Bradley–Terry target 0.5).
    Half,
    /// Re-label with every rule that has verdicts on both responses; abstain if that
    /// still ties.
    FallbackAll,
}

impl TiePolicy {
    /// Every policy, in declaration order.
    pub const ALL: [TiePolicy; 3] = [TiePolicy::Drop, TiePolicy::Half, TiePolicy::FallbackAll];

    /// The kebab-case name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TiePolicy::Drop => "drop",
            TiePolicy::Half => "half",
            TiePolicy::FallbackAll => "fallback-all",
        }
    }
}

impl fmt::Display for TiePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TiePolicy {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<TiePolicy, LabelError> {
        TiePolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == s.trim())
            .ok_or_else(|| LabelError::UnknownTiePolicy { input: s.to_owned() })
    }
}

/// Why a pair got no label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbstainReason {
    /// No rule voted: none has verdicts on both responses (for the adapter strategy:
    /// none of the predicted rules has).
    NoSelectableRule,
    /// The selected rules' sums are within ε of each other (policy `drop`).
    Tied,
    /// Still within ε after re-labeling with every rule (policy `fallback-all`).
    TiedAfterFallback,
}

impl fmt::Display for AbstainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbstainReason::NoSelectableRule => "no rule has a verdict on both responses",
            AbstainReason::Tied => "the selected rules tie",
            AbstainReason::TiedAfterFallback => "the rules tie, even all of them together",
        })
    }
}

/// The verdict on a pair. Serialized with a `label` tag, e.g.
/// `{"label":"chosen","winner":"a"}`, `{"label":"tie"}`,
/// `{"label":"abstain","reason":"tied"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "label", rename_all = "kebab-case")]
pub enum Label {
    /// `winner` is the preferred response; the other is rejected.
    Chosen { winner: Pref },
    /// Neither is preferred: train toward 0.5.
    Tie,
    /// No label; leave the pair out of training.
    Abstain { reason: AbstainReason },
}

impl Label {
    /// The preferred response, if there is one.
    pub fn winner(&self) -> Option<Pref> {
        match *self {
            Label::Chosen { winner } => Some(winner),
            Label::Tie | Label::Abstain { .. } => None,
        }
    }

    /// The label of the same pair with A and B exchanged.
    pub fn swapped(self) -> Label {
        match self {
            Label::Chosen { winner } => Label::Chosen { winner: winner.other() },
            other => other,
        }
    }

    /// The Bradley–Terry target P(A ≻ B): 1, 0 or 0.5; `None` when abstaining.
    pub fn target_a(&self) -> Option<f64> {
        match *self {
            Label::Chosen { winner: Pref::A } => Some(1.0),
            Label::Chosen { winner: Pref::B } => Some(0.0),
            Label::Tie => Some(0.5),
            Label::Abstain { .. } => None,
        }
    }
}

/// A labeled pair, with the numbers behind the label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labeled {
    pub label: Label,
    /// `Σ w_r · s_A,r` over the rules that voted.
    pub sum_a: f64,
    /// `Σ w_r · s_B,r` over the rules that voted.
    pub sum_b: f64,
    /// `|sum_a − sum_b|`; never negative.
    pub margin: f64,
    /// `margin / rules` (0 when no rule voted).
    pub normalized_margin: f64,
    /// How many rules voted: the selection's, or the fallback's when there was one.
    pub rules: usize,
    /// Under [`TiePolicy::FallbackAll`], when the selection tied: every rule with
    /// verdicts on both responses, which then voted instead of the selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Selection>,
}

/// Errors in the labeler's settings.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("tie epsilon must be a finite number >= 0, found {epsilon}")]
    InvalidEpsilon { epsilon: f64 },
    #[error("unknown tie policy {input:?}; expected one of drop, half, fallback-all")]
    UnknownTiePolicy { input: String },
}

/// Labels pairs from their selected rules; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Labeler {
    tie_policy: TiePolicy,
    epsilon: f64,
}

impl Default for Labeler {
    /// Policy `drop`, ε = [`DEFAULT_EPSILON`].
    fn default() -> Self {
        Labeler { tie_policy: TiePolicy::default(), epsilon: DEFAULT_EPSILON }
    }
}

impl Labeler {
    /// A labeler that treats `|Σ_A − Σ_B| ≤ epsilon` as a tie.
    pub fn new(tie_policy: TiePolicy, epsilon: f64) -> Result<Labeler, LabelError> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(LabelError::InvalidEpsilon { epsilon });
        }
        Ok(Labeler { tie_policy, epsilon })
    }

    pub fn tie_policy(&self) -> TiePolicy {
        self.tie_policy
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Labels a pair from `selection`. `all_rules` gives the selection of every rule
    /// with verdicts on both responses ([`Selector::select_all`]); it is called only
    /// when the policy is `fallback-all` and the selection ties or is empty.
    pub fn label(&self, selection: &Selection, all_rules: impl FnOnce() -> Selection) -> Labeled {
        let vote = Vote::of(&selection.rules);
        if let Some(winner) = self.winner(&vote) {
            return vote.labeled(Label::Chosen { winner }, None);
        }
        let reason = if vote.rules == 0 { AbstainReason::NoSelectableRule } else { AbstainReason::Tied };
        match self.tie_policy {
            TiePolicy::Drop => vote.labeled(Label::Abstain { reason }, None),
            TiePolicy::Half => vote.labeled(Label::Tie, None),
            TiePolicy::FallbackAll => {
                let all = all_rules();
                let vote = Vote::of(&all.rules);
                let label = match self.winner(&vote) {
                    Some(winner) => Label::Chosen { winner },
                    None if vote.rules == 0 => Label::Abstain { reason: AbstainReason::NoSelectableRule },
                    None => Label::Abstain { reason: AbstainReason::TiedAfterFallback },
                };
                vote.labeled(label, Some(all))
            }
        }
    }

    /// Selects rules for a pair with `selector` and labels it: the whole per-pair step.
    /// Returns the strategy's selection (what the audit record lists) and the label.
    pub fn label_pair(
        &self,
        selector: &Selector,
        pair_id: &str,
        scores: PairScores<'_>,
        predicted: Option<&[usize]>,
    ) -> Result<(Selection, Labeled), SelectError> {
        let selection = selector.select(pair_id, scores, predicted)?;
        // `select` has validated the rows, so selecting all rules cannot fail.
        let labeled =
            self.label(&selection, || selector.select_all(pair_id, scores).expect("rows already validated by select"));
        Ok((selection, labeled))
    }

    /// The side whose sum is more than ε ahead, if any. An empty vote never wins.
    fn winner(&self, vote: &Vote) -> Option<Pref> {
        let delta = vote.sum_a - vote.sum_b;
        if vote.rules == 0 || delta.abs() <= self.epsilon {
            None
        } else if delta > 0.0 {
            Some(Pref::A)
        } else {
            Some(Pref::B)
        }
    }
}

/// The weighted sums of one set of voting rules.
struct Vote {
    sum_a: f64,
    sum_b: f64,
    rules: usize,
}

impl Vote {
    fn of(rules: &[SelectedRule]) -> Vote {
        // Summed in selection order on both sides, so swapping A and B swaps the sums
        // exactly (bit for bit), and the label flips exactly. Folding from +0.0 (not
        // `sum()`, which starts from -0.0) makes an empty vote 0 rather than -0.
        let sum = |score: fn(&SelectedRule) -> f64| rules.iter().fold(0.0, |total, r| total + r.weight * score(r));
        Vote { sum_a: sum(|r| r.score_a), sum_b: sum(|r| r.score_b), rules: rules.len() }
    }

    fn labeled(self, label: Label, fallback: Option<Selection>) -> Labeled {
        let margin = (self.sum_a - self.sum_b).abs();
        Labeled {
            label,
            sum_a: self.sum_a,
            sum_b: self.sum_b,
            margin,
            normalized_margin: if self.rules == 0 { 0.0 } else { margin / self.rules as f64 },
            rules: self.rules,
            fallback,
        }
    }
}

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
