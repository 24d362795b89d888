#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit and integration tests
# (against an in-process s3s-fs S3 server), then the Python interop tests
# that drive the built quiver-server binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${QUIVER_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating the Python environment in $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace -- --test-threads 2

echo "==> python interop tests"
cargo build --quiet -p quiver-server --bin quiver-server
QUIVER_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/quiver-server" "$venv/bin/python" -m pytest -q tests/python
