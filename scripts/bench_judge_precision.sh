#!/usr/bin/env bash
# The judge's two ways of holding GGUF weights on the CPU (engine/src/judge/candle.rs,
# `Precision`): dequantised to f32 at load, against kept quantised and dequantised a tile
# at a time inside each product (engine/src/judge/quantized.rs). Runs
# `cargo bench -p engine --bench judge` on the first SAMPLES demo samples x 25 questions,
# methods full (whole prompts, as the paper rates) and prefix_batched (what scoring runs),
# the two precisions alternating ROUNDS times in one go. Prints each run, then the medians,
# prefill tokens/s and the ratio. Needs no Python packages.
#
#   scripts/bench_judge_precision.sh [SAMPLES] [ROUNDS]   (defaults: 2 samples, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-2}
rounds=${2:-3}
out="$PWD/runs/bench-judge-precision" # absolute: cargo bench runs in engine/
rm -rf "$out"
mkdir -p "$out"
for p in f32 quantized; do
    python3 scripts/bench_judge.py --write-input "$out/in-$p.json" --samples "$samples" --precision "$p" \
        --methods full,prefix_batched
done
cargo bench -q -p engine --bench judge --no-run

for round in $(seq 1 "$rounds"); do
    for p in f32 quantized; do
        cargo bench -q -p engine --bench judge -- --input "$out/in-$p.json" --output "$out/$p-$round.json" \
            > /dev/null 2> "$out/$p-$round.log"
        echo "round $round $p: $(python3 -c "
import json; d = json.load(open('$out/$p-$round.json'))
print(' '.join(f'{m} {v[\"seconds\"]:.2f} s' for m, v in d['methods'].items()))")"
    done
done

python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
runs = {p: [json.load(open(f"{out}/{p}-{r}.json")) for r in range(1, rounds + 1)] for p in ("f32", "quantized")}
print(f"{runs['f32'][0]['model'].split('/')[-1]}, {runs['f32'][0]['threads']} threads, medians of {rounds} rounds")
for m in ("full", "prefix_batched"):
    sec = {p: statistics.median(d["methods"][m]["seconds"] for d in runs[p]) for p in runs}
    tokens = runs["f32"][0]["methods"][m]["tokens"]
    print(f"  {m:15} f32 {sec['f32']:6.2f} s ({tokens / sec['f32']:4.0f} tok/s), kept quantised "
          f"{sec['quantized']:6.2f} s ({tokens / sec['quantized']:4.0f} tok/s): f32 {sec['quantized'] / sec['f32']:.2f}x as fast")
EOF
