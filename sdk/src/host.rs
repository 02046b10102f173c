//! Safe wrappers for what the host offers: the judge model and the log.
//!
//! Inside WebAssembly these call the host. Natively (in `cargo test`) they use a mock:
//! set answers with [`crate::testing::set_judge`] and read logs with
//! [`crate::testing::take_logs`].

use std::fmt;

/// The judge's answer to a yes/no question.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    pub p_yes: f32,
    pub p_no: f32,
}

impl Judgement {
    /// P(yes) − P(no): the paper's rating, in [-1, 1].
    pub fn score(&self) -> f32 {
        self.p_yes - self.p_no
    }

    /// P(yes) renormalised over {yes, no}; 0.5 when both are zero.
    pub fn yes_share(&self) -> f32 {
        let total = self.p_yes + self.p_no;
        if total > 0.0 { self.p_yes / total } else { 0.5 }
    }
}

/// Why the judge gave no answer (no judge configured, not granted, model failure, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JudgeError(pub String);

impl fmt::Display for JudgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<JudgeError> for crate::RuleError {
    fn from(error: JudgeError) -> crate::RuleError {
        crate::RuleError::JudgeFailed(error.0)
    }
}

/// Asks the judge model a yes/no question about the sample being evaluated.
///
/// Needs the pack to be granted `judge` in rules.toml.
pub fn judge(question: &str) -> Result<Judgement, JudgeError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__private::bindings::safety::rules::host::judge(question)
            .map(|j| Judgement { p_yes: j.p_yes, p_no: j.p_no })
            .map_err(JudgeError)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::judge(question)
    }
}

/// Writing to the engine's log. The host caps the volume per call.
pub mod log {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Level {
        Debug,
        Info,
        Warn,
        Error,
    }

    pub fn write(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::__private::bindings::safety::rules::host::{Level as L, log};
            let level = match level {
                Level::Debug => L::Debug,
                Level::Info => L::Info,
                Level::Warn => L::Warn,
                Level::Error => L::Error,
            };
            log(level, message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            super::mock::log(level, message);
        }
    }

    pub fn debug(message: &str) {
        write(Level::Debug, message)
    }
    pub fn info(message: &str) {
        write(Level::Info, message)
    }
    pub fn warn(message: &str) {
        write(Level::Warn, message)
    }
    pub fn error(message: &str) {
        write(Level::Error, message)
    }
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod mock {
    use super::{JudgeError, Judgement, log::Level};
    use std::cell::RefCell;

    type JudgeFn = Box<dyn Fn(&str) -> Result<Judgement, JudgeError>>;

    thread_local! {
        static JUDGE: RefCell<Option<JudgeFn>> = const { RefCell::new(None) };
        static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    /// Makes [`crate::judge`] answer with `f` on this thread (native tests only).
    pub fn set_judge(f: impl Fn(&str) -> Result<Judgement, JudgeError> + 'static) {
        JUDGE.with(|j| *j.borrow_mut() = Some(Box::new(f)));
    }

    /// Removes the mock judge: [`crate::judge`] then fails with "no judge configured".
    pub fn clear_judge() {
        JUDGE.with(|j| *j.borrow_mut() = None);
    }

    /// Returns and clears the log lines written on this thread.
    pub fn take_logs() -> Vec<(Level, String)> {
        LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }

    pub(crate) fn judge(question: &str) -> Result<Judgement, JudgeError> {
        JUDGE.with(|j| match &*j.borrow() {
            Some(f) => f(question),
            None => Err(JudgeError("no judge configured (native test without testing::set_judge)".into())),
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
    }
}
