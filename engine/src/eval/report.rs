//! An [`EvalReport`] as a markdown page (`eval.md`) and as a terminal summary.

use std::fmt::Write as _;

use super::EvalReport;
use super::metrics::Accuracy;

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", 100.0 * v))
}

fn interval(a: &Accuracy) -> String {
    match (a.ci_low, a.ci_high) {
        (Some(low), Some(high)) => format!("{:.1}–{:.1}%", 100.0 * low, 100.0 * high),
        _ => "–".to_owned(),
    }
}

/// The report as markdown: data, a table of subsets and the overall row, the Safety score
/// with its weighting, and how pairs and intervals were computed.
pub fn markdown(report: &EvalReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Reward-model evaluation\n");
    let _ = writeln!(md, "Model: `{}`\n", report.model);
    let _ = writeln!(md, "Data:\n");
    for file in &report.files {
        let _ = write!(md, "- `{}`: {} labeled pairs", file.file, file.pairs);
        if file.unlabeled > 0 {
            let _ = write!(md, ", {} unlabeled pairs left out", file.unlabeled);
        }
        if file.invalid_lines > 0 {
            let _ = write!(md, ", {} invalid lines skipped", file.invalid_lines);
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n| subset | pairs | correct | ties | accuracy | 95% CI |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
    for a in &report.subsets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            a.name,
            a.pairs,
            a.correct,
            a.ties,
            percent(a.accuracy),
            interval(a)
        );
    }
    let o = &report.overall;
    let _ = writeln!(
        md,
        "| **overall** | {} | {} | {} | **{}** | {} |",
        o.pairs,
        o.correct,
        o.ties,
        percent(o.accuracy),
        interval(o)
    );
    if let Some(safety) = &report.safety {
        let _ = writeln!(md, "\n**{}: {}**: {}.", safety.name, percent(Some(safety.score)), safety.weighting);
        if !safety.missing.is_empty() {
            let _ = writeln!(md, "Not in the data (left out of the average): {}.", safety.missing.join(", "));
        }
    }
    let _ = writeln!(
        md,
        "\nA pair is correct when the preferred response's reward is strictly higher; ties count as wrong \
         (as in RewardBench). Intervals: percentile bootstrap over pairs, {} resamples, seed {}.",
        report.resamples, report.seed
    );
    md
}

/// A few aligned lines for the terminal: each subset, overall, and Safety.
pub fn summary(report: &EvalReport) -> String {
    let width = report.subsets.iter().map(|s| s.name.len()).max().unwrap_or(0).max("overall".len());
    let mut text = String::new();
    let _ = writeln!(text, "{:<width$}  {:>6}  {:>8}  95% CI", "subset", "pairs", "accuracy");
    for a in report.subsets.iter().chain([&report.overall]) {
        let _ = writeln!(text, "{:<width$}  {:>6}  {:>8}  {}", a.name, a.pairs, percent(a.accuracy), interval(a));
    }
    if let Some(safety) = &report.safety {
        let _ = writeln!(text, "{}: {} ({})", safety.name, percent(Some(safety.score)), safety.weighting);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::{self, Outcome, SAFETY};
    use crate::eval::{EvalReport, FileSummary};

    #[test]
    fn markdown_table_and_safety_line() {
        let outcomes = [
            Outcome { subset: "donotanswer".into(), chosen: 1.0, rejected: 0.0 },
            Outcome { subset: "donotanswer".into(), chosen: 0.0, rejected: 0.0 },
        ];
        let subsets = metrics::subset_accuracies(&outcomes, 0);
        let report = EvalReport {
            model: "m".into(),
            files: vec![FileSummary { file: "x.jsonl".into(), pairs: 2, unlabeled: 1, invalid_lines: 0 }],
            rule: String::new(),
            seed: 0,
            resamples: metrics::RESAMPLES,
            overall: metrics::overall_accuracy(&outcomes, 0),
            safety: metrics::section_score(&SAFETY, &subsets),
            subsets,
            pairs: Vec::new(),
        };
        let md = markdown(&report);
        assert!(md.contains("- `x.jsonl`: 2 labeled pairs, 1 unlabeled pairs left out\n"), "{md}");
        assert!(md.contains("| donotanswer | 2 | 1 | 1 | 50.0% | "), "{md}");
        assert!(md.contains("| **overall** | 2 | 1 | 1 | **50.0%** | "), "{md}");
        assert!(md.contains("**Safety: 50.0%**: subset accuracies weighted by RewardBench's example counts: (136 × donotanswer) / 136."), "{md}");
        assert!(md.contains("Not in the data (left out of the average): refusals-dangerous, refusals-offensive, xstest-should-refuse, xstest-should-respond."));
        let text = summary(&report);
        assert!(text.lines().nth(1).unwrap().starts_with("donotanswer       2     50.0%"), "{text}");
    }
}
