#!/usr/bin/env bash
# The whole test suite: what the README tells you to run and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# --all-targets also builds every criterion bench and runs each once as a smoke test
# (a release `cargo bench --no-run` would double the build time of a fresh machine).
cargo test --locked --all-targets
