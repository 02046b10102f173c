//! Reading P(yes) and P(no) off the logits at the answer position.
//!
//! The rating follows the paper: the judge is asked a yes/no question and the score is
//! P(Yes) − P(No) at the answer position, right after the assistant's turn header. Exactly
//! which tokens count:
//!
//! - each spelling in [`AnswerTokens`] (by default `Yes`, `yes`, ` Yes`, ` yes` and
//!   `No`, `no`, ` No`, ` no`: the same four shapes on both sides, so neither answer gets more
//!   chances) is tokenized as plain text; a spelling counts only if it is a **single token**
//!   (a multi-token spelling's first token, such as `Y`, is not specific to the answer). The
//!   ids kept are listed in [`ModelInfo`](super::ModelInfo) and go into the judge id. For
//!   SmolLM2: yes = 10539 `Yes`, 9230 ` Yes`, 10407 `yes`, 9805 ` yes`; no = 5230 `No`,
//!   2838 ` No`, 4607 `no`, 787 ` no`;
//! - P(yes) is the sum of the softmax probabilities, over the **whole vocabulary**, of the
//!   yes ids; P(no) likewise. So P(yes) + P(no) ≤ 1; the rest is the mass on other tokens;
//! - with `renormalize`, both are divided by P(yes) + P(no) (computed in log space, so it
//!   stays exact when both are tiny): P(yes) + P(no) = 1.
//!
//! For SmolLM2 after `<|im_start|>assistant\n`, `Yes`/`No` carry nearly all the mass and the
//! space-prefixed spellings get ~1e-4; counting them changes little but costs nothing.

use super::{JudgeTokenizer, Judgement};

/// The spellings that count as yes and as no.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerTokens {
    pub yes: Vec<String>,
    pub no: Vec<String>,
}

impl Default for AnswerTokens {
    fn default() -> Self {
        let spell = |w: [&str; 2]| w.iter().flat_map(|w| [w.to_string(), format!(" {w}")]).collect();
        AnswerTokens { yes: spell(["Yes", "yes"]), no: spell(["No", "no"]) }
    }
}

/// The token ids that count, with the spelling each came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerIds {
    pub yes: Vec<(String, u32)>,
    pub no: Vec<(String, u32)>,
    /// Spellings that are not a single token here (ignored).
    pub skipped: Vec<String>,
}

impl AnswerTokens {
    /// Resolves the spellings against `tokenizer`. Fails if no yes or no spelling is a
    /// single token, or if one id would count for both.
    pub fn resolve(&self, tokenizer: &JudgeTokenizer) -> Result<AnswerIds, String> {
        let mut skipped = Vec::new();
        let mut side = |words: &[String]| -> Result<Vec<(String, u32)>, String> {
            let mut out: Vec<(String, u32)> = Vec::new();
            for word in words {
                match tokenizer.encode_plain(word)?.as_slice() {
                    [id] if !out.iter().any(|(_, i)| i == id) => out.push((word.clone(), *id)),
                    [_] => {}
                    _ => skipped.push(word.clone()),
                }
            }
            Ok(out)
        };
        let yes = side(&self.yes)?;
        let no = side(&self.no)?;
        if yes.is_empty() || no.is_empty() {
            let which = if yes.is_empty() { "yes" } else { "no" };
            return Err(format!(
                "none of the {which} spellings is a single token of this tokenizer (skipped: {})",
                skipped.join(", ")
            ));
        }
        if let Some((word, id)) = yes.iter().find(|(_, id)| no.iter().any(|(_, n)| n == id)) {
            return Err(format!("token {id} (`{word}`) would count for both yes and no"));
        }
        Ok(AnswerIds { yes, no, skipped })
    }
}

/// P(yes) and P(no) from the logits at the answer position (see the module docs).
pub fn judgement(logits: &[f32], ids: &AnswerIds, renormalize: bool) -> Result<Judgement, String> {
    if let Some(bad) = logits.iter().find(|x| !x.is_finite()) {
        return Err(format!("the model produced a non-finite logit ({bad})"));
    }
    let logit = |id: u32| -> Result<f64, String> {
        logits
            .get(id as usize)
            .map(|&x| f64::from(x))
            .ok_or_else(|| format!("answer token {id} is outside the model's {} logits", logits.len()))
    };
    let yes: Vec<f64> = ids.yes.iter().map(|&(_, id)| logit(id)).collect::<Result<_, _>>()?;
    let no: Vec<f64> = ids.no.iter().map(|&(_, id)| logit(id)).collect::<Result<_, _>>()?;
    let (p_yes, p_no) = if renormalize {
        let (ly, ln) = (log_sum_exp(yes.iter().copied()), log_sum_exp(no.iter().copied()));
        let p_yes = 1.0 / (1.0 + (ln - ly).exp());
        (p_yes, 1.0 - p_yes)
    } else {
        let z = log_sum_exp(logits.iter().map(|&x| f64::from(x)));
        let p = |xs: &[f64]| xs.iter().map(|x| (x - z).exp()).sum::<f64>();
        (p(&yes), p(&no))
    };
    Ok(Judgement { p_yes: p_yes.clamp(0.0, 1.0) as f32, p_no: p_no.clamp(0.0, 1.0) as f32 })
}

fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::tokenizer::tests::tiny_tokenizer;

    #[test]
    fn only_single_token_spellings_count() {
        let tok = tiny_tokenizer();
        let ids = AnswerTokens::default().resolve(&tok).unwrap();
        let yes: Vec<&str> = ids.yes.iter().map(|(w, _)| w.as_str()).collect();
        let no: Vec<&str> = ids.no.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(yes, ["Yes", " Yes"]);
        // "yes" and "no" are several tokens in the tiny vocabulary; "N"+"o" merges to "No".
        assert_eq!(no, ["No", " No"]);
        assert_eq!(ids.skipped, ["yes", " yes", "no", " no"]);
        let none = AnswerTokens { yes: vec!["Maybe".into()], no: vec!["No".into()] };
        assert!(none.resolve(&tok).unwrap_err().contains("yes spellings"));
    }

    #[test]
    fn probabilities_are_softmax_mass_over_the_vocabulary() {
        let ids =
            AnswerIds { yes: vec![("Yes".into(), 1), (" Yes".into(), 3)], no: vec![("No".into(), 2)], skipped: vec![] };
        let logits = [0.0f32, 1.0, 2.0, -1.0];
        let z: f64 = logits.iter().map(|&x| f64::from(x).exp()).sum();
        let j = judgement(&logits, &ids, false).unwrap();
        assert!((f64::from(j.p_yes) - (1f64.exp() + (-1f64).exp()) / z).abs() < 1e-6);
        assert!((f64::from(j.p_no) - 2f64.exp() / z).abs() < 1e-6);
        let r = judgement(&logits, &ids, true).unwrap();
        assert!((r.p_yes + r.p_no - 1.0).abs() < 1e-6);
        assert!((r.p_yes / r.p_no - j.p_yes / j.p_no).abs() < 1e-4);
        // Renormalisation survives logits far below the rest of the vocabulary.
        let far = [1000.0f32, -1000.0, -1001.0, -2000.0];
        let r = judgement(&far, &ids, true).unwrap();
        assert!((r.p_yes - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-5, "{r:?}");
        assert!(judgement(&[f32::NAN; 4], &ids, false).unwrap_err().contains("non-finite"));
        assert!(judgement(&[0.0; 2], &ids, false).unwrap_err().contains("outside"));
    }
}
