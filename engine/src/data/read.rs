//! Reading pairs from JSON Lines files.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::json::{Row, kind};
use super::{DataError, Format, LineError, Pair};

/// How to read a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The row format; [`Format::Auto`] (the default) detects it per line.
    pub format: Format,
    /// Collect invalid lines in [`ReadReport::skipped`] and go on, instead of
    /// failing on the first one.
    pub skip_invalid: bool,
}

/// What a read produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// The file name given to the reader, as it appears in messages.
    pub source: String,
    /// The pairs, in file order (a multi-response row adds its pairs in place).
    pub pairs: Vec<Pair>,
    /// The invalid lines, in file order; empty unless `skip_invalid` was set.
    pub skipped: Vec<Skipped>,
    /// How many valid rows (not pairs) each format contributed.
    pub format_counts: FormatCounts,
}

/// A line left out because it was invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file, as given to the reader.
    pub file: String,
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: LineError,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// The most skipped lines [`warn_skipped`] prints one by one.
const SKIPPED_SHOWN: usize = 10;

/// Tells the user on stderr which lines `--skip-invalid` left out and why: the first
/// [`SKIPPED_SHOWN`] as `warning: skipped FILE:LINE: REASON`, then how many more. Every
/// command with `--skip-invalid` calls it, so that no line disappears unreported.
pub fn warn_skipped(skipped: &[Skipped]) {
    for s in skipped.iter().take(SKIPPED_SHOWN) {
        eprintln!("warning: skipped {s}");
    }
    if skipped.len() > SKIPPED_SHOWN {
        eprintln!("warning: skipped {} more invalid lines", skipped.len() - SKIPPED_SHOWN);
    }
}

/// Valid rows per format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FormatCounts {
    pub pairs: usize,
    pub unlabeled: usize,
    pub hh_rlhf: usize,
    pub reward_bench: usize,
    pub multi_response: usize,
}

impl FormatCounts {
    /// The rows read in `format`; for [`Format::Auto`], all rows.
    pub fn get(&self, format: Format) -> usize {
        match format {
            Format::Auto => self.total(),
            Format::Pairs => self.pairs,
            Format::Unlabeled => self.unlabeled,
            Format::HhRlhf => self.hh_rlhf,
            Format::RewardBench => self.reward_bench,
            Format::MultiResponse => self.multi_response,
        }
    }

    /// All valid rows.
    pub fn total(&self) -> usize {
        self.pairs + self.unlabeled + self.hh_rlhf + self.reward_bench + self.multi_response
    }

    fn count(&mut self, format: Format) {
        match format {
            Format::Auto => {}
            Format::Pairs => self.pairs += 1,
            Format::Unlabeled => self.unlabeled += 1,
            Format::HhRlhf => self.hh_rlhf += 1,
            Format::RewardBench => self.reward_bench += 1,
            Format::MultiResponse => self.multi_response += 1,
        }
    }
}

/// Shows the non-zero counts, e.g. `pairs: 12, hh-rlhf: 3`, or `no rows`.
impl fmt::Display for FormatCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for format in Format::ALL.into_iter().skip(1) {
            let n = self.get(format);
            if n > 0 {
                write!(f, "{}{format}: {n}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        if first {
            f.write_str("no rows")?;
        }
        Ok(())
    }
}

/// Reads the pairs in a JSON Lines file; see [`read_pairs_from`].
pub fn read_pairs(path: &Path, opts: &ReadOptions) -> Result<ReadReport, DataError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| DataError::Open { file: name.clone(), source })?;
    read_pairs_from(BufReader::new(file), &name, opts)
}

/// Reads pairs from JSON Lines text. `source_name` is the file name used in
/// messages, and its stem makes the ids of rows without one (`<stem>:<line>`).
///
/// Blank lines are ignored (but counted in line numbers). Each other line is one
/// row in `opts.format`, or in the format [`Format::Auto`] detects for it. Pair ids
/// must be unique; a repeated id is an error naming both lines. Without
/// `opts.skip_invalid` the first invalid line ends the read with an error; with it,
/// invalid lines are collected in [`ReadReport::skipped`].
pub fn read_pairs_from(
    mut reader: impl BufRead,
    source_name: &str,
    opts: &ReadOptions,
) -> Result<ReadReport, DataError> {
    let stem = Path::new(source_name).file_stem().and_then(|s| s.to_str()).unwrap_or(source_name);
    let mut report = ReadReport { source: source_name.to_owned(), ..ReadReport::default() };
    let mut first_line_of_id: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        // A line of more than fsio::MAX_LINE_BYTES is an error, not an unbounded read
        // (`--input /dev/zero`).
        let read = crate::fsio::read_line_capped(&mut reader, &mut buf);
        line += 1;
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(source) => {
                return Err(DataError::Read { file: source_name.to_owned(), line, source });
            }
        }
        let parsed = parse_line(&buf, line, stem, opts.format).and_then(|parsed| {
            if let Some((_, pairs)) = &parsed {
                check_unique(pairs, &first_line_of_id)?;
            }
            Ok(parsed)
        });
        match parsed {
            Ok(None) => {}
            Ok(Some((format, pairs))) => {
                report.format_counts.count(format);
                for pair in &pairs {
                    first_line_of_id.insert(pair.id.clone(), line);
                }
                report.pairs.extend(pairs);
            }
            Err(reason) if opts.skip_invalid => {
                report.skipped.push(Skipped { file: source_name.to_owned(), line, reason });
            }
            Err(error) => {
                return Err(DataError::Line { file: source_name.to_owned(), line, error });
            }
        }
    }
    // Skipping every line would let a command "succeed" on nothing (`scored 0 samples`,
    // exit 0), which hides a wrong file or a wrong --format.
    if report.pairs.is_empty() && report.format_counts.total() == 0 && !report.skipped.is_empty() {
        let first = report.skipped.swap_remove(0);
        return Err(DataError::AllSkipped {
            file: first.file,
            skipped: report.skipped.len() + 1,
            line: first.line,
            reason: first.reason,
        });
    }
    Ok(report)
}

/// Parses one line: `None` for a blank line, otherwise its format and pairs.
fn parse_line(bytes: &[u8], line: usize, stem: &str, format: Format) -> Result<Option<(Format, Vec<Pair>)>, LineError> {
    let mut text = std::str::from_utf8(bytes).map_err(|_| LineError::NotUtf8)?;
    if line == 1 {
        text = text.strip_prefix('\u{feff}').unwrap_or(text);
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    let row: Row = match serde_json::from_str(text).map_err(json_error)? {
        Value::Object(row) => row,
        other => {
            return Err(LineError::NotAnObject { found: kind(&other) });
        }
    };
    let default_id = format!("{stem}:{line}");
    let format = match format {
        Format::Auto => Format::detect(&row)?,
        forced => forced,
    };
    format.parse_row(&row, &default_id).map(|pairs| Some((format, pairs))).map_err(|error| {
        match Format::detect(&row) {
            // Only a forced format can disagree with detection: say what the line looks like.
            Ok(detected) if detected != format => {
                LineError::WrongFormat { forced: format, detected, error: Box::new(error) }
            }
            _ => error,
        }
    })
}

/// Fails if one of the pairs reuses an id from an earlier line.
fn check_unique(pairs: &[Pair], first_line_of_id: &HashMap<String, usize>) -> Result<(), LineError> {
    for pair in pairs {
        if let Some(&first_line) = first_line_of_id.get(&pair.id) {
            return Err(LineError::DuplicateId { id: pair.id.clone(), first_line });
        }
    }
    Ok(())
}

/// serde_json's message, with the position given as a column (the line is always 1).
fn json_error(error: serde_json::Error) -> LineError {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    LineError::Json(match message.strip_suffix(&position) {
        Some(text) => format!("{text} at column {}", error.column()),
        None => message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Message, Pref, Role};

    const FILE: &str = "data/x.jsonl";

    fn read_with(text: &str, format: Format, skip_invalid: bool) -> Result<ReadReport, DataError> {
        read_pairs_from(text.as_bytes(), FILE, &ReadOptions { format, skip_invalid })
    }

    fn read(text: &str) -> ReadReport {
        read_with(text, Format::Auto, false).unwrap()
    }

    fn error(text: &str) -> String {
        read_with(text, Format::Auto, false).unwrap_err().to_string()
    }

    fn lines(rows: &[&str]) -> String {
        rows.join("\n") + "\n"
    }

    const PAIRS_ROW: &str = r#"{"id": "p1", "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "chosen": "Hello.", "rejected": "What?", "source": "test"}"#;

    #[test]
    fn reads_our_schema() {
        let report = read(PAIRS_ROW);
        let pair = &report.pairs[0];
        assert_eq!(pair.id, "p1");
        assert_eq!(pair.prompt, [Message::new(Role::System, "Be brief."), Message::user("Hi")]);
        assert_eq!((pair.a.as_str(), pair.b.as_str()), ("Hello.", "What?"));
        assert_eq!(pair.gold, Some(Pref::A));
        assert_eq!(pair.subset, None);
        assert_eq!(report.format_counts.pairs, 1);
    }

    #[test]
    fn reads_unlabeled_pairs_with_either_prompt_shape() {
        let report = read(&lines(&[
            r#"{"prompt": "Hi", "response_a": "Hello.", "response_b": "Hey."}"#,
            r#"{"id": "u2", "prompt": [{"role": "user", "content": "Hi"}], "response_a": "A", "response_b": "B"}"#,
        ]));
        let [first, second] = &report.pairs[..] else { panic!("{:?}", report.pairs) };
        assert_eq!(first.id, "x:1");
        assert_eq!(first.prompt, [Message::user("Hi")]);
        assert_eq!(first.prompt, second.prompt);
        assert_eq!((first.a.as_str(), first.b.as_str(), first.gold), ("Hello.", "Hey.", None));
        assert_eq!(second.id, "u2");
        assert_eq!(report.format_counts.unlabeled, 2);
    }

    #[test]
    fn reads_raw_hh_rlhf_transcripts() {
        let row = serde_json::json!({
            "chosen": "\n\nHuman: Can you help?\n\nAssistant: Sure.\n\nHuman: Thanks!\n\nAssistant: You're welcome.",
            "rejected": "\n\nHuman: Can you help?\n\nAssistant: Sure.\n\nHuman: Thanks!\n\nAssistant: Whatever.",
        });
        let report = read(&row.to_string());
        let pair = &report.pairs[0];
        assert_eq!(pair.id, "x:1");
        assert_eq!(
            pair.prompt,
            [Message::user("Can you help?"), Message::assistant("Sure."), Message::user("Thanks!")]
        );
        assert_eq!((pair.a.as_str(), pair.b.as_str(), pair.gold), ("You're welcome.", "Whatever.", Some(Pref::A)));
        assert_eq!(report.format_counts.hh_rlhf, 1);
    }

    #[test]
    fn hh_rlhf_prompts_must_match() {
        let row = serde_json::json!({
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello.",
            "rejected": "\n\nHuman: Hi!\n\nAssistant: Hey.",
        });
        assert_eq!(
            error(&row.to_string()),
            "data/x.jsonl:1: fields \"chosen\" and \"rejected\": the conversations before the final Assistant turn differ"
        );
        let row = serde_json::json!({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "Hey."});
        assert_eq!(
            error(&row.to_string()),
            "data/x.jsonl:1: field \"rejected\": not an HH-RLHF transcript: no \"\\n\\nHuman: \" or \"\\n\\nAssistant: \" turn markers"
        );
    }

    #[test]
    fn reads_reward_bench_rows() {
        let report = read(&lines(&[
            r#"{"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "Step 1...", "subset": "refusals-dangerous", "id": "rb-7"}"#,
            r#"{"prompt": "Hi", "chosen": "Hello.", "rejected": "No."}"#,
        ]));
        let [first, second] = &report.pairs[..] else { panic!("{:?}", report.pairs) };
        assert_eq!(first.id, "rb-7");
        assert_eq!(first.prompt, [Message::user("How do I pick a lock?")]);
        assert_eq!(first.subset.as_deref(), Some("refusals-dangerous"));
        assert_eq!(first.gold, Some(Pref::A));
        assert_eq!((second.id.as_str(), second.subset.as_deref()), ("x:2", None));
        assert_eq!(report.format_counts.reward_bench, 2);
    }

    #[test]
    fn integer_ids_read_as_their_digits() {
        // RewardBench's `id` column is int64.
        let report = read(&lines(&[
            r#"{"prompt": "Hi", "chosen": "Hello.", "rejected": "No.", "subset": "xstest", "id": 30}"#,
            r#"{"prompt": "Hi", "chosen": "Hello.", "rejected": "No.", "id": -4}"#,
        ]));
        let ids: Vec<&str> = report.pairs.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["30", "-4"]);
        // 30 and "30" are one id.
        let text = lines(&[
            r#"{"prompt": "Hi", "chosen": "a", "rejected": "b", "id": 30}"#,
            r#"{"prompt": "Hi", "chosen": "a", "rejected": "b", "id": "30"}"#,
        ]);
        assert_eq!(error(&text), "data/x.jsonl:2: duplicate id \"30\" (first used on line 1)");
    }

    #[test]
    fn multi_response_rows_become_all_pairs_in_order() {
        let report = read(&lines(&[
            r#"{"id": "m", "prompt": "Q", "responses": ["r0", "r1", "r2", "r3"]}"#,
            r#"{"prompt": [{"role": "user", "content": "Q2"}], "responses": ["s0", "s1"]}"#,
        ]));
        let got: Vec<(&str, &str, &str)> =
            report.pairs.iter().map(|p| (p.id.as_str(), p.a.as_str(), p.b.as_str())).collect();
        assert_eq!(
            got,
            [
                ("m/0-1", "r0", "r1"),
                ("m/0-2", "r0", "r2"),
                ("m/0-3", "r0", "r3"),
                ("m/1-2", "r1", "r2"),
                ("m/1-3", "r1", "r3"),
                ("m/2-3", "r2", "r3"),
                ("x:2/0-1", "s0", "s1"),
            ]
        );
        assert!(report.pairs.iter().all(|p| p.gold.is_none()));
        assert_eq!(report.format_counts.multi_response, 2);
        assert_eq!(report.format_counts.total(), 2);
    }

    #[test]
    fn detects_the_format_of_each_line() {
        let report = read(&lines(&[
            PAIRS_ROW,
            r#"{"prompt": "Hi", "response_a": "a", "response_b": "b"}"#,
            r#"{"chosen": "\n\nHuman: Hi\n\nAssistant: a", "rejected": "\n\nHuman: Hi\n\nAssistant: b"}"#,
            r#"{"prompt": "Hi", "chosen": "a", "rejected": "b"}"#,
            r#"{"prompt": "Hi", "responses": ["a", "b", "c"]}"#,
        ]));
        let counts = report.format_counts;
        assert_eq!(
            Format::ALL.map(|f| counts.get(f)),
            [5, 1, 1, 1, 1, 1],
            "auto, pairs, unlabeled, hh-rlhf, reward-bench, multi-response"
        );
        assert_eq!(counts.to_string(), "pairs: 1, unlabeled: 1, hh-rlhf: 1, reward-bench: 1, multi-response: 1");
        assert_eq!(report.pairs.len(), 7);
    }

    #[test]
    fn a_forced_format_applies_to_every_line() {
        // This row has the fields of two formats; detection picks multi-response.
        let row = r#"{"prompt": "Hi", "response_a": "a", "response_b": "b", "responses": ["x", "y"]}"#;
        assert_eq!(read(row).pairs[0].id, "x:1/0-1");
        let forced = read_with(row, Format::Unlabeled, false).unwrap();
        assert_eq!(forced.pairs[0].id, "x:1");
        assert_eq!(forced.format_counts.unlabeled, 1);
    }

    #[test]
    fn a_forced_format_that_does_not_fit_says_what_the_line_looks_like() {
        let reward_bench = r#"{"prompt": "Hi", "chosen": "a", "rejected": "b"}"#;
        let err = read_with(&lines(&[PAIRS_ROW, reward_bench]), Format::Pairs, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data/x.jsonl:2: does not fit the forced format pairs (it looks like reward-bench): field \"prompt\": expected a list of messages, found a string"
        );
        let err = read_with(PAIRS_ROW, Format::HhRlhf, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data/x.jsonl:1: does not fit the forced format hh-rlhf (it looks like pairs): field \"chosen\": not an HH-RLHF transcript: \
             no \"\\n\\nHuman: \" or \"\\n\\nAssistant: \" turn markers"
        );
        // A line that fits no format gets the plain field error.
        let err = read_with(r#"{"prompt": "Hi"}"#, Format::Unlabeled, false).unwrap_err();
        assert_eq!(err.to_string(), "data/x.jsonl:1: missing field \"response_a\"");
    }

    #[test]
    fn every_error_names_file_line_and_field() {
        let cases = [
            (
                r#"{"id": "a", "prompt": [{"role": "user", "content": "q"}], "chosen": 5, "rejected": "r"}"#,
                "field \"chosen\": expected a string, found a number",
            ),
            (
                r#"{"id": "a", "prompt": [{"role": "user", "content": "q"}], "chosen": "c"}"#,
                "missing field \"rejected\"",
            ),
            (
                r#"{"id": "a", "prompt": [{"role": "user", "content": "q"}], "chosen": " ", "rejected": "r"}"#,
                "field \"chosen\": must not be empty",
            ),
            (
                r#"{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "bot", "content": "b"}], "chosen": "c", "rejected": "r"}"#,
                "unknown role \"bot\" in prompt[2].role (expected \"system\", \"user\" or \"assistant\")",
            ),
            (
                r#"{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "chosen": "c", "rejected": "r"}"#,
                "field \"prompt\": the prompt must end with a user message, but its last message has role \"assistant\"",
            ),
            (
                r#"{"prompt": [], "chosen": "c", "rejected": "r"}"#,
                "field \"prompt\": the prompt must end with a user message, but it has no messages",
            ),
            (r#"{"prompt": "", "chosen": "c", "rejected": "r"}"#, "field \"prompt\": must not be empty"),
            (r#"{"prompt": "q", "response_a": "a", "response_b": ""}"#, "field \"response_b\": must not be empty"),
            (
                r#"{"id": 7.5, "prompt": "q", "chosen": "c", "rejected": "r"}"#,
                "field \"id\": expected a string or an integer, found a number",
            ),
            (
                r#"{"prompt": "q", "chosen": "c", "rejected": "r", "subset": ["s"]}"#,
                "field \"subset\": expected a string, found a list",
            ),
            (
                r#"{"prompt": "q", "answer": "a"}"#,
                "cannot tell the format from the fields present (\"answer\", \"prompt\")",
            ),
            (r#"["prompt", "chosen"]"#, "expected a JSON object, found a list"),
            (r#"{"prompt": "q", "chosen": "c",}"#, "not valid JSON: trailing comma at column 31"),
        ];
        for (row, expected) in cases {
            // Put the bad row on line 3, after a valid row and a blank line.
            let text = lines(&[PAIRS_ROW, "", row]);
            let message = error(&text);
            assert!(message.starts_with(&format!("data/x.jsonl:3: {expected}")), "{message}\n  expected: {expected}");
        }
    }

    #[test]
    fn invalid_utf8_is_a_line_error() {
        let mut bytes = lines(&[PAIRS_ROW]).into_bytes();
        bytes.extend_from_slice(b"{\"prompt\": \"\xff\"}\n");
        let err = read_pairs_from(&bytes[..], FILE, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "data/x.jsonl:2: not valid UTF-8");
        assert_eq!(err.line(), Some(2));
    }

    #[test]
    fn blank_lines_crlf_and_a_leading_bom_are_fine() {
        let text = format!(
            "\u{feff}{PAIRS_ROW}\r\n\r\n   \n{}\r\n",
            r#"{"prompt": "Hi", "response_a": "a", "response_b": "b"}"#
        );
        let report = read(&text);
        assert_eq!(report.pairs.len(), 2);
        assert_eq!(report.pairs[1].id, "x:4");
        assert!(read("").pairs.is_empty());
        assert_eq!(read("\n\n").format_counts.to_string(), "no rows");
    }

    #[test]
    fn skip_invalid_collects_bad_lines_and_keeps_going() {
        let text = lines(&[
            PAIRS_ROW,
            "oops",
            r#"{"prompt": "q", "response_a": "a", "response_b": "b"}"#,
            r#"{"prompt": "q", "response_a": "a"}"#,
            "",
            PAIRS_ROW,
            r#"{"prompt": "q", "responses": ["a", "b"]}"#,
        ]);
        let report = read_with(&text, Format::Auto, true).unwrap();
        assert_eq!(report.pairs.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1", "x:3", "x:7/0-1"]);
        let skipped: Vec<usize> = report.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, [2, 4, 6]);
        assert!(matches!(report.skipped[0].reason, LineError::Json(_)));
        assert_eq!(report.skipped[1].to_string(), "data/x.jsonl:4: missing field \"response_b\"");
        assert_eq!(report.skipped[2].reason, LineError::DuplicateId { id: "p1".into(), first_line: 1 });
        assert_eq!(report.format_counts.total(), 3);

        // Without skip_invalid the first bad line is the error.
        let err = read_with(&text, Format::Auto, false).unwrap_err();
        assert!(err.to_string().starts_with("data/x.jsonl:2: not valid JSON: expected value at column 1"), "{err}");
    }

    #[test]
    fn skipping_every_line_is_an_error() {
        let text = lines(&[r#"{"prompt": "q"}"#, "", r#"{"prompt": 1, "chosen": "a", "rejected": "b"}"#]);
        let err = read_with(&text, Format::Auto, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data/x.jsonl: no valid row: --skip-invalid skipped all 2 non-blank lines; the first, line 1: cannot \
             tell the format from the fields present (\"prompt\"); expected \"chosen\" and \"rejected\", \
             \"response_a\" and \"response_b\", or \"responses\" (fix the rows, or check --format)"
        );
        assert_eq!(err.line(), Some(1));
        // One valid line is enough, and an empty file is not "all skipped".
        assert_eq!(read_with(&lines(&[PAIRS_ROW, "{"]), Format::Auto, true).unwrap().pairs.len(), 1);
        assert!(read_with("", Format::Auto, true).unwrap().pairs.is_empty());
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        let text = lines(&[PAIRS_ROW, r#"{"id": "q", "prompt": "Hi", "chosen": "a", "rejected": "b"}"#, PAIRS_ROW]);
        assert_eq!(error(&text), "data/x.jsonl:3: duplicate id \"p1\" (first used on line 1)");
        // Generated ids take part too: "m/0-1" from line 1 clashes with line 2's id.
        let text = lines(&[
            r#"{"id": "m", "prompt": "Hi", "responses": ["a", "b"]}"#,
            r#"{"id": "m/0-1", "prompt": "Hi", "chosen": "a", "rejected": "b"}"#,
        ]);
        assert_eq!(error(&text), "data/x.jsonl:2: duplicate id \"m/0-1\" (first used on line 1)");
    }

    #[test]
    fn read_pairs_opens_files_and_names_them_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.jsonl");
        std::fs::write(&path, lines(&[r#"{"prompt": "Hi", "response_a": "a", "response_b": "b"}"#])).unwrap();
        let report = read_pairs(&path, &ReadOptions::default()).unwrap();
        assert_eq!(report.pairs[0].id, "mine:1");
        assert_eq!(report.source, path.display().to_string());

        let missing = dir.path().join("absent.jsonl");
        let err = read_pairs(&missing, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: cannot open the file", missing.display()));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn reads_the_shared_hh_harmless_dev_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hh-harmless-dev.jsonl");
        if !path.exists() {
            eprintln!("skipping: {} is absent", path.display());
            return;
        }
        let report = read_pairs(&path, &ReadOptions::default()).unwrap();
        assert_eq!(report.pairs.len(), 588);
        assert_eq!(report.format_counts.pairs, 588);
        assert!(report.pairs.iter().all(|p| p.gold == Some(Pref::A) && p.id.starts_with("hh-harmless-")));

        // Written back as raw transcripts, the pairs read the same as HH-RLHF rows.
        let transcript = |prompt: &[Message], response: &str| {
            let mut text = String::new();
            for m in prompt {
                let speaker = if m.role == Role::User { "Human" } else { "Assistant" };
                text += &format!("\n\n{speaker}: {}", m.content);
            }
            text + "\n\nAssistant: " + response
        };
        let raw: String = report
            .pairs
            .iter()
            .map(|p| {
                let row = serde_json::json!({
                    "id": p.id, "chosen": transcript(&p.prompt, &p.a), "rejected": transcript(&p.prompt, &p.b),
                });
                row.to_string() + "\n"
            })
            .collect();
        let again = read_with(&raw, Format::Auto, false).unwrap();
        assert_eq!(again.format_counts.hh_rlhf, 588);
        assert_eq!(again.pairs, report.pairs);
    }

    #[test]
    fn reads_the_demo_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/demo.jsonl");
        let report = read_pairs(&path, &ReadOptions { format: Format::Pairs, skip_invalid: false }).unwrap();
        let ids: Vec<String> = (1..=48).map(|i| format!("demo-{i}")).collect();
        assert_eq!(report.pairs.iter().map(|p| &p.id).collect::<Vec<_>>(), ids.iter().collect::<Vec<_>>());
        assert!(report.pairs.iter().any(|p| p.prompt.len() > 1), "some demo pairs are multi-turn");
        assert!(report.pairs.iter().all(|p| p.a != p.b));
    }
}
