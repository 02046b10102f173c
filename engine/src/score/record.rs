//! The scores file: JSON Lines, one record per (sample, rule), sorted by sample hash then
//! rule id. Records hold no timestamps or timings, so the same job always writes the
//! same bytes — which is what makes resume and shard merging exact.

use std::collections::HashMap;
use std::io::BufReader;
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

/// What every score record line starts with ([`ScoreRecord::to_line`] writes `sample`
/// first). A torn last line is recognised by it: a run killed mid-write leaves the start
/// of a record, never anything else.
const RECORD_START: &[u8] = b"{\"sample\":\"";

/// The records of a scores file an earlier run left, and the byte length they take.
///
/// A run killed mid-write (even `kill -9`) leaves complete records plus at most one torn
/// line: an unterminated last line that starts like a record. That line is not counted
/// (the rerun truncates it away). Anything else that is not a record — a complete line
/// that does not parse, or an unterminated last line that does not look like the start
/// of one — means the file is not a scores file (a file of notes given as `--out` by
/// mistake), and is an error naming the file and line rather than something to overwrite.
#[derive(Debug, Default)]
pub struct ValidPrefix {
    pub records: Vec<ScoreRecord>,
    pub bytes: u64,
    /// Whether a torn last line followed the records.
    pub torn: bool,
}

pub fn read_valid_prefix(path: &Path) -> Result<ValidPrefix, ScoreError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ValidPrefix::default()),
        Err(source) => return Err(ScoreError::Io { path: path.to_path_buf(), source }),
    };
    let io = |source| ScoreError::Io { path: path.to_path_buf(), source };
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file; scores are written to a regular file, pass another --out",
        )));
    }
    let mut reader = BufReader::new(file);
    let mut prefix = ValidPrefix::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = crate::fsio::read_line_capped(&mut reader, &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if !complete && (line.starts_with(RECORD_START) || RECORD_START.starts_with(&line)) {
            prefix.torn = true;
            break;
        }
        match serde_json::from_slice::<ScoreRecord>(&line) {
            Ok(record) if complete => {
                prefix.records.push(record);
                prefix.bytes += n as u64;
            }
            Ok(_) => {
                // A record in another key order without its newline: not written by `engine
                // score`, whose lines all start with RECORD_START.
                return Err(ScoreError::NotScores {
                    path: path.to_path_buf(),
                    line: number,
                    message: "an unterminated last line that engine score did not write".into(),
                });
            }
            Err(e) => {
                return Err(ScoreError::NotScores { path: path.to_path_buf(), line: number, message: e.to_string() });
            }
        }
    }
    Ok(prefix)
}

/// Reads a complete scores file strictly: any bad line is an error naming file:line.
///
/// A key (sample, rule, rule hash) holds one verdict. A record repeated identically (two
/// shards concatenated by hand, say) is kept once, as `engine merge` does; two records of
/// one key that disagree are an error naming both lines, since which one a label should
/// use is not ours to guess.
pub fn read_strict(path: &Path) -> Result<Vec<ScoreRecord>, ScoreError> {
    let mut first_line: HashMap<Key, (usize, usize)> = HashMap::new();
    let mut records: Vec<ScoreRecord> = Vec::new();
    for (line, record) in read_strict_numbered(path)? {
        let key = record.key();
        match first_line.get(&key) {
            Some(&(first, index)) if records[index] != record => {
                return Err(ScoreError::Contradiction { path: path.to_path_buf(), first, second: line, key });
            }
            Some(_) => {}
            None => {
                first_line.insert(key, (line, records.len()));
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// [`read_strict`], with each record's line number (from 1).
pub fn read_strict_numbered(path: &Path) -> Result<Vec<(usize, ScoreRecord)>, ScoreError> {
    let io = |source| ScoreError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if crate::fsio::read_line_capped(&mut reader, &mut line).map_err(io)? == 0 {
            break;
        }
        number += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record = serde_json::from_slice(&line).map_err(|e| ScoreError::Corrupt {
            path: path.to_path_buf(),
            line: number,
            message: e.to_string(),
        })?;
        records.push((number, record));
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
        assert!(prefix.torn);
        assert!(read_valid_prefix(&dir.path().join("missing")).unwrap().records.is_empty());
        let err = read_strict(&path).unwrap_err().to_string();
        assert!(err.contains("s.jsonl:3"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_scores_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        let record = ok("a").to_line();
        for (text, line) in [
            ("my notes\nabout the run\n".to_string(), 1),
            ("my notes, no newline".to_string(), 1),
            (format!("{record}not a record\n{record}"), 2),
            (format!("{record}{{\"sample\":\"ab\"}}\n"), 2),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = read_valid_prefix(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("notes.txt:{line}:")) && err.contains("not a scores file"), "{err}");
        }
        // Very short torn lines are still recognised as the start of a record.
        std::fs::write(&path, format!("{record}{{\"sa")).unwrap();
        assert!(read_valid_prefix(&path).unwrap().torn);
    }

    #[test]
    fn identical_duplicates_are_kept_once_and_contradictions_name_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let other = ScoreRecord { outcome: Outcome::Ok { score: -0.5, relevance: 1.0, rationale: None }, ..ok("a") };
        std::fs::write(&path, format!("{}{}{}", ok("a").to_line(), ok("b").to_line(), ok("a").to_line())).unwrap();
        assert_eq!(read_strict(&path).unwrap(), [ok("a"), ok("b")]);
        std::fs::write(&path, format!("{}{}{}", ok("a").to_line(), ok("b").to_line(), other.to_line())).unwrap();
        let err = read_strict(&path).unwrap_err().to_string();
        assert!(err.contains("s.jsonl:1") && err.contains("line 3") && err.contains("rule a"), "{err}");
    }
}
