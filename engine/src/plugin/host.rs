//! The per-store host state: what a plugin can reach through its imports.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bindings::v0_1::safety::rules as wit;
use super::limits::Limiter;
use crate::data::Sample;
use crate::judge::Judge;

/// The longest judge question accepted from a plugin, in bytes.
pub const MAX_QUESTION_BYTES: usize = 8 * 1024;
/// The longest single log line kept, in bytes (longer lines are cut).
pub const MAX_LOG_LINE_BYTES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A line a plugin wrote through the `log` import during one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Capabilities granted to a pack in rules.toml. Everything is denied by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// May ask the judge model questions (costs compute; a remote judge sees the sample).
    pub judge: bool,
}

/// How the `judge` import answers during a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JudgeMode {
    /// Asks the judge, or takes the answer from [`HostState::prefetched`].
    Live,
    /// The dry run of [`Plugin::evaluate_many`](super::Plugin::evaluate_many): notes each
    /// question and answers it with an even placeholder (P(yes) = P(no) = 0.5), so that the
    /// pack goes on to ask the questions that follow. Nothing from such a call is kept.
    Record,
}

/// Answers computed ahead of the calls that ask them, by question (for one sample).
pub(crate) type Prefetched = HashMap<String, Result<crate::judge::Judgement, String>>;

/// The placeholder answer of [`JudgeMode::Record`].
const PLACEHOLDER: crate::judge::Judgement = crate::judge::Judgement { p_yes: 0.5, p_no: 0.5 };

/// Store data for one plugin instance.
pub struct HostState {
    pub(crate) limiter: Limiter,
    grants: Grants,
    judge: Option<Arc<dyn Judge>>,
    /// The sample being evaluated, set for the duration of one `evaluate` call.
    pub(crate) sample: Option<Arc<Sample>>,
    pub(crate) logs: Vec<LogLine>,
    log_bytes: usize,
    max_log_bytes: usize,
    pub(crate) logs_dropped: usize,
    pub(crate) judge_calls: u32,
    pub(crate) mode: JudgeMode,
    /// Questions noted in [`JudgeMode::Record`] (at most `max_recorded` per call).
    pub(crate) recorded: Vec<String>,
    pub(crate) max_recorded: usize,
    /// Answers for the current sample, set for a batch of calls about it.
    pub(crate) prefetched: Option<Arc<Prefetched>>,
}

impl HostState {
    pub(crate) fn new(limiter: Limiter, grants: Grants, judge: Option<Arc<dyn Judge>>, max_log_bytes: usize) -> Self {
        HostState {
            limiter,
            grants,
            judge,
            sample: None,
            logs: Vec::new(),
            log_bytes: 0,
            max_log_bytes,
            logs_dropped: 0,
            judge_calls: 0,
            mode: JudgeMode::Live,
            recorded: Vec::new(),
            max_recorded: 0,
            prefetched: None,
        }
    }

    /// Clears per-call state before the next call.
    pub(crate) fn begin_call(&mut self, sample: Option<Arc<Sample>>) {
        self.sample = sample;
        self.logs.clear();
        self.log_bytes = 0;
        self.logs_dropped = 0;
        self.judge_calls = 0;
        self.recorded.clear();
    }

    /// Answers a judge question about the current sample, if granted and configured.
    fn answer(&mut self, question: &str) -> Result<crate::judge::Judgement, String> {
        if !self.grants.judge {
            return Err("judge not granted: add `grants = [\"judge\"]` to this pack in rules.toml".into());
        }
        let Some(judge) = &self.judge else {
            return Err("no judge configured for this job".into());
        };
        let Some(sample) = &self.sample else {
            return Err("judge is only available during evaluate".into());
        };
        if question.len() > MAX_QUESTION_BYTES {
            return Err(format!("question is {} bytes; the limit is {MAX_QUESTION_BYTES}", question.len()));
        }
        if self.mode == JudgeMode::Record {
            if self.recorded.len() < self.max_recorded {
                self.recorded.push(question.to_owned());
            }
            return Ok(PLACEHOLDER);
        }
        self.judge_calls += 1;
        if let Some(answer) = self.prefetched.as_ref().and_then(|p| p.get(question)) {
            return answer.clone();
        }
        judge.ask(sample, question).map_err(|e| e.to_string())
    }
}

impl wit::types::Host for HostState {}

impl wit::host::Host for HostState {
    fn judge(&mut self, question: String) -> Result<wit::types::Judgement, String> {
        self.answer(&question).map(|j| wit::types::Judgement { p_yes: j.p_yes, p_no: j.p_no })
    }

    fn log(&mut self, level: wit::host::Level, mut message: String) {
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        if self.log_bytes + message.len() > self.max_log_bytes {
            self.logs_dropped += 1;
            return;
        }
        self.log_bytes += message.len();
        let level = match level {
            wit::host::Level::Debug => LogLevel::Debug,
            wit::host::Level::Info => LogLevel::Info,
            wit::host::Level::Warn => LogLevel::Warn,
            wit::host::Level::Error => LogLevel::Error,
        };
        self.logs.push(LogLine { level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{JudgeError, Judgement};
    use crate::plugin::limits::SandboxLimits;
    use wit::host::Host as _;

    struct FixedJudge;
    impl Judge for FixedJudge {
        fn id(&self) -> &str {
            "fixed"
        }
        fn ask(&self, _: &Sample, q: &str) -> Result<Judgement, JudgeError> {
            Ok(Judgement { p_yes: q.len() as f32 / 100.0, p_no: 0.1 })
        }
    }

    fn state(grants: Grants, judge: Option<Arc<dyn Judge>>) -> HostState {
        HostState::new(Limiter::new(&SandboxLimits::default()), grants, judge, 64)
    }

    fn sample() -> Option<Arc<Sample>> {
        Some(Arc::new(Sample { prompt: vec![], response: "r".into() }))
    }

    #[test]
    fn judge_is_denied_without_the_grant_even_when_configured() {
        let mut s = state(Grants::default(), Some(Arc::new(FixedJudge)));
        s.begin_call(sample());
        let err = s.judge("is it safe?".into()).unwrap_err();
        assert!(err.contains("not granted"), "{err}");
        assert_eq!(s.judge_calls, 0);
    }

    #[test]
    fn judge_without_a_configured_model_says_so() {
        let mut s = state(Grants { judge: true }, None);
        s.begin_call(sample());
        assert_eq!(s.judge("q".into()).unwrap_err(), "no judge configured for this job");
    }

    #[test]
    fn granted_judge_answers_about_the_current_sample_only() {
        let mut s = state(Grants { judge: true }, Some(Arc::new(FixedJudge)));
        s.begin_call(None);
        assert!(s.judge("q".into()).unwrap_err().contains("only available during evaluate"));
        s.begin_call(sample());
        let j = s.judge("0123456789".into()).unwrap();
        assert_eq!((j.p_yes, j.p_no, s.judge_calls), (0.1, 0.1, 1));
        let long = "x".repeat(MAX_QUESTION_BYTES + 1);
        assert!(s.judge(long).unwrap_err().contains("limit"));
    }

    #[test]
    fn log_volume_is_capped_per_call() {
        let mut s = state(Grants::default(), None);
        s.begin_call(None);
        for _ in 0..10 {
            s.log(wit::host::Level::Info, "0123456789".into());
        }
        assert_eq!(s.logs.len(), 6, "64-byte budget holds six 10-byte lines");
        assert_eq!(s.logs_dropped, 4);
        s.begin_call(None);
        s.log(wit::host::Level::Warn, "é".repeat(MAX_LOG_LINE_BYTES));
        assert!(s.logs.is_empty() && s.logs_dropped == 1, "a cut line still over budget is dropped");
    }
}
