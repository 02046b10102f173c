#!/usr/bin/env bash
# The judge benchmark (see scripts/bench_judge.py and BENCHMARKS.md): our judge, HF
# transformers and llama.cpp on the same prompts. Needs .venv-ref (torch, transformers<5,
# gguf); .venv-llama (scripts/llama_server.sh --install) adds the llama.cpp rows.
#
#   scripts/bench_judge.sh [--samples 8] [--questions 25] [--repeats 1] [--json out.json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${REF_PYTHON:-$root/.venv-ref/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "bench_judge.sh: $python is missing; create it as scripts/judge_reference.py says, plus torch" >&2
    exit 1
fi
cd "$root"
exec "$python" scripts/bench_judge.py "$@"
