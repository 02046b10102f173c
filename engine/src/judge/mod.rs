//! The judge: a model that answers yes/no questions about a sample.
//!
//! Rule plugins reach it through the `judge` host import. This module holds the
//! interface the plugin host calls; model backends plug in behind it.

use std::fmt;

use crate::data::Sample;

/// The judge's answer to a yes/no question at the answer position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    pub p_yes: f32,
    pub p_no: f32,
}

/// Why the judge could not answer. Its text reaches the plugin unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JudgeError(pub String);

impl fmt::Display for JudgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JudgeError {}

/// A judge model. Implementations must be usable from several scoring threads at once.
pub trait Judge: Send + Sync {
    /// A stable identifier of the model and its settings (goes into score keys).
    fn id(&self) -> &str;

    /// Asks `question` about `sample` (the conversation and the response).
    fn ask(&self, sample: &Sample, question: &str) -> Result<Judgement, JudgeError>;
}
