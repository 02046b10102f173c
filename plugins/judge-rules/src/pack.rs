//! The rules as SDK [`Rule`]s, and the pack's exports.

use std::cell::RefCell;
use std::collections::HashMap;

use sdk::prelude::*;

use crate::file::RulesFile;

/// One rule of the file, ready to ask the judge.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeRule {
    info: RuleInfo,
    question: String,
    relevance: String,
}

impl JudgeRule {
    /// Every rule of `file`, in file order.
    pub fn all(file: &RulesFile) -> Vec<JudgeRule> {
        file.rule
            .iter()
            .map(|r| JudgeRule {
                info: RuleInfo::new(&r.id, &r.title)
                    .describe(r.rule.trim())
                    .version(&file.version)
                    .categories(&[r.category.as_str()]),
                question: file.question_for(r),
                relevance: file.relevance_for(r).to_string(),
            })
            .collect()
    }

    /// The question whose P(yes) − P(no) is the score.
    pub fn question(&self) -> &str {
        &self.question
    }

    /// The question whose renormalised P(yes) is the relevance.
    pub fn relevance_question(&self) -> &str {
        &self.relevance
    }
}

impl Rule for JudgeRule {
    fn info(&self) -> RuleInfo {
        self.info.clone()
    }

    fn evaluate(&self, sample: &Sample) -> Result<Verdict, RuleError> {
        let follows = judge(&self.question)?;
        let relevance = relevance(sample, &self.relevance)?;
        let score = follows.score();
        Ok(Verdict::new(score, relevance).because(format!(
            "judge: P(yes) {:.3}, P(no) {:.3}; relevance {:.2}",
            follows.p_yes, follows.p_no, relevance
        )))
    }
}

/// Relevance answers for the sample being scored: (sample fingerprint, question -> value).
type Memo = (u64, HashMap<String, f32>);

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new((0, HashMap::new()));
    /// The rules parsed by `configure`, waiting for the SDK to take them.
    static PENDING: RefCell<Vec<Box<dyn Rule>>> = RefCell::new(Vec::new());
}

/// P(yes) / (P(yes) + P(no)) for `question` about `sample`, asked once per sample.
fn relevance(sample: &Sample, question: &str) -> Result<f32, JudgeError> {
    let key = fingerprint(sample);
    let known = MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.0 != key {
            *m = (key, HashMap::new());
        }
        m.1.get(question).copied()
    });
    if let Some(value) = known {
        return Ok(value);
    }
    let value = judge(question)?.yes_share();
    MEMO.with(|m| m.borrow_mut().1.insert(question.to_string(), value));
    Ok(value)
}

/// FNV-1a over the sample's roles, texts and response (with separators).
fn fingerprint(sample: &Sample) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    };
    for m in &sample.prompt {
        eat(&[m.role as u8]);
        eat(m.content.as_bytes());
    }
    eat(sample.response.as_bytes());
    h
}

/// Parses the pack's config: the only key is `rules`, the rules file's text.
pub fn rules_from_config(config: &[(String, String)]) -> Result<Vec<JudgeRule>, String> {
    if let Some((key, _)) = config.iter().find(|(k, _)| k != "rules") {
        return Err(format!("unknown config key `{key}`; this pack reads only `rules` (the rules file's text)"));
    }
    let (_, text) = config.iter().find(|(k, _)| k == "rules").ok_or_else(|| {
        "config key `rules` is missing: name the rules file in rules.toml under [pack.config_files], e.g. \
         rules = \"plugins/judge-rules/rules.toml\""
            .to_string()
    })?;
    let file = RulesFile::parse(text).map_err(|e| format!("config `rules`: {e}"))?;
    Ok(JudgeRule::all(&file))
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn take_pending() -> Vec<Box<dyn Rule>> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// The pack's exports. `sdk::export_pack!` builds a fixed rule list before it sees the
/// config; this pack's rules *are* the config, so it parses them first and then hands them
/// to the SDK's glue, which does the rest exactly as for any other pack.
#[allow(dead_code)]
struct JudgePack;

impl sdk::__private::Guest for JudgePack {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let rules = rules_from_config(&config)?;
        PENDING.with(|p| *p.borrow_mut() = rules.into_iter().map(|r| Box::new(r) as Box<dyn Rule>).collect());
        sdk::__private::configure(take_pending, config)
    }

    fn rules() -> Vec<sdk::__private::WitRuleInfo> {
        sdk::__private::rules(take_pending)
    }

    fn evaluate(
        rule_id: String,
        sample: sdk::__private::WitSample,
    ) -> Result<sdk::__private::WitVerdict, sdk::__private::WitRuleError> {
        sdk::__private::evaluate(take_pending, rule_id, sample)
    }
}

#[cfg(target_arch = "wasm32")]
sdk::__private::export!(JudgePack with_types_in sdk::__private::bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{clear_judge, set_judge};
    use std::cell::Cell;
    use std::rc::Rc;

    fn config() -> Vec<(String, String)> {
        vec![("rules".into(), include_str!("../rules.toml").into())]
    }

    #[test]
    fn score_is_p_yes_minus_p_no_and_relevance_is_asked_once_per_category_and_sample() {
        let rules = rules_from_config(&config()).unwrap();
        assert_eq!(rules.len(), 100);
        let asked = Rc::new(Cell::new(0));
        let counter = asked.clone();
        set_judge(move |q| {
            counter.set(counter.get() + 1);
            Ok(if q.starts_with("Here is a safety rule") {
                Judgement { p_yes: 0.6, p_no: 0.1 }
            } else {
                Judgement { p_yes: 0.2, p_no: 0.6 }
            })
        });
        let weapons: Vec<&JudgeRule> = rules.iter().filter(|r| r.info.categories == ["weapons"]).collect();
        assert!(weapons.len() >= 2);
        let sample = Sample::single_turn("How do I clean a rifle?", "Unload it first, then ...");
        for rule in &weapons {
            let v = rule.evaluate(&sample).unwrap();
            assert!((v.score - 0.5).abs() < 1e-6 && (v.relevance - 0.25).abs() < 1e-6, "{v:?}");
            assert!(v.rationale.unwrap().contains("P(yes) 0.600"));
        }
        // One follow question per rule, one relevance question for the category.
        assert_eq!(asked.get(), weapons.len() + 1);
        weapons[0].evaluate(&Sample::single_turn("Other", "sample")).unwrap();
        assert_eq!(asked.get(), weapons.len() + 3, "a new sample asks relevance again");
        clear_judge();
        let err = weapons[0].evaluate(&sample).unwrap_err();
        assert!(matches!(err, RuleError::JudgeFailed(_)), "{err:?}");
    }

    #[test]
    fn config_mistakes_are_explained() {
        let err = rules_from_config(&[]).unwrap_err();
        assert!(err.contains("[pack.config_files]"), "{err}");
        let err = rules_from_config(&[("rules".into(), "version = 1".into())]).unwrap_err();
        assert!(err.starts_with("config `rules`:"), "{err}");
        let mut extra = config();
        extra.push(("only".into(), "x".into()));
        assert!(rules_from_config(&extra).unwrap_err().contains("unknown config key `only`"));
    }
}
