//! The five row formats, their detection, and turning one row into pairs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{self, Row};
use super::{LineError, Pair, Pref, transcript};

/// The layout of the rows in a JSON Lines file.
///
/// Every format may carry an optional `id`, a string or an integer kept as its decimal
/// digits (when absent, pairs get `<file stem>:<line>`), and an optional string
/// `subset`; other fields are ignored.
/// A prompt given as a list holds `{"role", "content"}` objects with role
/// `"system"`, `"user"` or `"assistant"` and must end with a user message; a prompt
/// given as a string is one user message. Responses and message contents must not
/// be empty or only whitespace.
///
/// With [`Format::Auto`] each line is classified by the first rule that matches:
///
/// 1. it has `responses`: [`Format::MultiResponse`];
/// 2. it has `response_a` or `response_b`: [`Format::Unlabeled`];
/// 3. it has `chosen` or `rejected` and
///    - no `prompt`: [`Format::HhRlhf`],
///    - a string `prompt`: [`Format::RewardBench`],
///    - any other `prompt`: [`Format::Pairs`];
/// 4. otherwise the line is an error.
///
/// On the command line the formats are named `auto`, `pairs`, `unlabeled`,
/// `hh-rlhf`, `reward-bench` and `multi-response` (see [`FromStr`] and [`Display`](fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect the format of each line from its fields.
    #[default]
    Auto,
    /// Our schema: `{id, prompt: [message, ...], chosen, rejected}`; `a` is `chosen`,
    /// `b` is `rejected`, and gold prefers `a`.
    Pairs,
    /// `{id?, prompt: string | [message, ...], response_a, response_b}`, no gold label.
    Unlabeled,
    /// Raw HH-RLHF: `{chosen, rejected}`, each a whole `"\n\nHuman: ...\n\nAssistant: ..."`
    /// transcript. The conversations before the final Assistant turns must be equal;
    /// the final turns are `a` (chosen) and `b` (rejected), and gold prefers `a`.
    HhRlhf,
    /// RewardBench: `{prompt: string, chosen, rejected, subset?, id?}`; the prompt is
    /// one user message, and gold prefers `a` (chosen).
    RewardBench,
    /// `{id?, prompt: string | [message, ...], responses: [string, ...]}` with at
    /// least two responses: one unlabeled pair for every `i < j`, in order, with id
    /// `<id>/<i>-<j>` (0-based indices into `responses`).
    MultiResponse,
}

impl Format {
    /// Every format, in the order of the command-line help.
    pub const ALL: [Format; 6] =
        [Format::Auto, Format::Pairs, Format::Unlabeled, Format::HhRlhf, Format::RewardBench, Format::MultiResponse];

    /// The kebab-case name used on the command line and in config files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Pairs => "pairs",
            Format::Unlabeled => "unlabeled",
            Format::HhRlhf => "hh-rlhf",
            Format::RewardBench => "reward-bench",
            Format::MultiResponse => "multi-response",
        }
    }

    /// Classifies one row by the fields present, as documented on [`Format`].
    pub(crate) fn detect(row: &Row) -> Result<Format, LineError> {
        let has = |name: &str| row.contains_key(name);
        if has("responses") {
            Ok(Format::MultiResponse)
        } else if has("response_a") || has("response_b") {
            Ok(Format::Unlabeled)
        } else if has("chosen") || has("rejected") {
            Ok(match row.get("prompt") {
                None => Format::HhRlhf,
                Some(Value::String(_)) => Format::RewardBench,
                Some(_) => Format::Pairs,
            })
        } else {
            let mut fields: Vec<String> = row.keys().cloned().collect();
            fields.sort();
            Err(LineError::UnknownFormat { fields })
        }
    }

    /// Turns one row in this format (or, for [`Format::Auto`], its detected
    /// format) into pairs. Rows without an `id` use `default_id`.
    pub(crate) fn parse_row(self, row: &Row, default_id: &str) -> Result<Vec<Pair>, LineError> {
        let id = json::optional_id(row)?.map_or_else(|| default_id.to_owned(), |id| id.into_owned());
        let subset = json::optional_string(row, "subset")?.map(str::to_owned);
        let labeled = |prompt, a, b| Pair { id: id.clone(), prompt, a, b, gold: Some(Pref::A), subset: subset.clone() };
        match self {
            Format::Auto => Format::detect(row)?.parse_row(row, default_id),
            Format::Pairs => {
                let prompt = json::prompt_list(row)?;
                Ok(vec![labeled(prompt, json::response(row, "chosen")?, json::response(row, "rejected")?)])
            }
            Format::RewardBench => {
                let prompt = json::prompt_text(row)?;
                Ok(vec![labeled(prompt, json::response(row, "chosen")?, json::response(row, "rejected")?)])
            }
            Format::HhRlhf => {
                let chosen = transcript::parse(json::string(row, "chosen")?, "chosen")?;
                let rejected = transcript::parse(json::string(row, "rejected")?, "rejected")?;
                if chosen.prompt != rejected.prompt {
                    return Err(LineError::PromptsDiffer);
                }
                Ok(vec![labeled(chosen.prompt, chosen.response, rejected.response)])
            }
            Format::Unlabeled => {
                let prompt = json::prompt_any(row)?;
                let a = json::response(row, "response_a")?;
                let b = json::response(row, "response_b")?;
                Ok(vec![Pair { id, prompt, a, b, gold: None, subset }])
            }
            Format::MultiResponse => {
                let prompt = json::prompt_any(row)?;
                let responses = multi_responses(row)?;
                let mut pairs = Vec::with_capacity(responses.len() * (responses.len() - 1) / 2);
                for (i, a) in responses.iter().enumerate() {
                    for (j, b) in responses.iter().enumerate().skip(i + 1) {
                        pairs.push(Pair {
                            id: format!("{id}/{i}-{j}"),
                            prompt: prompt.clone(),
                            a: a.clone(),
                            b: b.clone(),
                            gold: None,
                            subset: subset.clone(),
                        });
                    }
                }
                Ok(pairs)
            }
        }
    }
}

/// The `responses` field: at least two non-blank strings.
fn multi_responses(row: &Row) -> Result<Vec<String>, LineError> {
    let value = json::field(row, "responses")?;
    let items = value.as_array().ok_or_else(|| LineError::WrongType {
        field: "responses".to_owned(),
        expected: "a list of strings",
        found: json::kind(value),
    })?;
    let responses = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("responses[{i}]");
            let text = item.as_str().ok_or_else(|| LineError::WrongType {
                field: field.clone(),
                expected: "a string",
                found: json::kind(item),
            })?;
            json::non_blank(text, &field)?;
            Ok(text.to_owned())
        })
        .collect::<Result<Vec<_>, LineError>>()?;
    if responses.len() < 2 {
        return Err(LineError::TooFewResponses { found: responses.len() });
    }
    Ok(responses)
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format \"{0}\" (expected one of: auto, pairs, unlabeled, hh-rlhf, reward-bench, multi-response)")]
pub struct UnknownFormatName(String);

impl FromStr for Format {
    type Err = UnknownFormatName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownFormatName(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(value: Value) -> Row {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn names_round_trip_through_fromstr_display_and_serde() {
        for format in Format::ALL {
            assert_eq!(format.to_string().parse::<Format>(), Ok(format));
            assert_eq!(serde_json::to_string(&format).unwrap(), format!("\"{format}\""));
        }
        assert_eq!("hh-rlhf".parse(), Ok(Format::HhRlhf));
        let err = "HH".parse::<Format>().unwrap_err().to_string();
        assert!(err.starts_with("unknown format \"HH\" (expected one of: auto, pairs,"), "{err}");
    }

    #[test]
    fn detection_follows_the_documented_order() {
        let cases = [
            (json!({"prompt": "p", "responses": [], "chosen": "c"}), Format::MultiResponse),
            (json!({"prompt": "p", "response_a": "a", "chosen": "c"}), Format::Unlabeled),
            (json!({"response_b": "b"}), Format::Unlabeled),
            (json!({"chosen": "c", "rejected": "r"}), Format::HhRlhf),
            (json!({"prompt": "p", "chosen": "c"}), Format::RewardBench),
            (json!({"prompt": [], "rejected": "r"}), Format::Pairs),
            (json!({"prompt": 3, "chosen": "c"}), Format::Pairs),
        ];
        for (value, expected) in cases {
            assert_eq!(Format::detect(&row(value.clone())), Ok(expected), "{value}");
        }
    }

    #[test]
    fn undetectable_rows_list_their_fields() {
        let err = Format::detect(&row(json!({"question": "q", "answer": "a"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot tell the format from the fields present (\"answer\", \"question\"); \
             expected \"chosen\" and \"rejected\", \"response_a\" and \"response_b\", or \"responses\""
        );
        let err = Format::detect(&row(json!({}))).unwrap_err();
        assert!(err.to_string().contains("fields present (none)"), "{err}");
    }

    #[test]
    fn multi_response_needs_two_non_blank_strings() {
        let parse = |value: Value| Format::MultiResponse.parse_row(&row(value), "f:1").unwrap_err().to_string();
        assert_eq!(
            parse(json!({"prompt": "p", "responses": ["x"]})),
            "field \"responses\": expected at least 2 responses, found 1"
        );
        assert_eq!(
            parse(json!({"prompt": "p", "responses": "x"})),
            "field \"responses\": expected a list of strings, found a string"
        );
        assert_eq!(
            parse(json!({"prompt": "p", "responses": ["x", 2]})),
            "field \"responses[1]\": expected a string, found a number"
        );
        assert_eq!(parse(json!({"prompt": "p", "responses": ["x", ""]})), "field \"responses[1]\": must not be empty");
    }
}
