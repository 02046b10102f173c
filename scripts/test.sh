#!/usr/bin/env bash
# Quickstart, command 2: set everything up, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
cargo xtask test-c-pack
