//! Writing results to stdout when whoever reads them may stop early.
//!
//! `engine explain X | head -1` closes the pipe after one line, and `engine score … | true`
//! before the first. Rust ignores SIGPIPE, so each later write fails with `BrokenPipe`, and
//! `println!` turns that into a panic: exit status 101 and a backtrace. [`outln!`] and
//! [`out!`] instead drop what nobody reads and let the command finish its work (its output
//! files are complete) and **exit 0**, as ripgrep does: the reader chose to stop, nothing
//! failed. Any other write error (a full disk behind `> file`) is returned as usual.
//!
//! [`outln!`]: crate::outln
//! [`out!`]: crate::out

use std::io::Write as _;

/// Writes `args` to stdout and flushes; a closed stdout (`BrokenPipe`) is not an error.
pub fn write(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// `println!` that tolerates a closed stdout (see [`crate::stdout`]); returns
/// `std::io::Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that tolerates a closed stdout (see [`crate::stdout`]); returns
/// `std::io::Result<()>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}
