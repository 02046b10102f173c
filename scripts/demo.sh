#!/usr/bin/env bash
# Quickstart, command 1: set everything up, then run the main job on the embedded defaults
# (rules.toml: the bundled rule packs and the embedded judge over the demo data in
# data/demo.jsonl; the embedded MiniLM encoder for the reward model). Writes runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p engine
target/release/engine rules verify --config rules.toml
target/release/engine run --config rules.toml "$@"
