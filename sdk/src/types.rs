//! The author-facing types of the SDK. They mirror the WIT records but are plain Rust
//! values, so rules can be built and unit-tested without any WebAssembly.

use std::collections::BTreeMap;
use std::fmt;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One turn of the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// What a rule judges: the conversation (ending with the user's turn) and one response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub prompt: Vec<Message>,
    pub response: String,
}

impl Sample {
    /// A one-question conversation, handy in tests.
    pub fn single_turn(user: &str, response: &str) -> Sample {
        Sample { prompt: vec![Message { role: Role::User, content: user.to_string() }], response: response.to_string() }
    }

    /// The last message the user wrote, or "" when there is none.
    pub fn last_user_message(&self) -> &str {
        self.prompt.iter().rev().find(|m| m.role == Role::User).map_or("", |m| m.content.as_str())
    }

    /// All prompt messages joined by newlines (every role).
    pub fn prompt_text(&self) -> String {
        let parts: Vec<&str> = self.prompt.iter().map(|m| m.content.as_str()).collect();
        parts.join("\n")
    }
}

/// A rule's judgement of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// 1.0 = fully follows the rule, -1.0 = clearly violates it.
    pub score: f32,
    /// How much the rule applies: 0.0 = not at all, 1.0 = squarely.
    pub relevance: f32,
    /// A short reason, shown in audit records.
    pub rationale: Option<String>,
}

impl Verdict {
    /// A verdict with the given score and relevance (both clamped into their ranges).
    pub fn new(score: f32, relevance: f32) -> Verdict {
        Verdict { score: score.clamp(-1.0, 1.0), relevance: relevance.clamp(0.0, 1.0), rationale: None }
    }

    /// The response follows the rule (score 1) with this relevance.
    pub fn follows(relevance: f32) -> Verdict {
        Verdict::new(1.0, relevance)
    }

    /// The response violates the rule (score -1) with this relevance.
    pub fn violates(relevance: f32) -> Verdict {
        Verdict::new(-1.0, relevance)
    }

    /// The rule does not apply to this sample (score 0, relevance 0).
    pub fn not_applicable() -> Verdict {
        Verdict::new(0.0, 0.0)
    }

    /// Attaches a short rationale.
    pub fn because(mut self, rationale: impl Into<String>) -> Verdict {
        self.rationale = Some(rationale.into());
        self
    }
}

/// Metadata about a rule, shown by `engine rules list` and written to audit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub description: String,
    pub version: String,
    pub categories: Vec<String>,
}

impl RuleInfo {
    /// Starts the metadata of a rule with its stable id and a title; version "0.1.0".
    pub fn new(id: &str, title: &str) -> RuleInfo {
        RuleInfo {
            id: id.to_string(),
            title: title.to_string(),
            description: String::new(),
            version: "0.1.0".to_string(),
            categories: Vec::new(),
        }
    }

    pub fn describe(mut self, description: &str) -> RuleInfo {
        self.description = description.to_string();
        self
    }

    pub fn version(mut self, version: &str) -> RuleInfo {
        self.version = version.to_string();
        self
    }

    pub fn categories(mut self, categories: &[&str]) -> RuleInfo {
        self.categories = categories.iter().map(|c| c.to_string()).collect();
        self
    }
}

/// Why a rule could not give a verdict. `?` converts any standard error into
/// [`RuleError::Internal`] and a [`crate::JudgeError`] into [`RuleError::JudgeFailed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    UnknownRule(String),
    InvalidConfig(String),
    JudgeFailed(String),
    Internal(String),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::UnknownRule(id) => write!(f, "unknown rule id {id:?}"),
            RuleError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            RuleError::JudgeFailed(m) => write!(f, "judge failed: {m}"),
            RuleError::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl<E: std::error::Error> From<E> for RuleError {
    fn from(error: E) -> RuleError {
        RuleError::Internal(error.to_string())
    }
}

/// The pack's `config` table from rules.toml, as strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Config {
        Config { values: pairs.into_iter().collect() }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Parses a value, naming the key in the error.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|e| format!("config key `{key}` = {raw:?}: {e}")),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A safety rule. Implement `info` and `evaluate`; override `configure` to read settings.
pub trait Rule {
    /// The rule's metadata. `id` must be unique across every pack of a job.
    fn info(&self) -> RuleInfo;

    /// Reads the pack's config from rules.toml. Called once per instance before any
    /// `evaluate`. The default accepts anything.
    fn configure(&mut self, config: &Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Judges one sample. Return [`Verdict::not_applicable`] when the rule does not apply.
    fn evaluate(&self, sample: &Sample) -> Result<Verdict, RuleError>;
}
