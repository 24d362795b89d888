"""Pre-signed endpoints with pyarrow, against the real quiver-server binary
and an S3 server that checks SigV4 and URL expiry (the testkit's s3s-fs, run
as `quiver-test-s3`).

Every answer read through a URL is compared with datafusion-python reading
the same Parquet file directly.
"""

import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import datafusion
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))

import presigned_read  # noqa: E402
import quiver_flight  # noqa: E402

from conftest import Server, s3_serving  # noqa: E402

KEY = "events/day.parquet"


def events(rows: int = 200_000) -> pa.Table:
    rng = random.Random(1)
    ids = pa.array(range(rows), pa.int64())
    return pa.table({
        "id": ids,
        "user": pa.array([f"user-{i % 997}" for i in range(rows)]),
        "amount": pa.array([(i * 37 % 10_000) / 100 for i in range(rows)], pa.float64()),
        "kind": pa.array([["click", "view", "buy", "share"][i % 4] for i in range(rows)]),
        # Random text, so that this column is most of the file's bytes.
        "note": pa.array([f"{rng.getrandbits(256):064x}" for _ in range(rows)]),
    })


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    (root / "lake" / "events").mkdir(parents=True)
    local = root / "lake" / KEY
    pq.write_table(events(), local, row_group_size=25_000)
    with s3_serving(root) as source:
        tmp = tmp_path_factory.mktemp("quiver")
        config = tmp / "quiver.toml"
        config.write_text(source + """
[cache]
chunk = "64KiB"

[miss]
policy = "presign"
""")
        server = Server(tmp / "node", "--config", str(config))
        yield server, local
        assert server.stop() == 0, server.logs()


def direct(local: Path, columns, filter, limit=None) -> pa.Table:
    ctx = datafusion.SessionContext()
    ctx.register_parquet("t", str(local))
    projection = ", ".join(columns) if columns else "*"
    sql = f"SELECT {projection} FROM t" + (f" WHERE {filter}" if filter else "")
    if limit is not None:
        sql += f" LIMIT {limit}"
    return ctx.sql(sql).to_arrow_table()


def sorted_rows(table: pa.Table) -> list:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def make_cold(server) -> None:
    """Waits for background warming to finish, then evicts the object, so
    the next plan sees it cold."""
    client = fl.connect(f"grpc://127.0.0.1:{server.port}")
    deadline = time.time() + 60
    while json.loads(next(iter(client.do_action(("stats", b"")))).body.to_pybytes())["warm"]["queued"]:
        assert time.time() < deadline, "warming did not finish"
        time.sleep(0.05)
    body = json.dumps({"source": "lake", "path": KEY}).encode()
    list(client.do_action(("evict", body)))
    client.close()


def plan(server, request: dict) -> fl.FlightInfo:
    with quiver_flight.Clients() as clients:
        return quiver_flight.flight_info(clients, f"grpc://127.0.0.1:{server.port}", request)


CASES = [
    (["id", "amount"], "amount > 99.5"),
    (["user"], "kind = 'buy' AND id % 7 = 3"),
    (None, "id BETWEEN 1000 AND 1200"),
    (["kind", "id"], None),
    (["note"], "user = 'user-5'"),
]


@pytest.mark.parametrize("columns,filter", CASES)
def test_the_example_reads_a_presigned_endpoint_like_a_direct_read(lake, columns, filter):
    server, local = lake
    make_cold(server)
    request = quiver_flight.scan_request("lake", KEY, columns, filter)
    request["accept"] = ["flight", "presigned"]
    info = plan(server, request)
    assert len(info.endpoints) == 1
    ep = info.endpoints[0]
    meta = json.loads(ep.app_metadata or b"{}")
    assert meta.get("kind") == "presigned", ep
    assert ep.locations[0].uri.decode().startswith("http://")
    assert meta["source"] == "lake" and meta["path"] == KEY and meta["format"] == "parquet"
    assert meta["size"] == local.stat().st_size
    ticket = json.loads(ep.ticket.ticket)
    source = presigned_read.RangeFile(ep.locations[0].uri.decode(), meta["size"], meta["etag"])
    got = presigned_read.read_presigned(ep.locations[0].uri.decode(), meta, ticket, source)
    want = direct(local, columns, filter)
    assert got.schema.names == want.schema.names
    assert sorted_rows(got) == sorted_rows(want)
    if columns and "note" not in columns and (filter is None or "note" not in filter):
        # Only the footer and the needed column chunks were fetched, not the
        # large `note` column.
        assert source.bytes < meta["size"] / 2, (source.bytes, meta["size"])


def test_a_client_that_does_not_opt_in_gets_flight_and_the_url_cannot_write(lake):
    server, local = lake
    make_cold(server)
    info = plan(server, quiver_flight.scan_request("lake", KEY, ["id"], "id < 10"))
    assert info.endpoints[0].locations[0].uri.decode().startswith("grpc://")
    request = quiver_flight.scan_request("lake", KEY, ["amount"], "amount < 0.5")
    request["accept"] = ["flight", "presigned"]
    ep = plan(server, request).endpoints[0]
    meta = json.loads(ep.app_metadata or b"{}")
    assert meta.get("kind") == "presigned", ep
    put = urllib.request.Request(ep.locations[0].uri.decode(), data=b"overwritten", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=30)
    assert refused.value.code == 403
    assert pq.read_metadata(local).num_rows == 200_000


def test_the_example_runs_from_the_command_line(lake):
    server, local = lake
    make_cold(server)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "presigned_read.py"), "--endpoint", f"grpc://127.0.0.1:{server.port}",
         "--source", "lake", "--path", KEY, "--columns", "id,kind", "--filter", "kind = 'share'"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    want = direct(local, ["id", "kind"], "kind = 'share'").num_rows
    assert f"{KEY}: {want} rows via presigned" in out, out
