#!/usr/bin/env bash
# Judge-bound scoring, end to end: `engine score` with all 100 judge rules on the first
# PAIRS pairs of the demo data, once with the host batching each pack's questions about a
# sample into one forward pass (`[judge] batch = true`, the default) and once asking them
# one by one (`batch = false`). The two runs alternate ROUNDS times in one go; the script
# prints each run's wall time, the median of each, their ratio, and the largest score
# difference between the two score files (batching changes numbers only by rounding).
#
#   cargo build --release -p engine && scripts/bench_scoring.sh [PAIRS] [ROUNDS] [THREADS]
#   (defaults: 3 pairs, 3 rounds, 2 threads; scripts/setup.sh downloads the judge model)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
rounds=${2:-3}
threads=${3:-2}
engine=target/release/engine
out=runs/bench-scoring
rm -rf "$out"
mkdir -p "$out"
head -n "$pairs" data/demo.jsonl > "$out/pairs.jsonl"
cp scripts/jobs/judge-all.toml "$out/batched.toml"
sed 's/^batch = true$/batch = false/' scripts/jobs/judge-all.toml > "$out/unbatched.toml"
grep -q '^batch = false$' "$out/unbatched.toml"

for round in $(seq 1 "$rounds"); do
    for mode in batched unbatched; do
        rm -f "$out/$mode.jsonl"
        start=$(date +%s%N)
        "$engine" score --config "$out/$mode.toml" --input "$out/pairs.jsonl" --out "$out/$mode.jsonl" \
            -j "$threads" --quiet > /dev/null 2> "$out/$mode.log"
        end=$(date +%s%N)
        ms=$(( (end - start) / 1000000 ))
        secs=$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))
        echo "round $round $mode: $secs s ($(grep -o '[0-9]* questions' "$out/$mode.log"))"
        echo "$mode $secs" >> "$out/times.txt"
    done
done

python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
times = {}
for line in open(f"{out}/times.txt"):
    mode, secs = line.split()
    times.setdefault(mode, []).append(float(secs))
b, u = statistics.median(times["batched"]), statistics.median(times["unbatched"])
def scores(mode):
    rows = [json.loads(l) for l in open(f"{out}/{mode}.jsonl")]
    return {(r["sample"], r["rule"]): r for r in rows}
sb, su = scores("batched"), scores("unbatched")
assert sb.keys() == su.keys(), "the two runs scored different cells"
bad = [k for k in sb if sb[k]["status"] != "ok" or su[k]["status"] != "ok"]
delta = max(max(abs(sb[k]["score"] - su[k]["score"]), abs(sb[k]["relevance"] - su[k]["relevance"]))
            for k in sb if k not in bad)
print(f"{len(sb)} scores per run ({len(bad)} not ok)")
print(f"median wall time: batched {b:.1f} s, unbatched {u:.1f} s; batched is {u / b:.2f}x faster")
print(f"largest score or relevance difference between the runs: {delta:.2e}")
PY
