//! The label stage: scores + pairs → one audited label per pair.
//!
//! [`crate::select`] and [`crate::label`] are pure functions over score matrices; this
//! module feeds them from `scores.jsonl` and the pairs file, and writes
//! `labeled.jsonl`: one [`AuditRecord`] per pair saying which rules decided it, with
//! both responses' scores, relevance, discrepancy, the strategy, the margin, the packs'
//! hashes and the judge. [`explain`] turns a record into plain words, and [`agreement`]
//! measures how often rule labels agree with gold (human) labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::data::{Pair, Pref};
use crate::label::{Label, Labeled, Labeler, TiePolicy};
use crate::score::{Outcome, ScoreRecord};
use crate::select::{PairScores, RuleScore, SelectError, Selection, Selector, Strategy, rule_entropies};

/// Every rule's verdict on every scored sample, as a matrix.
#[derive(Debug, Clone)]
pub struct ScoreTable {
    /// Rule ids, sorted: the columns.
    pub rule_ids: Vec<String>,
    /// The pack of each rule.
    pub packs: Vec<String>,
    /// How the scores were calibrated ([`ScoreTable::calibrated`]); audit records say so.
    pub calibration: Calibration,
    rows: HashMap<String, Row>,
}

#[derive(Debug, Clone)]
struct Row {
    scores: Vec<Option<RuleScore>>,
    rationales: Vec<Option<String>>,
    judge_calls: u32,
    /// Judge calls per rule column.
    calls: Vec<u32>,
    /// Rules evaluated on this sample (all of them unless scoring was restricted, as
    /// under the Rule Adapter).
    evaluated: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelingError {
    #[error("rule {rule:?} has scores from two versions (rule hashes {first} and {second}); rescore with one job")]
    MixedVersions { rule: String, first: String, second: String },
    #[error(
        "pair {pair:?}: response {side} was never scored (sample {sample}); run `engine score` on this pairs file first"
    )]
    Unscored { pair: String, side: &'static str, sample: String },
    #[error("no scores to label with")]
    Empty,
    #[error(transparent)]
    Select(#[from] SelectError),
}

impl ScoreTable {
    pub fn from_records(records: &[ScoreRecord]) -> Result<ScoreTable, LabelingError> {
        let mut rules: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for r in records {
            match rules.get(r.rule.as_str()) {
                Some((hash, _)) if *hash != r.rule_hash => {
                    return Err(LabelingError::MixedVersions {
                        rule: r.rule.clone(),
                        first: hash.to_string(),
                        second: r.rule_hash.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    rules.insert(&r.rule, (&r.rule_hash, &r.pack));
                }
            }
        }
        if rules.is_empty() {
            return Err(LabelingError::Empty);
        }
        let rule_ids: Vec<String> = rules.keys().map(|r| r.to_string()).collect();
        let packs = rules.values().map(|(_, pack)| pack.to_string()).collect();
        let column: HashMap<&str, usize> = rule_ids.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect();
        let empty = Row {
            scores: vec![None; rule_ids.len()],
            rationales: vec![None; rule_ids.len()],
            judge_calls: 0,
            calls: vec![0; rule_ids.len()],
            evaluated: 0,
        };
        let mut rows: HashMap<String, Row> = HashMap::new();
        for r in records {
            let row = rows.entry(r.sample.clone()).or_insert_with(|| empty.clone());
            let c = column[r.rule.as_str()];
            row.judge_calls += r.judge_calls;
            row.calls[c] += r.judge_calls;
            row.evaluated += 1;
            if let Outcome::Ok { score, relevance, rationale } = &r.outcome {
                row.scores[c] = Some(RuleScore { score: f64::from(*score), relevance: f64::from(*relevance) });
                row.rationales[c] = rationale.clone();
            }
        }
        Ok(ScoreTable { rule_ids, packs, calibration: Calibration::None, rows })
    }

    fn row(&self, pair: &Pair, side: Pref) -> Result<&Row, LabelingError> {
        let sample = pair.sample(side).hash().to_hex();
        self.rows.get(&sample).ok_or(LabelingError::Unscored {
            pair: pair.id.clone(),
            side: if side == Pref::A { "a" } else { "b" },
            sample,
        })
    }

    /// Both responses' verdicts of `pair` (indexed like [`ScoreTable::rule_ids`]).
    pub fn pair_scores(&self, pair: &Pair) -> Result<PairRows<'_>, LabelingError> {
        Ok((&self.row(pair, Pref::A)?.scores, &self.row(pair, Pref::B)?.scores))
    }

    /// Judge calls spent on `pair`'s two responses, all rules.
    pub fn judge_calls(&self, pair: &Pair) -> Result<u32, LabelingError> {
        Ok(self.row(pair, Pref::A)?.judge_calls + self.row(pair, Pref::B)?.judge_calls)
    }

    /// Judge calls spent on `pair`'s two responses by the rules in `columns` only.
    pub fn judge_calls_of(&self, pair: &Pair, columns: &BTreeSet<usize>) -> Result<u32, LabelingError> {
        let (a, b) = (self.row(pair, Pref::A)?, self.row(pair, Pref::B)?);
        Ok(columns.iter().map(|&c| a.calls[c] + b.calls[c]).sum())
    }

    /// The column of a rule id.
    pub fn column(&self, rule: &str) -> Option<usize> {
        self.rule_ids.binary_search_by(|r| r.as_str().cmp(rule)).ok()
    }

    /// Entropy of each rule's score distribution over every scored sample.
    pub fn entropies(&self) -> Vec<f64> {
        let rows: Vec<&[Option<RuleScore>]> = self.rows.values().map(|r| r.scores.as_slice()).collect();
        rule_entropies(&rows, self.rule_ids.len())
    }
}

/// How scores are made comparable across rules before selection and labeling.
///
/// A judge rates some rules high and others low whatever the response (the embedded
/// judge answers "No" to most questions), so raw scores of different rules are on
/// different scales and a few rules can dominate a sum. `Rank` replaces each score by
/// its mid-rank within its rule's column, over every scored sample, mapped to `[-1, 1]`:
/// `2·(below + equal/2)/n − 1`. It keeps every rule's ordering of responses (so which
/// response a single rule prefers never changes) and gives every rule the same spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    #[default]
    None,
    Rank,
}

impl Calibration {
    fn is_none(&self) -> bool {
        *self == Calibration::None
    }
}

impl std::str::FromStr for Calibration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Calibration::None),
            "rank" => Ok(Calibration::Rank),
            other => Err(format!("unknown calibration {other:?} (expected none or rank)")),
        }
    }
}

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Calibration::None => "none",
            Calibration::Rank => "rank",
        })
    }
}

impl ScoreTable {
    /// This table with every score calibrated as `calibration` says (`None` keeps the
    /// scores as they are); relevance is kept.
    pub fn calibrated(&self, calibration: Calibration) -> ScoreTable {
        let mut out = self.clone();
        if calibration == Calibration::None {
            return out;
        }
        out.calibration = calibration;
        for c in 0..self.rule_ids.len() {
            let mut column: Vec<f64> =
                self.rows.values().filter_map(|r| r.scores[c].map(|v| v.score)).filter(|s| s.is_finite()).collect();
            column.sort_by(f64::total_cmp);
            let n = column.len() as f64;
            for row in out.rows.values_mut() {
                if let Some(v) = row.scores[c].as_mut()
                    && v.score.is_finite()
                {
                    let below = column.partition_point(|x| *x < v.score) as f64;
                    let upto = column.partition_point(|x| *x <= v.score) as f64;
                    v.score = 2.0 * (below + (upto - below) / 2.0) / n - 1.0;
                }
            }
        }
        out
    }
}

/// How well one rule on its own agrees with gold labels: the pairs labeled by that rule
/// alone (strategy `all` over its column, ties dropped), measured by [`agreement`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleAgreement {
    pub rule: String,
    pub pack: String,
    /// `decided` is the pairs where the rule takes a side; `accuracy` how often it is
    /// the gold side.
    pub agreement: Agreement,
    /// Mean relevance over both responses of the gold pairs the rule scored.
    pub mean_relevance: f64,
}

impl ScoreTable {
    /// The table of one column: rule `column` alone.
    fn column_only(&self, column: usize) -> ScoreTable {
        let rows = self
            .rows
            .iter()
            .map(|(sample, r)| {
                let row = Row {
                    scores: vec![r.scores[column]],
                    rationales: vec![r.rationales[column].clone()],
                    judge_calls: r.calls[column],
                    calls: vec![r.calls[column]],
                    evaluated: 1,
                };
                (sample.clone(), row)
            })
            .collect();
        ScoreTable {
            rule_ids: vec![self.rule_ids[column].clone()],
            packs: vec![self.packs[column].clone()],
            calibration: self.calibration,
            rows,
        }
    }
}

/// Every rule's own agreement with the gold labels of `pairs`, in column order.
pub fn rule_agreement(pairs: &[Pair], table: &ScoreTable) -> Result<Vec<RuleAgreement>, LabelingError> {
    let labeler = Labeler::default(); // ties dropped: a rule that scores both alike takes no side
    (0..table.rule_ids.len())
        .map(|c| {
            let one = table.column_only(c);
            let records = label_pairs(pairs, &one, &Strategy::All, &labeler, &BTreeMap::new(), None)?;
            let mut relevance = (0.0, 0usize);
            for pair in pairs.iter().filter(|p| p.gold.is_some()) {
                let (a, b) = one.pair_scores(pair)?;
                for v in [a[0], b[0]].into_iter().flatten() {
                    relevance = (relevance.0 + v.relevance, relevance.1 + 1);
                }
            }
            Ok(RuleAgreement {
                rule: table.rule_ids[c].clone(),
                pack: table.packs[c].clone(),
                agreement: agreement(&records, 0),
                mean_relevance: if relevance.1 > 0 { relevance.0 / relevance.1 as f64 } else { 0.0 },
            })
        })
        .collect()
}

/// Both responses' verdicts of one pair, indexed like [`ScoreTable::rule_ids`].
pub type PairRows<'a> = (&'a [Option<RuleScore>], &'a [Option<RuleScore>]);

/// One rule's part in a pair's label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRule {
    pub rule: String,
    pub pack: String,
    pub score_a: f64,
    pub score_b: f64,
    pub relevance: f64,
    pub discrepancy: f64,
    pub selection_score: f64,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale_a: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale_b: Option<String>,
}

/// One line of labeled.jsonl: a pair's label and everything behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub pair: String,
    #[serde(flatten)]
    pub label: Label,
    pub sum_a: f64,
    pub sum_b: f64,
    pub margin: f64,
    pub normalized_margin: f64,
    pub strategy: String,
    pub tie_policy: TiePolicy,
    /// How the scores were calibrated before selection (`[selection] calibrate`); the
    /// scores below are the calibrated ones. Absent means raw scores.
    #[serde(default, skip_serializing_if = "Calibration::is_none")]
    pub calibration: Calibration,
    /// Rules with a verdict on both responses (the candidates).
    pub selectable: usize,
    pub selected: Vec<AuditRule>,
    /// Under `fallback-all`, when the selection tied: the rules that voted instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<AuditRule>,
    /// Rule evaluations this pair needed (both responses).
    pub evaluations: usize,
    /// Judge calls those evaluations made.
    pub judge_calls: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<Pref>,
    /// sha256 of every pack whose rules voted, by pack name.
    pub packs: BTreeMap<String, String>,
    /// The judge model id and file hash, when rules used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
}

/// Labels every pair. `pack_hashes` maps pack names to their pinned sha256.
/// `predictions` (pair id → rule ids, best first) is what the Rule Adapter predicted; the
/// `adapter` strategy needs it, the others ignore it.
pub fn label_pairs(
    pairs: &[Pair],
    table: &ScoreTable,
    strategy: &Strategy,
    labeler: &Labeler,
    pack_hashes: &BTreeMap<String, String>,
    predictions: Option<&HashMap<String, Vec<String>>>,
) -> Result<Vec<AuditRecord>, LabelingError> {
    let entropies = strategy.needs_entropies().then(|| table.entropies());
    let selector = Selector::new(strategy.clone(), table.rule_ids.clone(), entropies.as_deref())?;
    let mut records = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (a, b) = (table.row(pair, Pref::A)?, table.row(pair, Pref::B)?);
        let predicted: Option<Vec<usize>> = predictions.map(|p| {
            p.get(&pair.id).map(|ids| ids.iter().filter_map(|id| table.column(id)).collect()).unwrap_or_default()
        });
        let (selection, labeled) =
            labeler.label_pair(&selector, &pair.id, PairScores::new(&a.scores, &b.scores), predicted.as_deref())?;
        records.push(audit(pair, table, &selector, labeler, (a, b), &selection, labeled, pack_hashes));
    }
    Ok(records)
}

#[allow(clippy::too_many_arguments)]
fn audit(
    pair: &Pair,
    table: &ScoreTable,
    selector: &Selector,
    labeler: &Labeler,
    (a, b): (&Row, &Row),
    selection: &Selection,
    labeled: Labeled,
    pack_hashes: &BTreeMap<String, String>,
) -> AuditRecord {
    let rules_of = |s: &Selection| -> Vec<AuditRule> {
        s.rules
            .iter()
            .map(|r| AuditRule {
                rule: table.rule_ids[r.rule].clone(),
                pack: table.packs[r.rule].clone(),
                score_a: r.score_a,
                score_b: r.score_b,
                relevance: r.relevance,
                discrepancy: r.discrepancy,
                selection_score: r.selection_score,
                weight: r.weight,
                rationale_a: a.rationales[r.rule].clone(),
                rationale_b: b.rationales[r.rule].clone(),
            })
            .collect()
    };
    let selected = rules_of(selection);
    let fallback = labeled.fallback.as_ref().map(rules_of).unwrap_or_default();
    let packs = selected
        .iter()
        .chain(&fallback)
        .filter_map(|r| pack_hashes.get(&r.pack).map(|h| (r.pack.clone(), h.clone())))
        .collect();
    AuditRecord {
        pair: pair.id.clone(),
        label: labeled.label,
        sum_a: labeled.sum_a,
        sum_b: labeled.sum_b,
        margin: labeled.margin,
        normalized_margin: labeled.normalized_margin,
        strategy: selector.strategy().to_string(),
        tie_policy: labeler.tie_policy(),
        calibration: table.calibration,
        selectable: selection.selectable,
        selected,
        fallback,
        evaluations: a.evaluated + b.evaluated,
        judge_calls: a.judge_calls + b.judge_calls,
        gold: pair.gold,
        packs,
        judge: None,
    }
}

/// Why a pair got its label, in plain words.
pub fn explain(record: &AuditRecord) -> String {
    let mut text = String::new();
    let verdict = match record.label {
        Label::Chosen { winner: Pref::A } => "response A is preferred (B is rejected)".to_string(),
        Label::Chosen { winner: Pref::B } => "response B is preferred (A is rejected)".to_string(),
        Label::Tie => "neither response is preferred: the pair is a tie".to_string(),
        Label::Abstain { reason } => format!("the pair gets no label: {reason}"),
    };
    let _ = writeln!(text, "Pair {}: {verdict}.", record.pair);
    let _ = writeln!(
        text,
        "Strategy {} kept {} of the {} rules that judged both responses.",
        record.strategy,
        record.selected.len(),
        record.selectable
    );
    if record.calibration == Calibration::Rank {
        let _ = writeln!(text, "Scores are rank-calibrated: each is its rank within its rule, mapped to [-1, 1].");
    }
    for (i, r) in record.selected.iter().enumerate() {
        let leaning = if (r.score_a - r.score_b).abs() < 1e-9 {
            "no difference".to_string()
        } else if r.score_a > r.score_b {
            "favours A".to_string()
        } else {
            "favours B".to_string()
        };
        let _ = writeln!(
            text,
            "  {}. {} ({}): A scored {:+.2}, B scored {:+.2} — {leaning}; relevance {:.2}, discrepancy {:.2}, selection score {:.2}",
            i + 1,
            r.rule,
            r.pack,
            r.score_a,
            r.score_b,
            r.relevance,
            r.discrepancy,
            r.selection_score
        );
        for (side, rationale) in [("A", &r.rationale_a), ("B", &r.rationale_b)] {
            if let Some(rationale) = rationale {
                let _ = writeln!(text, "       {side}: {rationale}");
            }
        }
    }
    if !record.fallback.is_empty() {
        let _ = writeln!(
            text,
            "The selection tied, so all {} rules voted instead (tie policy fallback-all).",
            record.fallback.len()
        );
    }
    let _ = writeln!(
        text,
        "Sum of scores: A {:+.3}, B {:+.3}; margin {:.3} ({:.3} per rule).",
        record.sum_a, record.sum_b, record.margin, record.normalized_margin
    );
    if let Some(gold) = record.gold {
        let agrees = match record.label.winner() {
            Some(w) if w == gold => "agrees with",
            Some(_) => "disagrees with",
            None => "does not decide against",
        };
        let _ = writeln!(text, "The gold label prefers {gold:?}: the rule label {agrees} it.");
    }
    let packs: Vec<String> = record.packs.iter().map(|(p, h)| format!("{p} sha256 {h}")).collect();
    if !packs.is_empty() {
        let _ = write!(text, "Packs: {}.", packs.join("; "));
    }
    text
}

/// Agreement of rule labels with gold labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    pub strategy: String,
    /// Pairs with a gold label.
    pub pairs: usize,
    /// Of those, labeled chosen/rejected or tie (not abstained).
    pub decided: usize,
    pub abstained: usize,
    pub ties: usize,
    /// Decided pairs whose label matches gold; a tie counts half.
    pub agree: f64,
    /// `agree / decided`.
    pub accuracy: f64,
    /// 95% bootstrap interval of `accuracy` (1000 resamples of the decided pairs).
    pub ci_low: f64,
    pub ci_high: f64,
    pub abstain_rate: f64,
    pub evaluations_per_pair: f64,
    pub judge_calls_per_pair: f64,
}

/// Measures `records` against their gold labels.
pub fn agreement(records: &[AuditRecord], seed: u64) -> Agreement {
    let with_gold: Vec<&AuditRecord> = records.iter().filter(|r| r.gold.is_some()).collect();
    let outcomes: Vec<f64> = with_gold
        .iter()
        .filter_map(|r| match r.label {
            Label::Chosen { winner } => Some(if Some(winner) == r.gold { 1.0 } else { 0.0 }),
            Label::Tie => Some(0.5),
            Label::Abstain { .. } => None,
        })
        .collect();
    let n = with_gold.len();
    let decided = outcomes.len();
    let agree: f64 = outcomes.iter().sum();
    let accuracy = if decided > 0 { agree / decided as f64 } else { 0.0 };
    let (ci_low, ci_high) = bootstrap(&outcomes, seed);
    let per_pair = |f: &dyn Fn(&AuditRecord) -> f64| {
        if n > 0 { with_gold.iter().map(|r| f(r)).sum::<f64>() / n as f64 } else { 0.0 }
    };
    Agreement {
        strategy: records.first().map(|r| r.strategy.clone()).unwrap_or_default(),
        pairs: n,
        decided,
        abstained: n - decided,
        ties: with_gold.iter().filter(|r| r.label == Label::Tie).count(),
        agree,
        accuracy,
        ci_low,
        ci_high,
        abstain_rate: if n > 0 { (n - decided) as f64 / n as f64 } else { 0.0 },
        evaluations_per_pair: per_pair(&|r| r.evaluations as f64),
        judge_calls_per_pair: per_pair(&|r| f64::from(r.judge_calls)),
    }
}

/// Percentile bootstrap (2.5%, 97.5%) of the mean of `outcomes`, seeded.
pub(crate) fn bootstrap(outcomes: &[f64], seed: u64) -> (f64, f64) {
    if outcomes.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = crate::select::rng::SplitMix64::new(seed);
    let n = outcomes.len();
    let mut means: Vec<f64> = (0..1000)
        .map(|_| (0..n).map(|_| outcomes[(rng.next_u64() % n as u64) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (means[24], means[974])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Message;
    use crate::plugin::FailureKind;

    fn pair(id: &str, a: &str, b: &str) -> Pair {
        Pair {
            id: id.into(),
            prompt: vec![Message::user("q")],
            a: a.into(),
            b: b.into(),
            gold: Some(Pref::A),
            subset: None,
        }
    }

    fn record(p: &Pair, side: Pref, rule: &str, outcome: Outcome) -> ScoreRecord {
        ScoreRecord {
            sample: p.sample(side).hash().to_hex(),
            rule: rule.into(),
            rule_hash: format!("h-{rule}"),
            pack: "core".into(),
            judge_calls: 0,
            outcome,
        }
    }

    fn ok(score: f32, relevance: f32) -> Outcome {
        Outcome::Ok { score, relevance, rationale: Some(format!("s={score}")) }
    }

    #[test]
    fn labels_pairs_with_an_audit_trail_and_explains_them() {
        let p = pair("p1", "safe", "unsafe");
        let records = vec![
            record(&p, Pref::A, "harm", ok(1.0, 0.9)),
            record(&p, Pref::B, "harm", ok(-1.0, 1.0)),
            record(&p, Pref::A, "tone", ok(0.2, 0.1)),
            record(&p, Pref::B, "tone", ok(0.4, 0.1)),
            record(&p, Pref::A, "broken", Outcome::Error { kind: FailureKind::Panic, message: "x".into() }),
            record(&p, Pref::B, "broken", ok(1.0, 1.0)),
        ];
        let table = ScoreTable::from_records(&records).unwrap();
        assert_eq!(table.rule_ids, ["broken", "harm", "tone"]);
        let hashes = BTreeMap::from([("core".to_string(), "abc".to_string())]);
        let strategy = Strategy::max_discrepancy(1, 0.5).unwrap();
        let labeled =
            label_pairs(std::slice::from_ref(&p), &table, &strategy, &Labeler::default(), &hashes, None).unwrap();
        let r = &labeled[0];
        assert_eq!(r.label, Label::Chosen { winner: Pref::A });
        assert_eq!(r.selectable, 2, "the rule that failed on A cannot vote");
        assert_eq!(r.selected.len(), 1);
        assert_eq!(r.selected[0].rule, "harm");
        assert_eq!(r.selected[0].selection_score, 1.0 + 0.5 * 2.0);
        assert_eq!((r.sum_a, r.sum_b, r.margin), (1.0, -1.0, 2.0));
        assert_eq!(r.packs["core"], "abc");
        assert_eq!(r.evaluations, 6);
        let text = explain(r);
        assert!(text.contains("Pair p1: response A is preferred"), "{text}");
        assert!(text.contains("harm (core): A scored +1.00, B scored -1.00 — favours A"), "{text}");
        assert!(text.contains("B: s=-1"), "{text}");
        assert!(text.contains("agrees with"), "{text}");
        let line = serde_json::to_string(r).unwrap();
        assert!(line.contains("\"label\":\"chosen\",\"winner\":\"a\""), "{line}");
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, r);
    }

    #[test]
    fn rank_calibration_keeps_each_rules_order_and_equalises_scales() {
        // Rule "low" always near -1 (a judge that says No), rule "wide" spread out.
        let pairs = [pair("p1", "a1", "b1"), pair("p2", "a2", "b2")];
        let mut records = Vec::new();
        for (p, (la, lb), (wa, wb)) in
            [(&pairs[0], (-0.99, -0.98), (0.5, -0.5)), (&pairs[1], (-0.97, -0.99), (0.9, 0.9))]
        {
            records.push(record(p, Pref::A, "low", ok(la, 0.5)));
            records.push(record(p, Pref::B, "low", ok(lb, 0.5)));
            records.push(record(p, Pref::A, "wide", ok(wa, 0.7)));
            records.push(record(p, Pref::B, "wide", ok(wb, 0.7)));
        }
        let table = ScoreTable::from_records(&records).unwrap();
        assert_eq!(
            table.calibrated(Calibration::None).pair_scores(&pairs[0]).unwrap(),
            table.pair_scores(&pairs[0]).unwrap()
        );
        let cal = table.calibrated(Calibration::Rank);
        let score = |p: &Pair, c: usize| {
            let (a, b) = cal.pair_scores(p).unwrap();
            (a[c].unwrap().score, b[c].unwrap().score)
        };
        // "low": -0.99 < -0.98 < -0.97 with -0.99 twice: mid-ranks 1, 2.5, 3.5 of 4.
        assert_eq!(score(&pairs[0], 0), (2.0 * 1.0 / 4.0 - 1.0, 2.0 * 2.5 / 4.0 - 1.0));
        assert_eq!(score(&pairs[1], 0), (2.0 * 3.5 / 4.0 - 1.0, 2.0 * 1.0 / 4.0 - 1.0));
        // "wide": -0.5 < 0.5 < 0.9 (twice): the tie stays a tie.
        assert_eq!(score(&pairs[0], 1), (2.0 * 1.5 / 4.0 - 1.0, 2.0 * 0.5 / 4.0 - 1.0));
        let (a, b) = score(&pairs[1], 1);
        assert_eq!(a, b);
        // Relevance is untouched; every rule now spans the same range.
        assert_eq!(cal.pair_scores(&pairs[0]).unwrap().0[1].unwrap().relevance, f64::from(0.7f32));
        // Each rule's own preference is the same before and after.
        assert_eq!(rule_agreement(&pairs, &table).unwrap(), rule_agreement(&pairs, &cal).unwrap());
        assert_eq!("rank".parse::<Calibration>(), Ok(Calibration::Rank));
        assert!("zscore".parse::<Calibration>().unwrap_err().contains("none or rank"));
    }

    #[test]
    fn each_rules_own_agreement_with_gold() {
        // Gold prefers A in both pairs. "good" prefers A twice, "bad" prefers B once and
        // ties once, "half" fails on one response of p2.
        let pairs = [pair("p1", "a1", "b1"), pair("p2", "a2", "b2")];
        let records = vec![
            record(&pairs[0], Pref::A, "good", ok(0.5, 1.0)),
            record(&pairs[0], Pref::B, "good", ok(-0.5, 0.0)),
            record(&pairs[1], Pref::A, "good", ok(0.1, 1.0)),
            record(&pairs[1], Pref::B, "good", ok(0.0, 0.0)),
            record(&pairs[0], Pref::A, "bad", ok(-0.5, 0.5)),
            record(&pairs[0], Pref::B, "bad", ok(0.5, 0.5)),
            record(&pairs[1], Pref::A, "bad", ok(0.2, 0.5)),
            record(&pairs[1], Pref::B, "bad", ok(0.2, 0.5)),
            record(&pairs[0], Pref::A, "half", ok(1.0, 1.0)),
            record(&pairs[0], Pref::B, "half", ok(0.0, 1.0)),
            record(&pairs[1], Pref::A, "half", Outcome::Error { kind: FailureKind::Panic, message: "x".into() }),
            record(&pairs[1], Pref::B, "half", ok(0.0, 1.0)),
            record(&pairs[0], Pref::A, "quiet", ok(0.0, 0.0)),
            record(&pairs[0], Pref::B, "quiet", ok(0.0, 0.0)),
        ];
        let table = ScoreTable::from_records(&records).unwrap();
        let rules = rule_agreement(&pairs, &table).unwrap();
        let get = |id: &str| {
            let r = rules.iter().find(|r| r.rule == id).unwrap();
            (r.agreement.pairs, r.agreement.decided, r.agreement.accuracy)
        };
        assert_eq!(get("good"), (2, 2, 1.0));
        assert_eq!(rules.iter().find(|r| r.rule == "good").unwrap().mean_relevance, 0.5);
        assert_eq!(get("bad"), (2, 1, 0.0), "the tie is no side");
        assert_eq!(get("half"), (2, 1, 1.0), "the failed response is no side");
        assert_eq!(get("quiet"), (2, 0, 0.0));
        let text = crate::app::rule_agreement_table(&rules);
        let order: Vec<usize> =
            ["| good", "| half", "| bad", "| quiet"].iter().map(|r| text.find(r).unwrap()).collect();
        assert!(order.is_sorted(), "most accurate first, ties by id, silent rules last: {text}");
        assert!(text.contains("| quiet | core | 0 | n/a | n/a | 1.000 | 0.000 |"), "{text}");
    }

    #[test]
    fn unscored_pairs_and_mixed_rule_versions_are_errors() {
        let p = pair("p1", "x", "y");
        let q = pair("p2", "z", "w");
        let mut records = vec![record(&p, Pref::A, "r", ok(1.0, 1.0)), record(&p, Pref::B, "r", ok(0.0, 1.0))];
        let table = ScoreTable::from_records(&records).unwrap();
        let err = label_pairs(&[q], &table, &Strategy::All, &Labeler::default(), &BTreeMap::new(), None).unwrap_err();
        assert!(err.to_string().contains("pair \"p2\": response a was never scored"), "{err}");
        let mut other = record(&p, Pref::A, "r", ok(1.0, 1.0));
        other.rule_hash = "other".into();
        records.push(other);
        assert!(matches!(ScoreTable::from_records(&records), Err(LabelingError::MixedVersions { .. })));
    }

    #[test]
    fn agreement_counts_ties_half_and_excludes_abstentions() {
        let base = AuditRecord {
            pair: "p".into(),
            label: Label::Chosen { winner: Pref::A },
            sum_a: 0.0,
            sum_b: 0.0,
            margin: 0.0,
            normalized_margin: 0.0,
            strategy: "all".into(),
            tie_policy: TiePolicy::Drop,
            calibration: Calibration::None,
            selectable: 1,
            selected: vec![],
            fallback: vec![],
            evaluations: 4,
            judge_calls: 2,
            gold: Some(Pref::A),
            packs: BTreeMap::new(),
            judge: None,
        };
        let records = vec![
            base.clone(),
            AuditRecord { label: Label::Chosen { winner: Pref::B }, ..base.clone() },
            AuditRecord { label: Label::Tie, ..base.clone() },
            AuditRecord { label: Label::Abstain { reason: crate::label::AbstainReason::Tied }, ..base.clone() },
            AuditRecord { gold: None, ..base.clone() },
        ];
        let a = agreement(&records, 7);
        assert_eq!((a.pairs, a.decided, a.abstained, a.ties), (4, 3, 1, 1));
        assert_eq!(a.agree, 1.5);
        assert_eq!(a.accuracy, 0.5);
        assert_eq!(a.abstain_rate, 0.25);
        assert_eq!((a.evaluations_per_pair, a.judge_calls_per_pair), (4.0, 2.0));
        assert!(a.ci_low <= a.accuracy && a.accuracy <= a.ci_high && a.ci_low >= 0.0 && a.ci_high <= 1.0);
        assert_eq!(agreement(&records, 7), a, "seeded");
    }
}
