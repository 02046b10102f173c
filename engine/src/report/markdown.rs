//! `report.md`: the run report for people.

use std::fmt::Write as _;

use super::run::RunReport;

/// The report as markdown; the plots are linked from `plots/`.
pub fn render(r: &RunReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Run report\n");
    let _ = writeln!(
        md,
        "Job `{}` on `{}`: {} pairs, {} unique responses, {} rules.\n",
        r.config, r.input, r.pairs, r.samples, r.rules
    );

    let _ = writeln!(md, "## Stages\n\n| stage | seconds | note |\n|---|---:|---|");
    for s in &r.stages {
        let _ = writeln!(md, "| {} | {:.1} | {} |", s.stage, s.seconds, s.note);
    }

    let sc = &r.score;
    let _ = writeln!(md, "\n## Scoring\n");
    let _ = writeln!(
        md,
        "{} evaluations ({} computed now, {} resumed from an earlier run, {} reused); {} ok.",
        sc.samples * sc.rules,
        sc.computed,
        sc.resumed,
        sc.reused,
        sc.ok
    );
    if !sc.failures.is_empty() {
        let failures: Vec<String> = sc.failures.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let _ = writeln!(md, "\nFailures: {}.", failures.join(", "));
    }
    for (rule, reason) in &sc.quarantined {
        let _ = writeln!(md, "\nQuarantined `{rule}`: {reason}");
    }

    let l = &r.labels;
    let _ = writeln!(md, "\n## Labels\n");
    let _ = writeln!(md, "Strategy `{}`, tie policy {}.\n", r.strategy, r.tie_policy);
    let _ = writeln!(
        md,
        "| A preferred | B preferred | ties | abstained |\n|---:|---:|---:|---:|\n| {} | {} | {} | {} |",
        l.a_preferred, l.b_preferred, l.ties, l.abstained
    );
    if let Some(a) = &r.label_agreement {
        let _ = writeln!(
            md,
            "\nAgreement with the gold labels: **{:.1}%** of {} decided pairs (95% bootstrap interval {:.1}–{:.1}%), \
             abstain rate {:.1}%.",
            100.0 * a.accuracy,
            a.decided,
            100.0 * a.ci_low,
            100.0 * a.ci_high,
            100.0 * a.abstain_rate
        );
    }
    let _ = writeln!(md, "\nMost selected rules:\n\n| rule | pairs |\n|---|---:|");
    for (rule, n) in r.rule_usage.iter().take(15) {
        let _ = writeln!(md, "| `{rule}` | {n} |");
    }
    let _ = writeln!(
        md,
        "\n![rule usage](plots/rule-usage.svg)\n![scores](plots/scores.svg)\n![margins](plots/margins.svg)"
    );

    let _ = writeln!(md, "\n## Reward model\n");
    let _ = writeln!(
        md,
        "Trained on {} rule-labelled pairs; {} gold-labelled pairs held out for evaluation (`[eval] holdout = {}`).",
        r.train_pairs, r.heldout_pairs, r.settings.eval.holdout
    );
    if let Some(train) = &r.train {
        let _ = writeln!(md, "\n{}", super::stages::train_summary(train));
        let _ = writeln!(md, "\n![training](plots/training.svg)");
    }
    if let Some(eval) = &r.eval {
        let _ = writeln!(md, "\n### Evaluation\n\n{}", crate::eval::markdown(eval));
        let _ = writeln!(md, "\n![rewards](plots/rewards.svg)");
    }
    md
}

/// A few lines for the terminal at the end of `engine run`.
pub fn summary(r: &RunReport) -> String {
    let mut text = format!("{} pairs, {} rules, strategy {}", r.pairs, r.rules, r.strategy);
    if let Some(a) = &r.label_agreement {
        let _ =
            write!(text, "\nrule labels agree with gold on {:.1}% of {} decided pairs", 100.0 * a.accuracy, a.decided);
    }
    if let Some(t) = &r.train
        && let Some(last) = t.epochs.last()
    {
        let _ = write!(text, "\nreward model: {} pairs, final train loss {:.4}", t.pairs, last.train_loss);
    }
    if let Some(e) = &r.eval
        && let Some(acc) = e.overall.accuracy
    {
        let _ = write!(text, "\nheld-out accuracy {:.1}% on {} pairs", 100.0 * acc, e.overall.pairs);
    }
    let _ = write!(text, "\nreport: {}/report.md", r.output);
    text
}
