#!/usr/bin/env bash
# candle's element-wise thread pool (engine/src/process.rs): the engine's setting
# (CANDLE_NUM_THREADS=1, no pool workers) against candle's default (as many threads as
# rayon), alternating ROUNDS times in one go on the same machine:
#   - the judge: `cargo bench -p engine --bench judge` on the first SAMPLES demo samples x
#     25 questions, methods full, prefix, prefix_batched and batched_x2 (see that bench);
#   - training: `engine train` on the 48 demo pairs, MiniLM, 1 epoch, batch 8, max_len 256.
# Prints each run, then the median of each setting and the ratio (candle default / engine).
#
#   cargo build --release -p engine && scripts/bench_candle_pool.sh [SAMPLES] [ROUNDS] [THREADS]
#   (defaults: 4 samples, 3 rounds, 2 threads; scripts/setup.sh downloads the models)
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-4}
rounds=${2:-3}
threads=${3:-2}
out="$PWD/runs/bench-candle-pool"  # absolute: cargo bench runs in engine/
rm -rf "$out"
mkdir -p "$out"
python3 scripts/bench_judge.py --write-input "$out/in.json" --samples "$samples" \
    --methods full,prefix,prefix_batched,batched_x2
cargo bench -q -p engine --bench judge --no-run

export RAYON_NUM_THREADS=$threads
# "engine": CANDLE_NUM_THREADS unset, so process::init sets 1; "candle": candle's default.
unset CANDLE_NUM_THREADS
for round in $(seq 1 "$rounds"); do
    for s in engine candle; do
        vars=()
        [[ $s == candle ]] && vars=("CANDLE_NUM_THREADS=$threads")
        env "${vars[@]}" cargo bench -q -p engine --bench judge -- \
            --input "$out/in.json" --output "$out/judge-$s-$round.json" > /dev/null 2> "$out/judge-$s-$round.log"
        rm -rf "$out/rm"
        env "${vars[@]}" target/release/engine train --data data/demo.jsonl --out "$out/rm" \
            --backbone models/all-minilm-l6-v2 --epochs 1 --batch-size 8 --max-len 256 --threads "$threads" \
            --checkpoint-every 0 -q > "$out/train-$s-$round.log" 2>&1
        echo "round $round $s: $(python3 -c "
import json; d = json.load(open('$out/judge-$s-$round.json'))
print(' '.join(f'{m} {v[\"seconds\"]:.2f} s' for m, v in d['methods'].items()))") ;" \
             "train $(grep -o '[0-9.]* pairs/s' "$out/train-$s-$round.log")"
    done
done

python3 - "$out" "$rounds" <<'EOF'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def judge(s, m):
    return statistics.median(json.load(open(f"{out}/judge-{s}-{r}.json"))["methods"][m]["seconds"] for r in range(1, rounds + 1))
def train(s):
    return statistics.median(float(re.search(r"([0-9.]+) pairs/s", open(f"{out}/train-{s}-{r}.log").read()).group(1))
                             for r in range(1, rounds + 1))
print(f"medians of {rounds} rounds: engine setting (CANDLE_NUM_THREADS=1) vs candle's default")
for m in ["full", "prefix", "prefix_batched", "batched_x2"]:
    e, c = judge("engine", m), judge("candle", m)
    print(f"  judge {m:15} {e:7.2f} s vs {c:7.2f} s: engine setting {c / e:.2f}x as fast")
e, c = train("engine"), train("candle")
print(f"  train {'(pairs/s)':15} {e:7.2f}   vs {c:7.2f}  : engine setting {e / c:.2f}x as fast")
EOF
