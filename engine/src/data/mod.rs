//! Preference data: the pairs a job scores, and the samples inside them.
//!
//! A [`Pair`] is one prompt (a conversation ending with a user message) and two
//! candidate responses `a` and `b`, optionally with a gold preference. Rules never
//! see pairs; they score [`Sample`]s, a prompt plus one response. The same sample
//! often occurs in several pairs (a multi-response prompt yields every pair of its
//! responses), so [`unique_samples`] collects each one once, keyed by its
//! [`SampleHash`].
//!
//! Pairs are read from JSON Lines files in one of five [`Format`]s, detected per
//! line or forced for a whole file; see [`read_pairs`] and the [`Format`] docs for
//! the fields of each.
//!
//! ```
//! use engine::data::{read_pairs_from, unique_samples, Pref, ReadOptions};
//!
//! let jsonl = r#"
//! {"id": "p1", "prompt": [{"role": "user", "content": "Hi!"}], "chosen": "Hello!", "rejected": "Go away."}
//! {"prompt": "Hi!", "responses": ["Hello!", "Hey.", "Go away."]}
//! "#;
//! let report = read_pairs_from(jsonl.as_bytes(), "demo.jsonl", &ReadOptions::default()).unwrap();
//!
//! // One labeled pair, then all three pairs of the multi-response row (no id, so
//! // the id comes from the file stem and line number).
//! let ids: Vec<_> = report.pairs.iter().map(|p| p.id.as_str()).collect();
//! assert_eq!(ids, ["p1", "demo:3/0-1", "demo:3/0-2", "demo:3/1-2"]);
//! assert_eq!(report.pairs[0].gold, Some(Pref::A));
//!
//! // Four pairs, but only three distinct samples: "Hello!" and "Go away." answer
//! // the same prompt in both rows, so they are scored once.
//! let index = unique_samples(&report.pairs);
//! assert_eq!(index.samples.len(), 3);
//! assert_eq!(index.pair_samples, [(0, 1), (0, 2), (0, 1), (2, 1)]);
//! ```

mod error;
mod formats;
mod hash;
mod json;
pub use json::deserialize_id;
pub(crate) use json::kind as json_kind;
mod read;
mod samples;
mod transcript;

use serde::{Deserialize, Serialize};

pub use error::{DataError, LineError};
pub use formats::{Format, UnknownFormatName};
pub use hash::{ParseSampleHashError, SampleHash, sha256_files};
pub use read::{FormatCounts, ReadOptions, ReadReport, Skipped, read_pairs, read_pairs_from, warn_skipped};
pub use samples::{SampleIndex, unique_samples};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person talking to the assistant.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The lowercase name used in files and in [`SampleHash`]es.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parses a lowercase role name (`"system"`, `"user"`, `"assistant"`).
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// A message from `role` with the given text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new(Role::Assistant, content)
    }
}

/// Which response of a pair is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pref {
    A,
    B,
}

impl Pref {
    /// The other response.
    pub fn other(self) -> Pref {
        match self {
            Pref::A => Pref::B,
            Pref::B => Pref::A,
        }
    }
}

/// A prompt with two candidate responses, the unit that gets labeled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Unique within a file; taken from the row or made up as `<file stem>:<line>`.
    pub id: String,
    /// The conversation so far; never empty, always ends with a user message.
    pub prompt: Vec<Message>,
    /// The first response (the `chosen` one in labeled formats).
    pub a: String,
    /// The second response (the `rejected` one in labeled formats).
    pub b: String,
    /// The human label, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<Pref>,
    /// The benchmark subset the pair belongs to (RewardBench's `subset`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

impl Pair {
    /// The response on side `which`.
    pub fn response(&self, which: Pref) -> &str {
        match which {
            Pref::A => &self.a,
            Pref::B => &self.b,
        }
    }

    /// The sample made of the prompt and the response on side `which`.
    pub fn sample(&self, which: Pref) -> Sample {
        Sample { prompt: self.prompt.clone(), response: self.response(which).to_owned() }
    }
}

/// A prompt and one response: what a rule scores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sample {
    pub prompt: Vec<Message>,
    pub response: String,
}

impl Sample {
    /// The content hash that identifies this sample in score files; see [`SampleHash`].
    pub fn hash(&self) -> SampleHash {
        SampleHash::of(&self.prompt, &self.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_serialize_lowercase() {
        let json = serde_json::to_string(&Message::user("hi")).unwrap();
        assert_eq!(json, r#"{"role":"user","content":"hi"}"#);
        for role in [Role::System, Role::User, Role::Assistant] {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
            assert_eq!(Role::from_name(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_name("User"), None);
    }

    #[test]
    fn pair_sides() {
        let pair = Pair {
            id: "x".into(),
            prompt: vec![Message::user("q")],
            a: "first".into(),
            b: "second".into(),
            gold: Some(Pref::A),
            subset: None,
        };
        assert_eq!(pair.response(Pref::B), "second");
        assert_eq!(pair.sample(Pref::A).response, "first");
        assert_eq!(Pref::A.other(), Pref::B);
        let json = serde_json::to_string(&pair).unwrap();
        assert!(json.contains(r#""gold":"a""#) && !json.contains("subset"), "{json}");
    }
}
