//! The scores file: JSON Lines, one record per (sample, rule), sorted by sample hash then
//! rule id. Records hold no timestamps or timings, so the same job always writes the
//! same bytes — which is what makes resume and shard merging exact.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ScoreError;
use crate::plugin::{Failure, FailureKind, Verdict};

/// One rule's outcome on one sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// [`crate::data::SampleHash`] of the sample, in hex.
    pub sample: String,
    pub rule: String,
    /// See [`crate::plugin::ActiveRule::rule_hash`].
    pub rule_hash: String,
    pub pack: String,
    /// Judge calls the evaluation made (omitted when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_calls: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Ok {
        score: f32,
        relevance: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rationale: Option<String>,
    },
    Error {
        kind: FailureKind,
        message: String,
    },
}

impl Outcome {
    pub fn from_result(result: Result<Verdict, Failure>) -> Outcome {
        match result {
            Ok(v) => Outcome::Ok { score: v.score, relevance: v.relevance, rationale: v.rationale },
            Err(f) => Outcome::Error { kind: f.kind, message: f.message },
        }
    }

    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Error { kind, .. } => Some(*kind),
        }
    }
}

/// The identity of a record: which sample, which rule, produced by what.
pub type Key = (String, String, String);

impl ScoreRecord {
    pub fn key(&self) -> Key {
        (self.sample.clone(), self.rule.clone(), self.rule_hash.clone())
    }

    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("score records always serialise");
        line.push('\n');
        line
    }
}

/// The records at the start of a scores file that are complete and parse, and the byte
/// length they take. A run killed mid-write leaves at most one torn line at the end; it
/// and anything after it are not counted.
#[derive(Debug, Default)]
pub struct ValidPrefix {
    pub records: Vec<ScoreRecord>,
    pub bytes: u64,
    /// Lines after the valid prefix that were ignored.
    pub ignored_lines: usize,
}

pub fn read_valid_prefix(path: &Path) -> Result<ValidPrefix, ScoreError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ValidPrefix::default()),
        Err(source) => return Err(ScoreError::Io { path: path.to_path_buf(), source }),
    };
    let mut reader = BufReader::new(file);
    let mut prefix = ValidPrefix::default();
    let mut line = Vec::new();
    let mut intact = true;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| ScoreError::Io { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        if !intact {
            prefix.ignored_lines += 1;
            continue;
        }
        let complete = line.last() == Some(&b'\n');
        match serde_json::from_slice::<ScoreRecord>(&line) {
            Ok(record) if complete => {
                prefix.records.push(record);
                prefix.bytes += n as u64;
            }
            _ => {
                intact = false;
                prefix.ignored_lines += 1;
            }
        }
    }
    Ok(prefix)
}

/// Reads a complete scores file strictly: any bad line is an error naming file:line.
pub fn read_strict(path: &Path) -> Result<Vec<ScoreRecord>, ScoreError> {
    let file = std::fs::File::open(path).map_err(|source| ScoreError::Io { path: path.to_path_buf(), source })?;
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ScoreError::Io { path: path.to_path_buf(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| ScoreError::Corrupt {
            path: path.to_path_buf(),
            line: index + 1,
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rule: &str) -> ScoreRecord {
        ScoreRecord {
            sample: "ab".into(),
            rule: rule.into(),
            rule_hash: "00".into(),
            pack: "core".into(),
            judge_calls: 0,
            outcome: Outcome::Ok { score: 0.1, relevance: 1.0, rationale: None },
        }
    }

    #[test]
    fn records_round_trip_and_look_like_the_docs() {
        let line = ok("r").to_line();
        assert_eq!(
            line,
            "{\"sample\":\"ab\",\"rule\":\"r\",\"rule_hash\":\"00\",\"pack\":\"core\",\"status\":\"ok\",\"score\":0.1,\"relevance\":1.0}\n"
        );
        let failed =
            ScoreRecord { outcome: Outcome::Error { kind: FailureKind::OutOfMemory, message: "m".into() }, ..ok("r") };
        let back: ScoreRecord = serde_json::from_str(&failed.to_line()).unwrap();
        assert_eq!(back, failed);
        assert!(failed.to_line().contains("\"status\":\"error\",\"kind\":\"out-of-memory\""));
    }

    #[test]
    fn a_torn_last_line_ends_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let full = format!("{}{}", ok("a").to_line(), ok("b").to_line());
        std::fs::write(&path, format!("{full}{{\"sample\":\"ab\",\"ru")).unwrap();
        let prefix = read_valid_prefix(&path).unwrap();
        assert_eq!(prefix.records.len(), 2);
        assert_eq!(prefix.bytes, full.len() as u64);
        assert_eq!(prefix.ignored_lines, 1);
        assert!(read_valid_prefix(&dir.path().join("missing")).unwrap().records.is_empty());
        let err = read_strict(&path).unwrap_err().to_string();
        assert!(err.contains("s.jsonl:3"), "{err}");
    }
}
