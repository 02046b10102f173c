//! Integration tests: one binary, one module per area (see STYLE: ripgrep's layout).
//!
//! They use the committed plugin builds in `plugins/dist/` and
//! `tests/fixtures/dist/` (`cargo xtask build-plugins` makes them; setup checks that the
//! sources reproduce them) and the real data in `../shared/data/` where present.

mod util;

mod cli;
mod eval;
mod examples;
mod judge;
mod market;
mod remote_judge;
mod reward;
mod robustness;
mod run;
mod sandbox;
mod scoring;
mod serve;
