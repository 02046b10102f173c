#!/usr/bin/env bash
# Bounded HTTP load test of `engine serve` (OpenRLHF's POST /get_reward) against a reference:
# HF transformers serving the same export behind Python's ThreadingHTTPServer.
#
#   scripts/load_serve.sh [REQUESTS_PER_CELL]            (default 200)
#
# Env: CELL_SECONDS (time cap per cell, default 30), THREADS (server compute threads, default 2),
#      PERF=0 to skip the perf profile, MODEL=DIR to use an existing export.
#
# Cells: 1-item and 32-item requests at 1, 8 and 32 concurrent clients (threads, one keep-alive
# connection each, Python stdlib), REQUESTS_PER_CELL requests or CELL_SECONDS per cell, whichever
# comes first. Queries are prompt + response of data/demo.jsonl as HH-RLHF transcripts
# ("\n\nHuman: ...\n\nAssistant: ..."), which both servers split back into prompt and response.
# Prints requests/s, items/s, p50/p99 latency, errors and the servers' VmRSS before/after for
# both servers, the ratio ours/reference, then where our server's time goes: sequential
# /health vs /score 1-item vs /score 32-item latency (with the default 5 ms batch wait and with
# --max-wait-ms 0), and a short `perf` profile if perf works here.
#
# Everything listens on 127.0.0.1 only; every loop is bounded; the script kills only the PIDs it
# started (on exit, too).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
CELL_SECONDS=${CELL_SECONDS:-30}
THREADS=${THREADS:-2}
ENGINE=target/release/engine
DATA=data/demo.jsonl
OUTDIR=runs/load-serve
MODEL=${MODEL:-$OUTDIR/rm}
PY=.venv-ref/bin/python
mkdir -p "$OUTDIR"
[ -x "$ENGINE" ] || cargo build --release -p engine
if [ ! -x "$PY" ]; then
  python3 -m venv .venv-ref && .venv-ref/bin/pip install torch 'transformers>=4.46,<5'
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "training a tiny reward model into $MODEL (once)" >&2
  "$ENGINE" train --data "$DATA" --out "$MODEL" --epochs 1 --quiet >&2
fi

work=$(mktemp -d "$PWD/$OUTDIR/work.XXXXXX")  # not /tmp: shared machines clean it
PIDS=()
cleanup() {
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME CMD...: runs CMD in the background, waits (at most 120 s) for its
# "listening on http://ADDR" line and for GET /health; sets PID and URL.
start_server() {
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  URL=""
  for _ in $(seq 1200); do
    kill -0 "$PID" 2>/dev/null || { cat "$work/$name.log" >&2; echo "$name exited" >&2; exit 1; }
    URL=$(sed -n 's/.*listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/$name.log" | head -n1)
    if [ -n "$URL" ] && python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/health', timeout=2)" "$URL" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not become healthy in 120 s" >&2; exit 1
}
forget() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
stop_server() { # our own child only, then it is forgotten (no kill of a reused PID later)
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

echo "load_serve: $N requests or ${CELL_SECONDS}s per cell, $THREADS compute threads, model $MODEL, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- ours ---
start_server engine env RAYON_NUM_THREADS="$THREADS" "$ENGINE" serve --model "$MODEL" --addr 127.0.0.1:0
ENGINE_PID=$PID
python3 scripts/load_serve.py client --url "$URL" --data "$DATA" --requests "$N" --cell-seconds "$CELL_SECONDS" \
  --label engine --pid "$ENGINE_PID" --out "$work/ours.json"

# --- where the time goes (ours) ---
python3 scripts/load_serve.py phases --url "$URL" --data "$DATA" --n 10 > "$work/phases5.json"
PERF_TXT=""
if [ "${PERF:-1}" != 0 ] && command -v perf > /dev/null; then
  for cell in 1x32 32x1; do
    # perf samples our server while the client runs (both bounded: 12 s / 150 requests)
    timeout 30 perf record -q -F 499 -e cpu-clock -p "$ENGINE_PID" -o "$work/perf-$cell.data" -- sleep 12 \
      > /dev/null 2>&1 & perf_pid=$!
    PIDS+=("$perf_pid")
    sleep 0.5
    python3 scripts/load_serve.py client --url "$URL" --data "$DATA" --requests 150 --cell-seconds 11 \
      --cells "$cell" --label "perf $cell" --out "$work/perf-$cell.json"
    wait "$perf_pid" || true
    forget "$perf_pid"
    if [ -s "$work/perf-$cell.data" ]; then
      PERF_TXT+="perf, ${cell/x/ items x } clients, top symbols by self time:"$'\n'
      PERF_TXT+=$(timeout 60 perf report -i "$work/perf-$cell.data" --stdio --no-children --sort dso,symbol 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -n 15 || true)$'\n'
    fi
  done
fi
# leak check: the heaviest cells once more; RSS should plateau, not grow with the request count
python3 scripts/load_serve.py client --url "$URL" --data "$DATA" --requests "$N" --cell-seconds "$CELL_SECONDS" \
  --cells 1x32,32x32 --label "leak pass" --pid "$ENGINE_PID" --out "$work/leak.json"
stop_server "$ENGINE_PID"
start_server engine0 env RAYON_NUM_THREADS="$THREADS" "$ENGINE" serve --model "$MODEL" --addr 127.0.0.1:0 --max-wait-ms 0
python3 scripts/load_serve.py phases --url "$URL" --data "$DATA" --n 10 > "$work/phases0.json"
stop_server "$PID"

# --- reference ---
start_server reference env OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" TOKENIZERS_PARALLELISM=false \
  "$PY" scripts/load_serve.py refserver --model "$MODEL" --port 0 --threads "$THREADS"
REF_PID=$PID
python3 scripts/load_serve.py client --url "$URL" --data "$DATA" --requests "$N" --cell-seconds "$CELL_SECONDS" \
  --label reference --pid "$REF_PID" --out "$work/ref.json"
python3 scripts/load_serve.py phases --url "$URL" --data "$DATA" --n 10 > "$work/phases_ref.json"
stop_server "$REF_PID"

cp "$work/ours.json" "$OUTDIR/ours.json"; cp "$work/ref.json" "$OUTDIR/ref.json"
echo
echo "scripts/load_serve.sh $N  (CELL_SECONDS=$CELL_SECONDS, $THREADS compute threads per server, $(date -u +%F))"
echo
python3 scripts/load_serve.py table --ours "$work/ours.json" --ref "$work/ref.json"
echo
echo "sequential latency, one client, median of 10 (ms): GET /health, POST /score 1 item, POST /score 32 items"
python3 - "$work/phases5.json" "$work/phases0.json" "$work/phases_ref.json" <<'PY'
import json, sys
for name, path in zip(["engine serve (--max-wait-ms 5, default)", "engine serve --max-wait-ms 0", "reference"], sys.argv[1:]):
    d = json.load(open(path))
    per_item = (d["score_32"] - d["score_1"]) / 31
    print(f"  {name:40s} health {d['health']:6.2f}  score_1 {d['score_1']:7.2f}  score_32 {d['score_32']:7.2f}"
          f"  -> {per_item:5.2f} ms per extra item, {d['score_1'] - per_item:6.2f} ms fixed per request")
PY
python3 - "$work/ours.json" "$work/leak.json" "$work"/perf-*.json <<'PY'
import json, sys
a, b, *perf = (json.load(open(p)) for p in sys.argv[1:])
n1 = sum(c["requests"] + c["errors"] for c in a["cells"])
n2 = n1 + sum(c["requests"] + c["errors"] for d in [b] + perf for c in d["cells"])
print(f"\nengine serve RSS: {a['rss_warm_kb']/1024:.1f} MiB after warm-up, {a['rss_after_kb']/1024:.1f} MiB after the six cells"
      f" ({n1} requests), {b['rss_after_kb']/1024:.1f} MiB after the perf runs and a second 1x32 + 32x32 pass"
      f" ({n2} requests in all, plus warm-ups); peak {b['rss_peak_kb']/1024:.1f} MiB")
PY
if [ -n "$PERF_TXT" ]; then echo; printf '%s' "$PERF_TXT"; fi
