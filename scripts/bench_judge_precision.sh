#!/usr/bin/env bash
# The judge's ways of holding GGUF weights on the CPU (engine/src/judge/candle.rs,
# `Precision`): dequantised to f32 at load; kept quantised and dequantised a tile at a time
# inside each product (engine/src/judge/quantized.rs, `quantized`); kept quantised and
# multiplied with 8-bit activations by integer kernels (nn/src/quant, `int8`). Runs
# `cargo bench -p engine --bench judge` on the first SAMPLES demo samples x 25 questions,
# methods full (whole prompts, as the paper rates) and prefix_batched (what scoring runs),
# the precisions alternating ROUNDS times in one go. Prints each run, then the medians,
# prefill tokens/s and the ratios to f32. Needs no Python packages.
#
#   scripts/bench_judge_precision.sh [SAMPLES] [ROUNDS] [MODEL]
#     defaults: 2 samples, 3 rounds, smollm2 (or qwen1.5b); PRECISIONS="f32 quantized int8"
#     picks the precisions (the 1.5B in f32 takes 6 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-2}
rounds=${2:-3}
model=${3:-smollm2}
read -r -a precisions <<<"${PRECISIONS:-f32 quantized int8}"
out="$PWD/runs/bench-judge-precision-$model" # absolute: cargo bench runs in engine/
rm -rf "$out"
mkdir -p "$out"
for p in "${precisions[@]}"; do
    python3 scripts/bench_judge.py --write-input "$out/in-$p.json" --samples "$samples" --precision "$p" \
        --model "$model" --methods full,prefix_batched
done
cargo bench -q -p engine --bench judge --no-run

for round in $(seq 1 "$rounds"); do
    for p in "${precisions[@]}"; do
        cargo bench -q -p engine --bench judge -- --input "$out/in-$p.json" --output "$out/$p-$round.json" \
            > /dev/null 2> "$out/$p-$round.log"
        echo "round $round $p: $(python3 -c "
import json; d = json.load(open('$out/$p-$round.json'))
print(' '.join(f'{m} {v[\"seconds\"]:.2f} s' for m, v in d['methods'].items()))")"
    done
done

python3 - "$out" "$rounds" "${precisions[@]}" <<'PY'
import json, statistics, sys
out, rounds, precisions = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runs = {p: [json.load(open(f"{out}/{p}-{r}.json")) for r in range(1, rounds + 1)] for p in precisions}
first = runs[precisions[0]][0]
print(f"{first['model'].split('/')[-1]}, {first['threads']} threads, medians of {rounds} rounds")
base = precisions[0]
for m in ("full", "prefix_batched"):
    sec = {p: statistics.median(d["methods"][m]["seconds"] for d in runs[p]) for p in runs}
    tokens = first["methods"][m]["tokens"]
    cells = ", ".join(f"{p} {sec[p]:6.2f} s ({tokens / sec[p]:4.0f} tok/s, {sec[base] / sec[p]:.2f}x {base})"
                      for p in precisions)
    print(f"  {m:15} {cells}")
PY
