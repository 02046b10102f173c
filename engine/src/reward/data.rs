//! Training pairs: from gold (human) labels or from the rule labels of `engine label`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use super::RewardError;
use crate::data::{Message, Pair, Pref, ReadOptions};
use crate::label::Label;
use crate::labeling::AuditRecord;

/// One training example: a prompt and two responses, the first preferred.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPair {
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
    /// Subtracted inside the loss, −log σ(r_c − r_r − margin); 0 for none.
    pub margin: f32,
    /// Neither response is preferred: the loss pulls σ(r_c − r_r) toward 0.5 (and `margin` is ignored).
    pub tie: bool,
}

/// What became of the input pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PairStats {
    pub pairs: usize,
    pub used: usize,
    pub ties: usize,
    /// Pairs without a gold label (gold mode) or without a decision (`Abstain`).
    pub skipped_unlabeled: usize,
    /// Pairs with no record in the labels file.
    pub skipped_missing: usize,
    /// Label records for pairs that are not in the pairs file: a labels file of a whole
    /// dataset used with a subset of its pairs (a split). Ignored and counted.
    pub extra_labels: usize,
    /// Pairs whose two responses are the same text: neither can be preferred, and as a
    /// labelled pair it would train the model toward a reward gap it cannot have.
    pub skipped_identical: usize,
}

impl TrainPair {
    fn new(pair: &Pair, winner: Pref, margin: f32) -> TrainPair {
        let (chosen, rejected) = match winner {
            Pref::A => (&pair.a, &pair.b),
            Pref::B => (&pair.b, &pair.a),
        };
        TrainPair {
            prompt: pair.prompt.clone(),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
            margin,
            tie: false,
        }
    }

    /// Pairs with a gold label, the gold-preferred response chosen; the others are skipped.
    /// Pairs whose responses are the same text are counted and left out.
    pub fn from_gold(pairs: &[Pair]) -> (Vec<TrainPair>, PairStats) {
        let identical = pairs.iter().filter(|p| p.a == p.b).count();
        let out: Vec<TrainPair> =
            pairs.iter().filter(|p| p.a != p.b).filter_map(|p| p.gold.map(|w| TrainPair::new(p, w, 0.0))).collect();
        let stats = PairStats {
            pairs: pairs.len(),
            used: out.len(),
            skipped_unlabeled: pairs.len() - identical - out.len(),
            skipped_identical: identical,
            ..Default::default()
        };
        (out, stats)
    }

    /// Pairs labeled by rules: the winner of `record.label` is chosen, [`Label::Tie`] trains
    /// toward 0.5, [`Label::Abstain`] is left out. With `use_margin`, the record's
    /// `normalized_margin` becomes the loss margin. Records match pairs by id; records for
    /// pairs that are not in `pairs` are ignored and counted (labels of a whole dataset
    /// train on one split of it), but labels that match none of the pairs are an error
    /// (the files do not belong together). Pairs whose responses are the same text are
    /// counted and left out, whatever their label.
    pub fn from_labels(
        pairs: &[Pair],
        records: &[AuditRecord],
        use_margin: bool,
    ) -> Result<(Vec<TrainPair>, PairStats), RewardError> {
        let by_id: HashMap<&str, &Pair> = pairs.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut stats = PairStats { pairs: pairs.len(), ..Default::default() };
        let mut out = Vec::new();
        let mut matched = 0;
        for record in records {
            let Some(pair) = by_id.get(record.pair.as_str()) else {
                stats.extra_labels += 1;
                continue;
            };
            matched += 1;
            if pair.a == pair.b {
                stats.skipped_identical += 1;
                continue;
            }
            match &record.label {
                Label::Tie => {
                    stats.ties += 1;
                    out.push(TrainPair {
                        prompt: pair.prompt.clone(),
                        chosen: pair.a.clone(),
                        rejected: pair.b.clone(),
                        margin: 0.0,
                        tie: true,
                    });
                }
                label => match label.winner() {
                    Some(w) => {
                        let margin = if use_margin { record.normalized_margin.abs() as f32 } else { 0.0 };
                        out.push(TrainPair::new(pair, w, margin));
                    }
                    None => stats.skipped_unlabeled += 1,
                },
            }
        }
        if matched == 0 && !records.is_empty() && !pairs.is_empty() {
            return Err(RewardError::Invalid(format!(
                "the labels name none of the {} pairs (the first names pair {:?}): were they made from another \
                 pairs file? Pass the --data that `engine label` labelled",
                pairs.len(),
                records[0].pair
            )));
        }
        stats.used = out.len();
        stats.skipped_missing = pairs.len().saturating_sub(matched);
        Ok((out, stats))
    }
}

/// Reads every pair of a file in any format `data::read_pairs` accepts.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, RewardError> {
    let report = crate::data::read_pairs(path, &ReadOptions::default())
        .map_err(|source| RewardError::Data { path: path.to_path_buf(), source })?;
    Ok(report.pairs)
}

/// Reads `labeled.jsonl` (one [`AuditRecord`] per line).
pub fn read_labels(path: &Path) -> Result<Vec<AuditRecord>, RewardError> {
    let file = std::fs::File::open(path).map_err(|e| RewardError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| RewardError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: AuditRecord = serde_json::from_str(&line).map_err(|e| RewardError::Format {
            path: path.to_path_buf(),
            message: format!("line {}: not a label record: {e}", i + 1),
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Training pairs from `data` with gold labels, or with the rule labels in `labels`.
pub fn load_train_pairs(
    data: &Path,
    labels: Option<&Path>,
    use_margin: bool,
) -> Result<(Vec<TrainPair>, PairStats), RewardError> {
    let pairs = read_pairs(data)?;
    match labels {
        None => Ok(TrainPair::from_gold(&pairs)),
        Some(path) => TrainPair::from_labels(&pairs, &read_labels(path)?, use_margin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str) -> Pair {
        Pair {
            id: id.into(),
            prompt: vec![Message::user("q")],
            a: format!("{id}-a"),
            b: format!("{id}-b"),
            gold: Some(Pref::A),
            subset: None,
        }
    }

    fn record(pair: &str, label: &str, normalized_margin: f64) -> AuditRecord {
        let json = format!(
            r#"{{"pair": "{pair}", {label}, "sum_a": 0.0, "sum_b": 0.0, "margin": 0.0,
                "normalized_margin": {normalized_margin}, "strategy": "all", "tie_policy": "half",
                "selectable": 1, "selected": [], "evaluations": 2, "judge_calls": 0, "packs": {{}}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn rule_labels_pick_the_winner_keep_ties_and_skip_abstentions() {
        let pairs = [pair("p1"), pair("p2"), pair("p3"), pair("p4")];
        let records = [
            record("p1", r#""label": "chosen", "winner": "b""#, -0.4),
            record("p2", r#""label": "tie""#, 0.0),
            record("p3", r#""label": "abstain", "reason": "tied""#, 0.0),
        ];
        let (out, stats) = TrainPair::from_labels(&pairs, &records, true).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].chosen.as_str(), out[0].rejected.as_str(), out[0].tie), ("p1-b", "p1-a", false));
        assert!((out[0].margin - 0.4).abs() < 1e-6);
        assert!(out[1].tie);
        assert_eq!(
            stats,
            PairStats {
                pairs: 4,
                used: 2,
                ties: 1,
                skipped_unlabeled: 1,
                skipped_missing: 1,
                skipped_identical: 0,
                extra_labels: 0
            }
        );
        // Without --margin the margin is 0.
        let (out, _) = TrainPair::from_labels(&pairs, &records, false).unwrap();
        assert_eq!(out[0].margin, 0.0);
        // Records for pairs that are not there (labels of the whole set, pairs of a split)
        // are ignored and counted; labels that match no pair at all are an error.
        let (out, stats) = TrainPair::from_labels(&pairs[..1], &records, false).unwrap();
        assert_eq!((out.len(), stats.extra_labels, stats.skipped_missing), (1, 2, 0));
        let err = TrainPair::from_labels(&[pair("zz")], &records, false).unwrap_err();
        assert!(err.to_string().contains("none of the 1 pairs") && err.to_string().contains("\"p1\""), "{err}");
    }

    #[test]
    fn gold_labels_keep_labeled_pairs_only() {
        let mut p = vec![pair("a"), pair("b")];
        p[1].gold = Some(Pref::B);
        p.push(Pair { gold: None, ..pair("c") });
        let (out, stats) = TrainPair::from_gold(&p);
        assert_eq!(out.iter().map(|t| t.chosen.as_str()).collect::<Vec<_>>(), ["a-a", "b-b"]);
        assert_eq!(stats.skipped_unlabeled, 1);
    }

    #[test]
    fn pairs_with_the_same_response_twice_are_counted_and_skipped() {
        let same = Pair { b: "p2-a".into(), ..pair("p2") };
        let pairs = [pair("p1"), same];
        let (out, stats) = TrainPair::from_gold(&pairs);
        assert_eq!(out.len(), 1);
        assert_eq!((stats.used, stats.skipped_identical, stats.skipped_unlabeled, stats.ties), (1, 1, 0, 0));
        let records = [record("p1", r#""label": "tie""#, 0.0), record("p2", r#""label": "tie""#, 0.0)];
        let (out, stats) = TrainPair::from_labels(&pairs, &records, false).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((stats.ties, stats.skipped_identical), (1, 1));
    }
}
