#!/usr/bin/env bash
# Reward-model training speed: `engine train` against a PyTorch reference of the same model
# (all-MiniLM-L6-v2 + BertForSequenceClassification head), loss (Bradley-Terry), optimizer
# (AdamW, clipping), batch size, max length and thread count, on the same pairs.
#
#   scripts/bench_reward.sh [PAIRS] [BATCH] [MAX_LEN] [THREADS] [ROUNDS]     (defaults 64 8 256 2 3)
#
# Needs a release build (cargo build --release -p engine), the reference venv .venv-ref
# (see scripts/rm_reference.py) and ../shared/data/hh-harmless-train.jsonl.
# Prints pairs/s of: ours with length bucketing (the default), ours without (--bucket 1,
# batches in shuffled order, padded to their longest like the reference), PyTorch, and the ratios.
# The three run in turn ROUNDS times (this machine is shared and noisy); the ratios are of
# the medians, and every run's figure is printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-64}
BATCH=${2:-8}
MAX_LEN=${3:-256}
THREADS=${4:-2}
ROUNDS=${5:-3}
DATA=../shared/data/hh-harmless-train.jsonl
MODEL=models/all-minilm-l6-v2
PY=${PYTHON:-.venv-ref/bin/python}
ENGINE=target/release/engine
[ -x "$ENGINE" ] || { echo "build first: cargo build --release -p engine" >&2; exit 1; }
[ -f "$DATA" ] || { echo "missing $DATA" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -n "$PAIRS" "$DATA" > "$work/pairs.jsonl"

ours() { # $1 = bucket
  RAYON_NUM_THREADS=$THREADS "$ENGINE" train --data "$work/pairs.jsonl" --out "$work/rm-$1" --backbone "$MODEL" \
    --epochs 1 --batch-size "$BATCH" --max-len "$MAX_LEN" --threads "$THREADS" --checkpoint-every 0 \
    --bucket "$1" --quiet | sed -n 's/.* \([0-9.]*\) pairs\/s$/\1/p'
}
torch_run() { # transformers' warnings go to a file, shown only if the run fails
  OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" scripts/rm_reference.py bench --model "$MODEL" \
    --data "$work/pairs.jsonl" --batch-size "$BATCH" --max-len "$MAX_LEN" --threads "$THREADS" \
    --steps $(( PAIRS / BATCH - 1 )) --warmup 1 > "$work/torch.json" 2> "$work/torch.err" \
    || { cat "$work/torch.err" >&2; return 1; }
  python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["pairs_per_s"])' < "$work/torch.json"
}
bucketed=() unbucketed=() torch=()
for round in $(seq "$ROUNDS"); do
  bucketed+=("$(ours 32)")
  unbucketed+=("$(ours 1)")
  torch+=("$(torch_run)")
  echo "round $round: engine ${bucketed[-1]}, engine --bucket 1 ${unbucketed[-1]}, PyTorch ${torch[-1]} pairs/s" >&2
done
python3 - "${bucketed[*]}" "${unbucketed[*]}" "${torch[*]}" "$PAIRS" "$BATCH" "$MAX_LEN" "$THREADS" "$ROUNDS" <<'PY'
import statistics, sys
b, u, t = ([float(x) for x in arg.split()] for arg in sys.argv[1:4])
pairs, batch, max_len, threads, rounds = sys.argv[4:]
mb, mu, mt = statistics.median(b), statistics.median(u), statistics.median(t)
runs = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
print(f"reward-model training, {pairs} pairs of hh-harmless-train, batch {batch}, max_len {max_len}, {threads} threads, median of {rounds} rounds")
print(f"  engine (length bucketing):     {mb:7.3f} pairs/s   {mb / mt:5.2f}x PyTorch   (runs: {runs(b)})")
print(f"  engine (--bucket 1):           {mu:7.3f} pairs/s   {mu / mt:5.2f}x PyTorch   (runs: {runs(u)})")
print(f"  PyTorch reference:             {mt:7.3f} pairs/s               (runs: {runs(t)})")
PY
