//! Errors of the data readers.
//!
//! [`LineError`] says what is wrong with one line, naming the field; [`DataError`]
//! adds the file and line number, so every message reads like
//! `data/x.jsonl:17: field "chosen": expected a string, found a number`.

use std::fmt;
use std::io;

use thiserror::Error;

use super::{Format, Role};

/// Reading a data file failed.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened.
    #[error("{file}: cannot open the file")]
    Open {
        file: String,
        #[source]
        source: io::Error,
    },
    /// Reading failed part-way through the file.
    #[error("{file}:{line}: cannot read the line")]
    Read {
        file: String,
        line: usize,
        #[source]
        source: io::Error,
    },
    /// A line is not a valid row (and `skip_invalid` was off).
    #[error("{file}:{line}: {error}")]
    Line { file: String, line: usize, error: LineError },
    /// `skip_invalid` was on and no line was valid: `skipped` lines, the first at `line`.
    #[error(
        "{file}: no valid row: --skip-invalid skipped all {skipped} non-blank lines; the first, line {line}: {reason} \
         (fix the rows, or check --format)"
    )]
    AllSkipped { file: String, skipped: usize, line: usize, reason: LineError },
}

impl DataError {
    /// The 1-based line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            DataError::Open { .. } => None,
            DataError::Read { line, .. } | DataError::Line { line, .. } | DataError::AllSkipped { line, .. } => {
                Some(*line)
            }
        }
    }
}

/// What is wrong with one line. Field paths look like `chosen`, `responses[1]` or
/// `prompt[2].role`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("not valid UTF-8")]
    NotUtf8,

    /// The text of the parser's message, with its position inside the line.
    #[error("not valid JSON: {0}")]
    Json(String),

    #[error("expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },

    #[error("cannot tell the format from the fields present ({}); expected \"chosen\" and \"rejected\", \"response_a\" and \"response_b\", or \"responses\"", FieldList(.fields))]
    UnknownFormat { fields: Vec<String> },

    #[error("missing field \"{field}\"")]
    Missing { field: String },

    #[error("field \"{field}\": expected {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: &'static str },

    #[error("unknown role \"{role}\" in {field} (expected \"system\", \"user\" or \"assistant\")")]
    UnknownRole { field: String, role: String },

    #[error("field \"{field}\": must not be empty")]
    Empty { field: String },

    /// `last` is the role of the final message, or `None` for an empty prompt.
    #[error("field \"{field}\": the prompt must end with a user message, but {}", PromptEnd(.last))]
    PromptEnd { field: String, last: Option<Role> },

    #[error("field \"{field}\": not an HH-RLHF transcript: {reason}")]
    Transcript { field: String, reason: String },

    #[error("fields \"chosen\" and \"rejected\": the conversations before the final Assistant turn differ")]
    PromptsDiffer,

    #[error("field \"responses\": expected at least 2 responses, found {found}")]
    TooFewResponses { found: usize },

    #[error("duplicate id \"{id}\" (first used on line {first_line})")]
    DuplicateId { id: String, first_line: usize },

    /// The format was forced and the line did not fit it; `detected` is what the
    /// line looks like instead.
    #[error("does not fit the forced format {forced} (it looks like {detected}): {error}")]
    WrongFormat { forced: Format, detected: Format, error: Box<LineError> },
}

/// Shows field names as `"a", "b"`, or `none` for an empty object.
struct FieldList<'a>(&'a [String]);

impl fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, field) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{field}\"")?;
        }
        Ok(())
    }
}

struct PromptEnd<'a>(&'a Option<Role>);

impl fmt::Display for PromptEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            None => f.write_str("it has no messages"),
            Some(role) => write!(f, "its last message has role \"{role}\""),
        }
    }
}
