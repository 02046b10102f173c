//! The judge: a model that answers yes/no questions about a sample.
//!
//! Rule plugins reach it through the `judge` host import. This module holds the
//! interface the plugin host calls ([`Judge`]) and the local backend, [`CandleJudge`]: a
//! chat model (llama family including SmolLM2, or qwen2; GGUF or safetensors) run with
//! candle, which
//!
//! - tokenizes with the model's `tokenizer.json`, or a byte-level BPE rebuilt from the GGUF
//!   metadata ([`tokenizer`]);
//! - lays the prompt out sample first, question last, in the model's chat template
//!   ([`template`]), and keeps the KV cache of the sample part so that each question is a
//!   short continuation;
//! - reads P(yes) and P(no) at the answer position ([`answer`] says exactly which tokens
//!   count).
//!
//! The score of the paper is P(yes) − P(no) for a question such as "Does the final response
//! follow this rule: ...?". Relevance, which the paper's selection formula needs, comes from a
//! second question through the same call ("Does this rule apply to this conversation?",
//! relevance = P(yes), or renormalised P(yes)): with the cached prefix it costs one more short
//! continuation, and it keeps the judge a plain yes/no oracle. Which questions a rule asks is
//! the rule pack's choice.
//!
//! **How good is it, and which layout.** The embedded SmolLM2-135M is a weak judge: it leans
//! to "No" (P(yes) − P(no) < 0 on most prompts), so its scores are used relatively (within a
//! rule, response A against response B). [`probe`] measures the AUC of P(yes) − P(no) for
//! responses that follow a rule against responses that violate it on our labelled set
//! `data/judge-probe.jsonl` (48 items, 12 rules, balanced), for both prompt layouts
//! ([`Layout`]); `engine rules judge-probe` printed:
//!
//! | layout | AUC | AUC within rule | sign accuracy |
//! |---|---:|---:|---:|
//! | sample-first | 0.622 | 0.688 | 0.500 |
//! | rule-first (the paper's order) | 0.686 | 0.688 | 0.604 |
//!
//! The default is **sample-first**. Within a rule, which is how the scores are used, both
//! layouts rank equally (0.688); pooled over all rules rule-first is 0.06 higher, within the
//! noise of 24 × 24 pairs. Rule-first cannot share anything between the questions about one
//! sample (the question comes before the sample, so every rule is a full prompt), while
//! sample-first computes the sample once and each rule is a ~40-token continuation: several
//! times cheaper at the same within-rule ranking. Set `layout = "rule-first"` in `[judge]`
//! to trade the speed for the paper's order.

pub mod answer;
mod attention;
mod cache;
mod candle;
mod error;
pub mod model;
pub mod probe;
mod quantized;
pub mod remote;
pub mod template;
#[cfg(test)]
mod testkit;
pub mod tokenizer;

use std::fmt;

use crate::data::Sample;

pub use answer::{AnswerIds, AnswerTokens};
pub use candle::{
    AUTO_F32_MAX_PARAMS, CandleJudge, CandleJudgeOptions, JudgeDevice, ModelInfo, Precision, PromptTokens,
};
pub(crate) use candle::{Checkpoint, load_checkpoint};
pub use error::JudgeLoadError;
pub use model::{Architecture, WeightPrecision};
pub use remote::{OpenAiJudge, OpenAiJudgeOptions, PromptFormat};
pub use template::{ChatTemplate, JudgePrompt, Layout};
pub use tokenizer::{JudgeTokenizer, TokenizerSource};

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

/// What a judge has done so far (all zero for judges that do not count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JudgeStats {
    /// Questions asked.
    pub questions: u64,
    /// Sample prefixes computed (the rest of the questions continued a cached one).
    pub prefills: u64,
    /// Samples cut from the left of their conversation to fit the context.
    pub truncated_samples: u64,
    /// Tokens cut from those samples, in all.
    pub truncated_tokens: u64,
    /// Questions that failed.
    pub failures: u64,
}

impl fmt::Display for JudgeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} questions, {} sample prefixes computed", self.questions, self.prefills)?;
        if self.truncated_samples > 0 {
            write!(
                f,
                "; warning: {} samples were longer than the judge's context and lost {} tokens from the start of \
                 their conversation",
                self.truncated_samples, self.truncated_tokens
            )?;
        }
        if self.failures > 0 {
            write!(f, "; {} questions failed", self.failures)?;
        }
        Ok(())
    }
}

/// A judge model. Implementations must be usable from several scoring threads at once.
pub trait Judge: Send + Sync {
    /// A stable identifier of the model and its settings (goes into score keys).
    fn id(&self) -> &str;

    /// Asks `question` about `sample` (the conversation and the response).
    fn ask(&self, sample: &Sample, question: &str) -> Result<Judgement, JudgeError>;

    /// Asks several questions about one sample; one result per question, in order. A
    /// backend may answer them together (the candle judge runs them in one forward pass).
    fn ask_many(&self, sample: &Sample, questions: &[&str]) -> Vec<Result<Judgement, JudgeError>> {
        questions.iter().map(|q| self.ask(sample, q)).collect()
    }

    /// Whether [`ask_many`](Self::ask_many) is cheaper than asking one by one. The plugin
    /// runtime then collects a pack's questions about a sample and asks them together (see
    /// `Plugin::evaluate_many`); otherwise that dry run would be wasted work.
    fn batches(&self) -> bool {
        false
    }

    /// Counters of what the judge has done (for the end-of-run summary).
    fn stats(&self) -> JudgeStats {
        JudgeStats::default()
    }
}
