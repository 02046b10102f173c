//! Glue between the generated bindings and the author's rules. Used by `export_pack!`;
//! not part of the public API.

use std::cell::RefCell;

use crate::types::{Config, Message, Role, Rule, RuleError, Sample};

#[allow(clippy::all, unsafe_code, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "pack",
        path: "wit/v0.1.0",
        pub_export_macro: true,
        default_bindings_module: "sdk::__private::bindings",
    });
}

pub use bindings::export;
pub use bindings::exports::safety::rules::rule_pack::Guest;
use bindings::safety::rules::types::Role as WitRole;
pub use bindings::safety::rules::types::{
    RuleError as WitRuleError, RuleInfo as WitRuleInfo, Sample as WitSample, Verdict as WitVerdict,
};

type Rules = Vec<Box<dyn Rule>>;

thread_local! {
    // WebAssembly instances are single-threaded; one pack state per instance.
    static PACK: RefCell<Option<Rules>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    // Sends the panic message to the host log before the trap, so the engine can report
    // *why* the rule crashed, not just that it did.
    std::panic::set_hook(Box::new(|info| {
        crate::log::error(&format!("panic: {info}"));
    }));
}

fn with_rules<T>(build: fn() -> Rules, f: impl FnOnce(&Rules) -> T) -> T {
    PACK.with(|pack| {
        let mut pack = pack.borrow_mut();
        let rules = pack.get_or_insert_with(|| {
            install_panic_hook();
            build()
        });
        f(rules)
    })
}

pub fn configure(build: fn() -> Rules, config: Vec<(String, String)>) -> Result<(), String> {
    install_panic_hook();
    let config = Config::from_pairs(config);
    let mut rules = build();
    for rule in &mut rules {
        let id = rule.info().id;
        rule.configure(&config).map_err(|e| format!("rule {id}: {e}"))?;
    }
    PACK.with(|pack| *pack.borrow_mut() = Some(rules));
    Ok(())
}

pub fn rules(build: fn() -> Rules) -> Vec<WitRuleInfo> {
    with_rules(build, |rules| {
        rules
            .iter()
            .map(|r| {
                let i = r.info();
                WitRuleInfo {
                    id: i.id,
                    title: i.title,
                    description: i.description,
                    version: i.version,
                    categories: i.categories,
                }
            })
            .collect()
    })
}

pub fn evaluate(build: fn() -> Rules, rule_id: String, sample: WitSample) -> Result<WitVerdict, WitRuleError> {
    let sample = Sample {
        prompt: sample
            .prompt
            .into_iter()
            .map(|m| Message {
                role: match m.role {
                    WitRole::System => Role::System,
                    WitRole::User => Role::User,
                    WitRole::Assistant => Role::Assistant,
                },
                content: m.content,
            })
            .collect(),
        response: sample.response,
    };
    with_rules(build, |rules| {
        let rule =
            rules.iter().find(|r| r.info().id == rule_id).ok_or_else(|| WitRuleError::UnknownRule(rule_id.clone()))?;
        match rule.evaluate(&sample) {
            Ok(v) => Ok(WitVerdict { score: v.score, relevance: v.relevance, rationale: v.rationale }),
            Err(RuleError::UnknownRule(m)) => Err(WitRuleError::UnknownRule(m)),
            Err(RuleError::InvalidConfig(m)) => Err(WitRuleError::InvalidConfig(m)),
            Err(RuleError::JudgeFailed(m)) => Err(WitRuleError::JudgeFailed(m)),
            Err(RuleError::Internal(m)) => Err(WitRuleError::Internal(m)),
        }
    })
}
