#!/usr/bin/env bash
# llama-cpp-python's OpenAI-compatible server, for the remote judge's integration test
# (tests/remote_judge.rs) and the judge benchmark (scripts/bench_judge.py).
#
#   scripts/llama_server.sh --install          create .venv-llama with llama-cpp-python[server]
#                                               (builds llama.cpp from source: cmake and a C++
#                                               compiler; see BENCHMARKS.md for how long it takes;
#                                               nothing to do when it is already there)
#   scripts/llama_server.sh [--model GGUF] [--port 8081] [--host 127.0.0.1] [--threads 2]
#                                               serve GGUF (default: the embedded SmolLM2 judge)
#
# The server must be started with `--logits_all True`: without it llama-cpp-python refuses
# `logprobs` on completions, and the remote judge needs the top log-probabilities.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LLAMA_VENV:-$root/.venv-llama}"
model="$root/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
host=127.0.0.1
port=8081
threads=2

# The version the tests and benchmarks were written against (its server takes only string
# prompts; see tests/remote_judge.rs).
LLAMA_CPP_PYTHON=0.3.36

if [[ "${1:-}" == "--install" ]]; then
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import llama_cpp, sys
sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON')" 2>/dev/null; then
        echo "llama-cpp-python $LLAMA_CPP_PYTHON: already in $venv"
        exit 0
    fi
    echo "llama-cpp-python $LLAMA_CPP_PYTHON: building llama.cpp from source into $venv (minutes)"
    python3 -m venv "$venv"
    start=$(date +%s)
    # Only the library and its Python bindings (llama.cpp's tests and examples are not
    # needed); GGML_NATIVE tunes the kernels to this CPU, as a benchmark wants.
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
        "$venv/bin/pip" install --disable-pip-version-check -q "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
    echo "llama-cpp-python installed into $venv in $(( $(date +%s) - start )) s"
    exit 0
fi

while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --host) host="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        *) echo "llama_server.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [[ ! -x "$venv/bin/python" ]]; then
    echo "llama_server.sh: $venv is missing; run scripts/llama_server.sh --install" >&2
    exit 1
fi

exec "$venv/bin/python" -m llama_cpp.server \
    --model "$model" --host "$host" --port "$port" \
    --n_ctx 2048 --n_threads "$threads" --n_threads_batch "$threads" \
    --logits_all True --verbose False
