#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit and integration tests
# (against an in-process s3s-fs S3 server), the Python interop tests that
# drive the built quiver-server binary with real clients, and a tiny run of
# the benchmark that checks it still produces its reports.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
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

# One build of every target, so binaries and tests share one feature set.
echo "==> cargo build"
cargo build --workspace --all-targets --quiet

echo "==> cargo test"
cargo test --workspace -- --test-threads 2

echo "==> python interop tests"
QUIVER_SERVER_BIN="$target/debug/quiver-server" "$venv/bin/python" -m pytest -q tests/python

echo "==> benchmark smoke run"
out="$(mktemp -d)"
"$target/debug/quiver-bench" node --file-mb 4 --files 1 --clients 2 --runs 1 --out "$out" > "$out/stdout.txt"
"$venv/bin/python" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
report = json.loads((out / "node.json").read_text())
for key in ("datafusion_direct_ms", "quiver_warm_ms", "speedup_warm_vs_direct", "bytes_to_client_fraction", "peak_rss_bytes"):
    assert key in report, key
assert report["rows_matched"] > 0 and report["peak_rss_bytes"] > 0
assert "warm speed-up" in (out / "node.md").read_text()
print("benchmark reports are well-formed")
PY
rm -rf "$out"
