#!/usr/bin/env bash
# The test command: installs prerequisites, checks formatting and lints, runs every test
# (unit, golden-data, fuzz-mirror and interop tests against ffmpeg, GStreamer and mpv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One clean build: incremental state would only cost disk (GBs across the test binaries).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
python3 -m unittest discover -s scripts/whisper-model  # the model converter's tests
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-proto-deps.sh
# The fuzz targets (outside the workspace: running them needs nightly and cargo-fuzz) must
# still compile: checked on stable without linking libFuzzer, in the main target dir so the
# shared crates are not built twice.
cargo check --manifest-path fuzz/Cargo.toml --no-default-features --bins --locked --target-dir target
# The interop tests each run a server and a real player; two at a time fits 2 cores.
cargo test --workspace --locked -- --test-threads 2
