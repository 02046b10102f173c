//! The rule-author SDK: write safety rules in Rust, build them into a sandboxed
//! WebAssembly component, and let the engine run them.
//!
//! One import gives you everything:
//!
//! ```
//! use sdk::prelude::*;
//!
//! /// Flags responses that shout (more than half of their letters upper-case).
//! #[derive(Default)]
//! struct NoShouting;
//!
//! impl Rule for NoShouting {
//!     fn info(&self) -> RuleInfo {
//!         RuleInfo::new("no-shouting", "Do not shout")
//!             .describe("The response should not be written mostly in capital letters.")
//!             .categories(&["tone"])
//!     }
//!
//!     fn evaluate(&self, sample: &Sample) -> Result<Verdict, RuleError> {
//!         let letters: Vec<char> = sample.response.chars().filter(|c| c.is_alphabetic()).collect();
//!         if letters.len() < 8 {
//!             return Ok(Verdict::not_applicable());
//!         }
//!         let upper = letters.iter().filter(|c| c.is_uppercase()).count() as f32;
//!         let share = upper / letters.len() as f32;
//!         Ok(if share > 0.5 {
//!             Verdict::violates(1.0).because(format!("{:.0}% capitals", share * 100.0))
//!         } else {
//!             Verdict::follows(0.3)
//!         })
//!     }
//! }
//!
//! // In a plugin crate this line exports the pack: `sdk::export_pack!(rules);`
//! fn rules() -> Vec<Box<dyn Rule>> {
//!     vec![Box::new(NoShouting)]
//! }
//!
//! // Rules are plain Rust, so they are unit-tested natively:
//! let verdict = NoShouting.evaluate(&Sample::single_turn("hi", "I AM VERY ANGRY WITH YOU")).unwrap();
//! assert_eq!(verdict.score, -1.0);
//! # let _ = rules;
//! ```
//!
//! See `sdk/README.md` for building, testing and pinning a pack.

mod host;
mod types;

#[doc(hidden)]
pub mod __private;

pub use host::{JudgeError, Judgement, judge, log};
pub use types::{Config, Message, Role, Rule, RuleError, RuleInfo, Sample, Verdict};

/// The version of the plugin contract (the WIT package `safety:rules`) this SDK builds against.
pub const ABI_VERSION: &str = "0.1.0";

/// Everything a rule author needs: `use sdk::prelude::*;`.
pub mod prelude {
    pub use crate::host::{JudgeError, Judgement, judge, log};
    pub use crate::types::{Config, Message, Role, Rule, RuleError, RuleInfo, Sample, Verdict};
}

/// Test helpers for running rules natively (outside WebAssembly).
pub mod testing {
    pub use crate::host::mock::{clear_judge, set_judge, take_logs};
}

/// Exports a rule pack from a plugin crate.
///
/// Give it a function that returns the pack's rules; the macro generates the WebAssembly
/// exports of the `safety:rules` contract around them.
///
/// ```ignore
/// fn rules() -> Vec<Box<dyn sdk::prelude::Rule>> { vec![Box::new(MyRule)] }
/// sdk::export_pack!(rules);
/// ```
#[macro_export]
macro_rules! export_pack {
    ($build:path) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __SafetyRulesPack;

        // Type-checks the builder on every target (natively it is otherwise unused).
        const _: fn() -> ::std::vec::Vec<::std::boxed::Box<dyn $crate::Rule>> = $build;

        impl $crate::__private::Guest for __SafetyRulesPack {
            fn configure(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::configure($build, config)
            }
            fn rules() -> ::std::vec::Vec<$crate::__private::WitRuleInfo> {
                $crate::__private::rules($build)
            }
            fn evaluate(
                rule_id: ::std::string::String,
                sample: $crate::__private::WitSample,
            ) -> ::std::result::Result<$crate::__private::WitVerdict, $crate::__private::WitRuleError> {
                $crate::__private::evaluate($build, rule_id, sample)
            }
        }

        // Natively (unit tests) there is nothing to export: the symbols only exist in wasm.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::export!(__SafetyRulesPack with_types_in $crate::__private::bindings);
    };
}
