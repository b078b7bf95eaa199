#!/usr/bin/env bash
# The whole test suite: what the README tells you to run and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# --all-targets also builds every criterion bench and runs each once as a smoke test.
cargo test --locked --workspace --all-targets
# Every test of tests/integration/s3.rs (the `s3::` module of the one integration test
# binary) again on regsweep-s3d (the testkit's S3, used for the S3 speed figures): the real
# registry pushes, serves and garbage-collects through it as through moto, and the fault
# proxies pass the client's Host header on, which SigV4 signs. (The S3 cases of other
# modules, in go_reading, online_gc and shapes, run on moto only.)
# `--workspace --tests` keeps the feature set of the build above (`--test integration`
# alone resolves another and rebuilds for 1.5 min); the filter also runs the few unit tests
# under a path with `s3::`, which take no time.
REGSWEEP_TEST_S3=s3d cargo test --locked --workspace --tests s3::
# One static release build serves both: the criterion benches compiled as `cargo bench`
# builds them (not run), and the container image (built, run, pushed and pulled back).
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo bench --locked --no-run --target x86_64-unknown-linux-gnu
bash scripts/image.sh
