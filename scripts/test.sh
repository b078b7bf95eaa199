#!/usr/bin/env bash
# The whole test suite: what the README tells you to run and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo bench --locked --no-run
cargo test --locked --all-targets
