#!/usr/bin/env bash
# Measures the Rule Adapter and the selection strategies on the HH-RLHF harmless dev split
# (../shared/data/hh-harmless-dev.jsonl) with the bundled deterministic rules. Prints the
# adapter's held-out report and the strategy agreement table; RESULTS.md quotes both.
#
#   scripts/measure_adapter.sh            (needs a release build: cargo build --release -p engine)
set -euo pipefail
cd "$(dirname "$0")/.."
engine=target/release/engine
job=scripts/jobs/deterministic.toml
data=../shared/data/hh-harmless-dev.jsonl
out=runs/deterministic
mkdir -p "$out"
"$engine" score --config "$job" --input "$data" --out "$out/scores.jsonl" --quiet
echo "== Rule Adapter (k = 5 of 13 rules, 30% of the pairs held out) =="
"$engine" adapter train --scores "$out/scores.jsonl" --pairs "$data" --out "$out/adapter" --k 5 --holdout 0.3
echo
echo "== Rule labels against the human labels, per strategy =="
# Default strategies: max-discrepancy (k = 5, λ = 0.5), all, random-k (k = 5), relevance-only, entropy-weighted.
"$engine" eval-labels --config "$job" --scores "$out/scores.jsonl" --gold "$data"
