//! Progress in log files. indicatif draws its bars only on a terminal; where stderr is a
//! file or a pipe (CI, `nohup`, `2> log`), long stages print a line now and then instead,
//! so that a log shows how far a run got and how fast it was going.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

/// How often a log line is printed at most.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Prints `label: done/total (elapsed)` lines, at most one per `every`, when progress is
/// wanted and stderr is not a terminal.
#[derive(Debug)]
pub struct LogLines {
    enabled: bool,
    every: Duration,
    started: Instant,
    last: Instant,
}

impl LogLines {
    /// Lines only where a bar would not be drawn: `progress` on, stderr not a terminal.
    pub fn new(progress: bool) -> LogLines {
        LogLines::with(progress && !std::io::stderr().is_terminal(), LOG_EVERY)
    }

    /// Lines when `enabled`, at most one per `every`.
    pub fn with(enabled: bool, every: Duration) -> LogLines {
        let now = Instant::now();
        LogLines { enabled, every, started: now, last: now }
    }

    /// Whether lines are printed at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The line for `done` of `total` if one is due (and marks it printed); `None` otherwise.
    pub fn due(&mut self, label: &str, done: u64, total: u64) -> Option<String> {
        if !self.enabled || self.last.elapsed() < self.every {
            return None;
        }
        self.last = Instant::now();
        Some(format!("{label}: {done}/{total} ({:.0?} elapsed)", self.started.elapsed()))
    }

    /// Prints the line for `done` of `total` to stderr if one is due.
    pub fn tick(&mut self, label: &str, done: u64, total: u64) {
        if let Some(line) = self.due(label, done, total) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_at_most_once_per_interval_and_only_when_enabled() {
        let mut off = LogLines::with(false, Duration::ZERO);
        assert_eq!(off.due("scoring", 1, 2), None);
        let mut every_time = LogLines::with(true, Duration::ZERO);
        let line = every_time.due("scoring", 3, 10).unwrap();
        assert!(line.starts_with("scoring: 3/10 (") && line.ends_with(" elapsed)"), "{line}");
        let mut hourly = LogLines::with(true, Duration::from_secs(3600));
        assert_eq!(hourly.due("scoring", 1, 2), None, "not due yet");
    }
}
