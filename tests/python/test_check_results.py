"""tests/bench/check_results.py: the byte count check passes Arrow bytes
counted once per buffer and fails bytes counted once per column."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("check_results", ROOT / "tests" / "bench" / "check_results.py")
check_results = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_results)

MIB = 1 << 20
COMMAND = "cargo build --release --workspace && target/release/quiver-bench pushdown"


def measurement(mode, arrow_bytes, sent):
    return {"workload": "pushdown", "case": "100% of rows, all cols", "mode": mode,
            "arrow_bytes": arrow_bytes, "bytes_to_client": sent}


def test_bytes_counted_once_per_buffer_pass():
    # 16 columns of 4 MiB sent in messages whose framing adds a little.
    sent = 64 * MIB + 20_000
    check_results.check_counted_bytes([measurement("quiver-warm", 64 * MIB, sent)], COMMAND)


def test_bytes_counted_once_per_column_fail():
    sent = 64 * MIB + 20_000
    with pytest.raises(AssertionError, match="counted"):
        check_results.check_counted_bytes([measurement("quiver-warm", 16 * 64 * MIB, sent)], COMMAND)


def test_baselines_small_answers_and_compressed_streams_are_not_checked():
    checked = measurement("quiver-warm", 64 * MIB, 64 * MIB + 20_000)
    check_results.check_counted_bytes([measurement("datafusion", 30 * MIB, 10 * MIB), checked], COMMAND)
    check_results.check_counted_bytes([measurement("quiver-cold", 5_000, 9_000), checked], COMMAND)
    check_results.check_counted_bytes(
        [measurement("quiver-warm", 3 * 64 * MIB, 64 * MIB)], COMMAND + " --ipc-compression zstd")


def test_a_run_with_nothing_to_check_fails():
    with pytest.raises(AssertionError, match="no Quiver answer"):
        check_results.check_counted_bytes([measurement("quiver-cold", 5_000, 9_000)], COMMAND)
