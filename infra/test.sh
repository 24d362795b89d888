#!/usr/bin/env bash
# Runs every test: import cycles between modules, formatting and lints, the
# Rust unit and integration tests (against an in-process s3s-fs S3 server),
# the Python interop tests that drive the built quiver-server binary with
# real clients, and a tiny run of the benchmark suite that checks it still
# produces well-formed reports and plots, the Prometheus rules and dashboard
# queries (promtool), the container and Helm deployment checks, and the
# Terraform static checks.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${QUIVER_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating the Python environment in $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "==> import cycles between modules"
python3 infra/check_cycles.py

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# One build of every target, so binaries and tests share one feature set.
echo "==> cargo build"
cargo build --workspace --all-targets --quiet

echo "==> cargo test"
cargo test --workspace -- --test-threads 2

# The arrow-rs Flight SQL command line, driven by tests/python/test_flight_sql.py.
# Built from crates.io in a target directory of its own (so it never waits
# on the workspace's build lock) the first time; the binary is kept.
tools="$HOME/.cache/quiver-tools"
flight_sql_client="$tools/bin/flight_sql_client"
if [ ! -x "$flight_sql_client" ]; then
  echo "==> installing flight_sql_client (arrow-flight 59.3.2)"
  # Without all three features cargo installs nothing and still exits 0.
  CARGO_TARGET_DIR="$tools/target" cargo install arrow-flight@59.3.2 \
    --features "cli flight-sql tls-ring" --locked --root "$tools" --quiet
  rm -rf "$tools/target"
  if [ ! -x "$flight_sql_client" ]; then
    echo "cargo install arrow-flight did not install $flight_sql_client" >&2
    exit 1
  fi
fi

echo "==> python interop tests"
QUIVER_SERVER_BIN="$target/debug/quiver-server" QUIVER_FLIGHT_SQL_CLIENT="$flight_sql_client" \
  "$venv/bin/python" -m pytest -q tests/python

echo "==> benchmark suite, quick"
out="$(mktemp -d)"
"$target/debug/quiver-bench" --quick --out "$out" > "$out/stdout.txt"
"$target/debug/quiver-bench" node --file-mb 4 --files 1 --clients 2 --runs 1 --cache-disk-mib 256 --out "$out" > "$out/node-stdout.txt"
"$target/debug/quiver-bench" cluster --quick --out "$out" > "$out/cluster-stdout.txt"
"$target/debug/quiver-bench" tpch --quick --out "$out" > "$out/tpch-stdout.txt"
"$target/debug/quiver-bench" tpch --quick --nodes 3 --out "$out/tpch-cluster" > "$out/tpch-cluster-stdout.txt"
"$target/debug/quiver-bench" presign --quick --out "$out" > "$out/presign-stdout.txt"
"$target/debug/quiver-bench" delta --quick --out "$out" > "$out/delta-stdout.txt"
"$target/debug/quiver-bench" load --quick --out "$out" > "$out/load-stdout.txt"
"$target/debug/quiver-bench" policies --quick --live --out "$out" > "$out/policies-stdout.txt"
"$target/debug/quiver-bench" hot --quick --rows 60000 --runs 1 --hot-mib 256 --out "$out" > "$out/hot-stdout.txt"
"$venv/bin/python" tests/bench/check_results.py "$out"
rm -rf "$out"

echo "==> Prometheus rules and dashboard queries"
bash infra/check-rules.sh

echo "==> container image and Helm chart"
bash infra/check-deploy.sh

echo "==> terraform static checks"
bash infra/check-terraform.sh
