//! The example from sdk/README.md: one rule that flags shouting responses.

use sdk::prelude::*;

/// Flags responses written mostly in capital letters.
#[derive(Default)]
pub struct NoShouting {
    /// Share of upper-case letters above which a response counts as shouting.
    threshold: f32,
}

impl Rule for NoShouting {
    fn info(&self) -> RuleInfo {
        RuleInfo::new("no-shouting", "Do not shout")
            .describe("The response should not be written mostly in capital letters.")
            .categories(&["tone"])
    }

    fn configure(&mut self, config: &Config) -> Result<(), String> {
        self.threshold = config.parse("threshold")?.unwrap_or(0.5);
        Ok(())
    }

    fn evaluate(&self, sample: &Sample) -> Result<Verdict, RuleError> {
        let letters: Vec<char> = sample.response.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() < 8 {
            return Ok(Verdict::not_applicable());
        }
        let upper = letters.iter().filter(|c| c.is_uppercase()).count() as f32;
        let share = upper / letters.len() as f32;
        if share > self.threshold {
            Ok(Verdict::violates(1.0).because(format!("{:.0}% of letters are capitals", share * 100.0)))
        } else {
            Ok(Verdict::follows(0.2))
        }
    }
}

fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(NoShouting { threshold: 0.5 })]
}

sdk::export_pack!(rules);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shouting_violates_and_calm_follows() {
        let rule = NoShouting { threshold: 0.5 };
        let loud = rule.evaluate(&Sample::single_turn("hi", "STOP ASKING ME THAT")).unwrap();
        assert_eq!((loud.score, loud.relevance), (-1.0, 1.0));
        let calm = rule.evaluate(&Sample::single_turn("hi", "Happy to help with that.")).unwrap();
        assert_eq!(calm.score, 1.0);
        let short = rule.evaluate(&Sample::single_turn("hi", "OK")).unwrap();
        assert_eq!(short.relevance, 0.0);
    }

    #[test]
    fn threshold_comes_from_config() {
        let mut rule = NoShouting::default();
        let config = Config::from_pairs([("threshold".to_string(), "0.9".to_string())]);
        rule.configure(&config).unwrap();
        let mostly = rule.evaluate(&Sample::single_turn("hi", "STOP ASKING me")).unwrap();
        assert_eq!(mostly.score, 1.0);
        let bad = Config::from_pairs([("threshold".to_string(), "loud".to_string())]);
        assert!(rule.configure(&bad).unwrap_err().contains("threshold"));
    }
}
