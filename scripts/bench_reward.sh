#!/usr/bin/env bash
# Reward-model training speed: `engine train` against a PyTorch reference of the same model
# (all-MiniLM-L6-v2 + BertForSequenceClassification head), loss (Bradley-Terry), optimizer
# (AdamW, clipping), batch size, max length and thread count, on the same pairs.
#
#   scripts/bench_reward.sh [PAIRS] [BATCH] [MAX_LEN] [THREADS]     (defaults 64 8 256 2)
#
# Needs a release build (cargo build --release -p engine), the reference venv .venv-ref
# (see scripts/rm_reference.py) and ../shared/data/hh-harmless-train.jsonl.
# Prints pairs/s of: ours with length bucketing (the default), ours without (--bucket 1,
# batches in shuffled order, padded to their longest like the reference), PyTorch, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-64}
BATCH=${2:-8}
MAX_LEN=${3:-256}
THREADS=${4:-2}
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
bucketed=$(ours 32)
unbucketed=$(ours 1)
torch=$(OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" scripts/rm_reference.py bench --model "$MODEL" \
  --data "$work/pairs.jsonl" --batch-size "$BATCH" --max-len "$MAX_LEN" --threads "$THREADS" \
  --steps $(( PAIRS / BATCH - 1 )) --warmup 1 | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["pairs_per_s"])')
python3 - "$bucketed" "$unbucketed" "$torch" "$PAIRS" "$BATCH" "$MAX_LEN" "$THREADS" <<'PY'
import sys
b, u, t = map(float, sys.argv[1:4])
pairs, batch, max_len, threads = sys.argv[4:]
print(f"reward-model training, {pairs} pairs of hh-harmless-train, batch {batch}, max_len {max_len}, {threads} threads")
print(f"  engine (length bucketing):     {b:7.3f} pairs/s   {b / t:5.2f}x PyTorch")
print(f"  engine (--bucket 1):           {u:7.3f} pairs/s   {u / t:5.2f}x PyTorch")
print(f"  PyTorch reference:             {t:7.3f} pairs/s")
PY
