#!/usr/bin/env bash
# Rule labels with the embedded judge against the human labels of HH-RLHF harmless (dev):
# scores the first PAIRS pairs of ../shared/data/hh-harmless-dev.jsonl under the bundled
# deterministic rules and 8 judge rules (scripts/jobs/judge-dev.toml; with RULES = all,
# all 100 judge rules: that job without its `enable` list, into runs/judge-dev-all), then prints the
# strategy table, each rule's own agreement with the human labels, the Rule Adapter
# trained and measured on those scores, and pairwise rating (the judge compares the two
# responses under the max-discrepancy rules, both orders). RESULTS.md quotes it.
#
#   scripts/measure_judge_dev.sh [PAIRS [RULES]]   (PAIRS default 200; RULES: 8 (default) | all;
#                                                  needs cargo build --release -p engine)
#
# Scoring resumes: rerun after an interruption and only the missing scores are computed.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-200}
rules=${2:-8}
engine=target/release/engine
case "$rules" in
    8) job=scripts/jobs/judge-dev.toml out=runs/judge-dev ;;
    all) job=runs/judge-dev-all/job.toml out=runs/judge-dev-all ;;
    *) echo "measure_judge_dev.sh: RULES must be 8 or all, not '$rules'" >&2; exit 2 ;;
esac
mkdir -p "$out"
if [[ $rules == all ]]; then
    # The same job with every judge rule enabled. runs/judge-dev-all/ is as deep as
    # scripts/jobs/, so the job's relative paths still hold.
    sed -e '/^enable = \[/,/^\]/d' -e 's|runs/judge-dev"$|runs/judge-dev-all"|' scripts/jobs/judge-dev.toml > "$job"
    ! grep -q '^enable' "$job" || { echo "measure_judge_dev.sh: could not drop the enable list" >&2; exit 1; }
fi
head -n "$pairs" ../shared/data/hh-harmless-dev.jsonl > "$out/pairs.jsonl"
"$engine" score --config "$job" --input "$out/pairs.jsonl" --out "$out/scores.jsonl"
echo "== Rule labels against the human labels, per strategy ($pairs pairs) =="
"$engine" eval-labels --config "$job" --scores "$out/scores.jsonl" --gold "$out/pairs.jsonl" --calibrate none,rank --per-rule --json "$out/strategies.json"
echo
echo "== Rule Adapter (k = 5 of all rules, 30% of the pairs held out) =="
"$engine" adapter train --scores "$out/scores.jsonl" --pairs "$out/pairs.jsonl" --out "$out/adapter" --k 5 --holdout 0.3
echo
echo "== Pairwise rating of the max-discrepancy rules (k = 5), both orders =="
"$engine" pairwise --config "$job" --scores "$out/scores.jsonl" --pairs "$out/pairs.jsonl" --strategy max-discrepancy \
    --out "$out/pairwise.jsonl" --json "$out/pairwise.json"
