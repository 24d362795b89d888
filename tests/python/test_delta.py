"""Delta Lake tables through Flight SQL and the CLI, against the `deltalake` package's
own reader of the same version (an independent implementation of the log).

Tables are written at run time with `deltalake` (the delta-rs writer): a
partitioned table taken through appends, a DELETE and an UPDATE (which
rewrite files), OPTIMIZE, an added column and a checkpoint, and a plain
one overwritten. Every query runs twice (cold, then warm) through ADBC and
is compared row for row with DataFusion running the same SQL over the
oracle's table.
"""

import datetime
import decimal
import json
import os
import random
import re
import struct
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import datafusion
import deltalake
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest
from pyroaring import BitMap

from conftest import Server, s3_serving


def value(v):
    """Floats to 12 significant digits: sums add in another order."""
    return float(f"{v:.12g}") + 0.0 if isinstance(v, float) else v


def rows(table: pa.Table) -> list:
    return sorted((tuple(value(v) for v in r) for r in zip(*(c.to_pylist() for c in table.columns))), key=repr)


def sql(conn, query: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def read_delta(path, version=None) -> pa.Table:
    """The table as deltalake's DataFusion reader sees it: the one of its
    readers that applies deletion vectors and column mapping (its pyarrow
    dataset reads neither)."""
    dt = deltalake.DeltaTable(str(path), version=version)
    return pa.table(deltalake.QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())


def oracle(path, query: str, version=None) -> pa.Table:
    """`query` over table `t` as the deltalake reader sees `path`."""
    table = read_delta(path, version)
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]])
    return ctx.sql(query).to_arrow_table()


def batch(rng: random.Random, start: int, n: int, extra: bool = False) -> pa.Table:
    cols = {
        "id": pa.array(range(start, start + n), pa.int64()),
        "amount": pa.array([rng.choice([None, rng.uniform(-1e3, 1e3), 0.0, -0.0]) for _ in range(n)], pa.float64()),
        "name": pa.array([rng.choice(["a", "b", "c", None, "ü"]) for _ in range(n)], pa.string()),
        "region": pa.array([rng.choice(["eu", "us", "apac"]) for _ in range(n)], pa.string()),
        "day": pa.array([datetime.date(2026, 1, 1 + rng.randrange(3)) for _ in range(n)], pa.date32()),
    }
    if extra:
        cols["score"] = pa.array([rng.randrange(-5, 5) for _ in range(n)], pa.int32())
    return pa.table(cols)


QUERIES = [
    "SELECT * FROM {t}",
    "SELECT id, amount FROM {t} WHERE region = 'eu'",
    "SELECT id, name, day FROM {t} WHERE day = DATE '2026-01-02' AND amount > 0",
    "SELECT region, day, count(*) AS n, sum(amount) AS s FROM {t} GROUP BY region, day",
    "SELECT id FROM {t} WHERE name IS NULL OR region <> 'us'",
    "SELECT count(*) AS n FROM {t}",
    "SELECT id, region FROM {t} WHERE id % 7 = 3",
    "SELECT id, name FROM {t} WHERE id BETWEEN 120 AND 180",
    "SELECT count(*) AS n FROM {t} WHERE id > 590 OR id < 5 OR id IS NULL",
    "SELECT id FROM {t} WHERE day > DATE '2026-01-02' AND id >= 300",
]


def committed_at(path, version: int) -> str:
    """When `version` of the table at `path` was committed, as RFC 3339."""
    ms = {h["version"]: h["timestamp"] for h in deltalake.DeltaTable(str(path)).history()}[version]
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat()


def check(conn, path, name: str, version=None, extra_queries=()) -> None:
    """Every query over `name` answers as the oracle over `path`."""
    columns = deltalake.DeltaTable(str(path), version=version).schema().to_arrow().names
    cols = ", ".join(f'"{c}"' for c in columns)
    for q in [*QUERIES, *extra_queries]:
        query = q.replace("SELECT * ", f"SELECT {cols} ")
        want = oracle(path, query.format(t="t"), version)
        for _ in ("cold", "warm"):
            got = sql(conn, query.format(t=name))
            assert got.schema.names == want.schema.names, query
            assert rows(got) == rows(want), query


@pytest.fixture
def lake(tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    config = tmp_path / "quiver.toml"
    config.write_text(f"""
[[source]]
name = "lake"
url = "file://{lake}/"
validate = "1s"

[sql]
refresh = "1s"
""")
    s = Server(tmp_path / "node", "--config", str(config))
    yield s, lake
    assert s.stop() == 0, s.logs()


def refresh(s) -> dict:
    action = fl.connect(f"grpc://127.0.0.1:{s.port}").do_action(fl.Action("refresh-catalog", b""))
    return json.loads(next(action).body.to_pybytes())


def test_delta_tables_answer_as_the_log_says(lake):
    s, root = lake
    rng = random.Random(7)
    sales = root / "shop" / "sales"
    deltalake.write_deltalake(str(sales), batch(rng, 0, 300), partition_by=["region", "day"])
    deltalake.write_deltalake(str(sales), batch(rng, 300, 200), mode="append", partition_by=["region", "day"])
    plain = root / "plain"
    deltalake.write_deltalake(str(plain), batch(rng, 0, 100))

    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    assert refresh(s)["errors"] == []
    # The Delta directories are tables, each once, never also as Parquet.
    tables = sorted((sch["db_schema_name"], t["table_name"])
                    for cat in conn.adbc_get_objects(depth="tables").read_all().to_pylist()
                    for sch in cat["catalog_db_schemas"] for t in sch["db_schema_tables"])
    assert tables == [("default", "plain"), ("shop", "sales")], tables
    # Partition columns are typed as the table declares them.
    schema = conn.adbc_get_table_schema("sales", catalog_filter="lake", db_schema_filter="shop")
    assert schema.field("day").type == pa.date32()
    assert schema.field("region").type == pa.string()
    check(conn, sales, "shop.sales")
    check(conn, plain, "plain")

    # A DELETE and an UPDATE rewrite files: the removed ones stay on disk.
    dt = deltalake.DeltaTable(str(sales))
    dt.delete("amount < 0")
    dt.update(predicate="region = 'us'", updates={"name": "'updated'"})
    deltalake.write_deltalake(str(plain), batch(rng, 1000, 50), mode="overwrite")
    # Deletion vectors enabled (delta-rs still rewrites files; no live file
    # carries a vector, so the table reads).
    dv = root / "dv"
    deltalake.write_deltalake(str(dv), batch(rng, 0, 60), configuration={"delta.enableDeletionVectors": "true"})
    deltalake.DeltaTable(str(dv)).delete("id % 4 = 0")
    assert "deletionVectors" in deltalake.DeltaTable(str(dv)).protocol().reader_features
    assert refresh(s)["errors"] == []
    check(conn, sales, "shop.sales")
    check(conn, plain, "plain")
    got = sql(conn, "SELECT id FROM dv")
    assert sorted(got.column("id").to_pylist()) == [i for i in range(60) if i % 4]

    # OPTIMIZE, an added column, many commits and a checkpoint.
    deltalake.DeltaTable(str(sales)).optimize.compact()
    deltalake.write_deltalake(str(sales), batch(rng, 500, 80, extra=True), mode="append",
                              partition_by=["region", "day"], schema_mode="merge")
    for i in range(11):
        deltalake.write_deltalake(str(sales), batch(rng, 600 + 10 * i, 10, extra=True), mode="append",
                                  partition_by=["region", "day"])
    deltalake.DeltaTable(str(sales)).create_checkpoint()
    assert any(p.name.endswith(".checkpoint.parquet") for p in (sales / "_delta_log").iterdir())
    assert refresh(s)["errors"] == []
    check(conn, sales, "shop.sales", extra_queries=[
        "SELECT id, score FROM {t} WHERE score IS NULL",
        "SELECT region, sum(score) AS s FROM {t} WHERE score > 0 GROUP BY region",
    ])
    conn.close()


def test_snapshots_and_bad_requests(lake):
    s, root = lake
    rng = random.Random(11)
    t = root / "t"
    deltalake.write_deltalake(str(t), batch(rng, 0, 40))
    deltalake.write_deltalake(str(t), batch(rng, 40, 40), mode="append")
    deltalake.DeltaTable(str(t)).delete("id < 10")
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")

    def action(kind, body):
        return json.loads(next(client.do_action(fl.Action(kind, json.dumps(body).encode()))).body.to_pybytes())

    assert action("tables", {"source": "lake", "path": ""}) == {"tables": [{"path": "t/", "format": "delta"}]}
    for version in (0, 1, 2):
        snap = action("table-snapshot", {"source": "lake", "path": "t", "version": version})
        want = deltalake.DeltaTable(str(t), version=version)
        assert snap["version"] == version
        assert sorted(f["path"] for f in snap["files"]) == sorted(
            "t/" + p for p in want.get_add_actions(flatten=True).column("path").to_pylist())
        assert sum(f["rows"] for f in snap["files"]) == want.to_pyarrow_table().num_rows
    latest = action("table-snapshot", {"source": "lake", "path": "t/"})
    assert latest["version"] == 2
    # Time travel by time: the latest version committed at or before it.
    snap = action("table-snapshot", {"source": "lake", "path": "t", "timestamp": committed_at(t, 1)})
    assert snap["version"] == 1

    # pyarrow raises INVALID_ARGUMENT as ArrowInvalid and NOT_FOUND as
    # ArrowKeyError; the message names the gRPC code, asserted too.
    bad, missing = (pa.ArrowInvalid, "invalid argument"), (pa.ArrowKeyError, "not found")

    def refused(kind, body, error, text):
        with pytest.raises(error[0]) as e:
            action(kind, body)
        assert f"Flight returned {error[1]} error" in str(e.value), str(e.value)
        assert text in str(e.value), str(e.value)

    refused("table-snapshot", {"source": "lake", "path": "t", "version": 9}, missing, "latest is 2")
    refused("table-snapshot", {"source": "lake", "path": "nope"}, missing, "not a Delta table")
    refused("table-snapshot", {"source": "lake", "path": "t", "version": 1, "timestamp": "2026-01-01T00:00:00Z"},
            bad, "not both")
    refused("table-snapshot", {"source": "lake", "path": "t", "timestamp": "yesterday"}, bad, "RFC 3339")
    refused("table-snapshot", {"source": "lake", "path": "../t"}, bad, "..")
    refused("table-snapshot", {"source": "lake", "path": "t", "extra": 1}, bad, "unknown field")
    refused("table-snapshot", {"source": "lake", "path": ""}, bad, "not its root")
    refused("table-snapshot", {"source": "nosuch", "path": "t"}, missing, "nosuch")
    refused("tables", {"source": "lake", "path": "t/x.parquet"}, bad, "prefix")
    refused("tables", [1, 2], bad, "tables takes")
    # A log naming a file outside the table's directory is refused, never
    # followed into the rest of the source.
    escape = root / "escape"
    deltalake.write_deltalake(str(escape), batch(rng, 0, 5))
    first = escape / "_delta_log" / "00000000000000000000.json"
    added = [json.loads(line) for line in first.read_text().splitlines()]
    for action_line in added:
        if "add" in action_line:
            action_line["add"]["path"] = "../t/" + action_line["add"]["path"]
    first.write_text("\n".join(json.dumps(a) for a in added) + "\n")
    with pytest.raises(pa.ArrowInvalid) as e:
        action("table-snapshot", {"source": "lake", "path": "escape"})
    assert "precondition failed error" in str(e.value) and "outside its directory" in str(e.value), str(e.value)
    # The node still serves.
    assert {"path": "t/", "format": "delta"} in action("tables", {"source": "lake"})["tables"]


def quiver_cli(s, *args) -> subprocess.CompletedProcess:
    """The `quiver` command line, built beside the server binary."""
    binary = Path(s.binary).parent / "quiver"
    return subprocess.run([str(binary), "--endpoint", f"grpc://127.0.0.1:{s.port}", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_reads_delta_tables_and_their_versions(lake, tmp_path):
    """`quiver sql --table` (QuiverTable::open and ::delta) follows the log,
    at the latest version or at one named with `@v<n>` or `@<time>`."""
    s, root = lake
    rng = random.Random(5)
    t = root / "shop" / "orders"
    deltalake.write_deltalake(str(t), batch(rng, 0, 120), partition_by=["region"])
    deltalake.write_deltalake(str(t), batch(rng, 120, 60), mode="append", partition_by=["region"])
    deltalake.DeltaTable(str(t)).delete("amount < 0 OR name IS NULL")
    at = committed_at(t, 1)
    query = "SELECT id, amount, name, region, day FROM t WHERE id % 3 <> 1"
    for spec, version in [("lake/shop/orders/", None), ("lake/shop/orders/@v0", 0), (f"lake/shop/orders/@{at}", 1)]:
        out = tmp_path / "answer.parquet"
        run = quiver_cli(s, "sql", query, "--table", f"t={spec}", "--format", "parquet", "--output", str(out))
        assert run.returncode == 0, run.stderr
        got = pq.read_table(out)
        want = oracle(t, query, version)
        assert rows(got) == rows(want), spec
    # A version the log does not have, and a plain directory still reads.
    run = quiver_cli(s, "sql", "SELECT 1 FROM t", "--table", "t=lake/shop/orders/@v99")
    assert run.returncode != 0 and "no version 99" in run.stderr, run.stderr
    pq.write_table(batch(rng, 0, 10), root / "flat.parquet")
    (root / "plain").mkdir()
    pq.write_table(batch(rng, 0, 10), root / "plain" / "a.parquet")
    run = quiver_cli(s, "sql", "SELECT count(*) AS n FROM t", "--table", "t=lake/plain/", "--format", "csv")
    assert run.returncode == 0 and run.stdout.splitlines()[1] == "10", run.stderr
    # A live file gone from the store (a VACUUM gone wrong) is an error
    # naming it, never a read of the directory as plain Parquet.
    live = deltalake.DeltaTable(str(t)).get_add_actions(flatten=True).column("path").to_pylist()
    (t / live[0]).unlink()
    time.sleep(1.5)  # the source's listings are trusted for `validate` (1 s)
    run = quiver_cli(s, "sql", "SELECT count(*) FROM t", "--table", "t=lake/shop/orders/")
    assert run.returncode != 0 and "does not hold" in run.stderr, run.stderr


def test_sql_time_travel(lake):
    """`"t@v<n>"` and `"t@<time>"` read older versions through Flight SQL."""
    s, root = lake
    rng = random.Random(3)
    t = root / "shop" / "hist"
    deltalake.write_deltalake(str(t), batch(rng, 0, 50), partition_by=["day"])
    deltalake.write_deltalake(str(t), batch(rng, 50, 50), mode="append", partition_by=["day"])
    deltalake.DeltaTable(str(t)).delete("region = 'eu'")
    (root / "flat").mkdir()
    pq.write_table(batch(rng, 0, 5), root / "flat" / "a.parquet")
    assert refresh(s)["errors"] == []
    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    query = "SELECT id, amount, region, day FROM {t} WHERE id % 2 = 0"
    for version in (0, 1, 2):
        got = sql(conn, query.format(t=f'shop."hist@v{version}"'))
        assert rows(got) == rows(oracle(t, query.format(t="t"), version)), version
    at = committed_at(t, 1)
    got = sql(conn, query.format(t=f'lake.shop."hist@{at}"'))
    assert rows(got) == rows(oracle(t, query.format(t="t"), 1))
    # A version joined with the latest one.
    got = sql(conn, 'SELECT count(*) AS n FROM shop."hist@v1" o JOIN shop.hist n ON o.id = n.id')
    assert got.to_pylist() == [{"n": oracle(t, "SELECT count(*) AS n FROM t").to_pylist()[0]["n"]}]
    for table, text in [('shop."hist@v99"', "no version 99"), ('shop."hist@yesterday"', "RFC 3339"),
                        ('"flat@v1"', "not a Delta table"), ('shop."nope@v1"', "does not exist")]:
        with pytest.raises(adbc_driver_manager.Error) as e:
            sql(conn, f"SELECT * FROM {table}")
        assert text in str(e.value), str(e.value)
    assert sql(conn, "SELECT count(*) AS n FROM shop.hist").num_rows == 1
    conn.close()


def test_delta_on_s3(tmp_path):
    """The log read over S3 (s3s-fs, SigV4 checked) through the node's own
    store: listings from an offset, checkpoints, removed files."""
    root = tmp_path / "s3"
    (root / "lake").mkdir(parents=True)
    rng = random.Random(13)
    t = root / "lake" / "shop" / "sales"
    deltalake.write_deltalake(str(t), batch(rng, 0, 200), partition_by=["region"])
    for i in range(11):
        deltalake.write_deltalake(str(t), batch(rng, 200 + 20 * i, 20), mode="append", partition_by=["region"])
    deltalake.DeltaTable(str(t)).create_checkpoint()
    deltalake.DeltaTable(str(t)).delete("amount > 100")
    with s3_serving(root) as source:
        config = tmp_path / "quiver.toml"
        config.write_text(source)
        s = Server(tmp_path / "node", "--config", str(config))
        try:
            assert refresh(s)["errors"] == []
            conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
            check(conn, t, "shop.sales")
            got = sql(conn, 'SELECT count(*) AS n FROM shop."sales@v5"')
            assert got.to_pylist() == oracle(t, "SELECT count(*) AS n FROM t", 5).to_pylist()
            conn.close()
        finally:
            assert s.stop() == 0, s.logs()


def tpch_queries() -> list:
    """Q1..Q22 as quiver-testkit holds them (testkit/src/tpch.rs): the one
    copy every TPC-H test runs."""
    text = (Path(__file__).parents[2] / "testkit" / "src" / "tpch.rs").read_text()
    found = dict(re.findall(r'const (Q\d+): &str = "\\\n(.*?)";', text, re.S))
    assert len(found) == 22, sorted(found)
    return [(f"q{n}", found[f"Q{n}"]) for n in range(1, 23)]


def number(v):
    """Numbers by value to 9 significant digits: decimal scales and the
    order of float sums differ between engines, the values do not."""
    if isinstance(v, (float, decimal.Decimal)) and not isinstance(v, bool):
        return float(f"{float(v):.9g}") + 0.0
    return v


def test_tpch_as_delta_tables(tmp_path):
    """TPC-H SF 0.1 written as Delta tables (lineitem and orders over two
    commits, with a DELETE that rewrites files and removes rows): the 22
    queries through ADBC equal DataFusion over deltalake's own reader."""
    sample = Server(tmp_path / "sample", "--sample-scale", "0.1")
    assert sample.stop() == 0, sample.logs()
    lake = tmp_path / "lake"
    oracle_ctx = datafusion.SessionContext(
        datafusion.SessionConfig().set("datafusion.sql_parser.parse_float_as_decimal", "true"))
    for name in ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]:
        table = ds.dataset(sample.data_dir / "tpch" / name, format="parquet").to_table()
        path = str(lake / name)
        if name in ("lineitem", "orders"):
            half = table.num_rows // 2
            deltalake.write_deltalake(path, table.slice(0, half))
            deltalake.write_deltalake(path, table.slice(half), mode="append")
            key = "l_orderkey" if name == "lineitem" else "o_orderkey"
            deltalake.DeltaTable(path).delete(f"{key} % 97 = 5")
        else:
            deltalake.write_deltalake(path, table)
        oracle_ctx.register_record_batches(name, [deltalake.DeltaTable(path).to_pyarrow_table().to_batches()])
    config = tmp_path / "quiver.toml"
    config.write_text(f"""
[[source]]
name = "lake"
url = "file://{lake}/"
""")
    s = Server(tmp_path / "node", "--config", str(config))
    try:
        conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
        for name, query in tpch_queries():
            want = oracle_ctx.sql(query).to_arrow_table()
            got = sql(conn, query)
            assert got.schema.names == want.schema.names, name
            norm = lambda t: sorted((tuple(number(v) for v in r) for r in zip(*(c.to_pylist() for c in t.columns))), key=repr)
            assert norm(got) == norm(want), name
        conn.close()
    finally:
        assert s.stop() == 0, s.logs()


def test_files_are_skipped_by_their_statistics(lake):
    """A file whose log statistics prove no row matches is never scanned;
    statistics that do not bound values exactly (floats) skip nothing."""
    s, root = lake
    rng = random.Random(17)
    t = root / "skip"
    for i in range(6):
        deltalake.write_deltalake(str(t), batch(rng, i * 100, 100), mode="append")
    assert refresh(s)["errors"] == []
    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")

    def scans() -> int:
        return json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())["scans"]

    def scanned(query: str) -> tuple:
        before = scans()
        got = sql(conn, query)
        return got, scans() - before

    got, n = scanned("SELECT id FROM skip WHERE id >= 250 AND id < 310")
    assert sorted(got.column("id").to_pylist()) == list(range(250, 310))
    assert n == 2, n
    got, n = scanned("SELECT id FROM skip WHERE id > 10000")
    assert got.num_rows == 0 and n == 0, n
    got, n = scanned("SELECT id FROM skip WHERE amount > 1e9")
    assert got.num_rows == 0 and n == 6, n
    conn.close()


# Deletion vectors. The PyPI writer rewrites files instead of writing
# vectors, so these commits are written by hand, in the Delta protocol's
# format (a Roaring treemap behind a magic number; on disk with a version
# byte, its size and a CRC); deltalake's own reader (the oracle) reads
# them back, so a vector written wrong fails the test on the oracle's side.

Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
DV_MAGIC = 1681511377


def z85(data: bytes) -> str:
    """ZeroMQ's Z85 of `data` (a multiple of 4 bytes)."""
    out = []
    for i in range(0, len(data), 4):
        v = int.from_bytes(data[i:i + 4], "big")
        chunk = ""
        for _ in range(5):
            v, r = divmod(v, 85)
            chunk = Z85[r] + chunk
        out.append(chunk)
    return "".join(out)


def treemap(rows) -> bytes:
    """The portable 64-bit Roaring serialization: 32-bit bitmaps by high bits."""
    by_high = {}
    for r in sorted(set(rows)):
        by_high.setdefault(r >> 32, []).append(r & 0xFFFFFFFF)
    out = struct.pack("<Q", len(by_high))
    for high, lows in sorted(by_high.items()):
        out += struct.pack("<I", high) + BitMap(lows).serialize()
    return out


def stored_vector(table: Path, rows, prefix: str = "dv") -> dict:
    """A deletion vector of `rows` in a file of its own under `table`."""
    blob = struct.pack("<I", DV_MAGIC) + treemap(rows)
    name = uuid.uuid4()
    (table / prefix).mkdir(exist_ok=True)
    # A vector starts after the file's version byte and whatever precedes it.
    padding = b"\x07" * 13
    (table / prefix / f"deletion_vector_{name}.bin").write_bytes(
        b"\x01" + padding + struct.pack(">I", len(blob)) + blob + struct.pack(">I", zlib.crc32(blob)))
    return {"storageType": "u", "pathOrInlineDv": prefix + z85(name.bytes), "offset": 1 + len(padding),
            "sizeInBytes": len(blob), "cardinality": len(set(rows))}


def inline_vector(rows) -> dict:
    blob = struct.pack("<I", DV_MAGIC) + treemap(rows)
    padded = blob + b"\0" * (-len(blob) % 4)
    return {"storageType": "i", "pathOrInlineDv": z85(padded), "sizeInBytes": len(blob),
            "cardinality": len(set(rows))}


def live_adds(table: Path) -> dict:
    """The add actions of the latest version, by path, from its JSON commits."""
    adds = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                adds[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                adds.pop(action["remove"]["path"], None)
    return adds


def commit_vectors(table: Path, vectors: dict) -> None:
    """Commits `vectors` (data file path -> deletion vector): each file is
    removed and added again with its vector, as a DELETE by vectors does."""
    adds = live_adds(table)
    version = max(int(p.stem) for p in (table / "_delta_log").glob("*.json")) + 1
    now = int(time.time() * 1000)
    actions = [{"commitInfo": {"timestamp": now, "operation": "DELETE"}}]
    for path, dv in vectors.items():
        old = adds[path]
        remove = {"path": path, "deletionTimestamp": now, "dataChange": True, "extendedFileMetadata": True,
                  "partitionValues": old["partitionValues"], "size": old["size"]}
        if old.get("deletionVector"):
            remove["deletionVector"] = old["deletionVector"]
        actions += [{"remove": remove}, {"add": dict(old, deletionVector=dv, modificationTime=now)}]
    (table / "_delta_log" / f"{version:020}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def hot_hits(s) -> int:
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")
    return json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())["hot"]["hits"]


def test_deletion_vectors(lake, tmp_path):
    """Rows deleted by deletion vectors (stored and inline, across row
    groups, a whole row group, a vector replaced by a larger one) are never
    returned: Flight SQL cold, warm and from the hot tier, time travel to
    before and after, and the CLI, against deltalake's reader; a hostile
    vector in a ticket gets its code and the node still serves."""
    s, root = lake
    rng = random.Random(23)
    t = root / "shop" / "dv"
    props = deltalake.WriterProperties(max_row_group_size=100)
    config = {"delta.enableDeletionVectors": "true"}
    deltalake.write_deltalake(str(t), batch(rng, 0, 450), partition_by=["region"], configuration=config,
                              writer_properties=props)
    deltalake.write_deltalake(str(t), batch(rng, 450, 300), mode="append", partition_by=["region"],
                              writer_properties=props)
    files = sorted(live_adds(t))
    assert len(files) >= 5, files
    rows_of = {f: pq.ParquetFile(t / f).metadata.num_rows for f in files}
    groups_of = {f: pq.ParquetFile(t / f).metadata.num_row_groups for f in files}
    assert max(groups_of.values()) >= 2, groups_of
    big = max(files, key=lambda f: rows_of[f])
    picked = {
        # Scattered rows over every row group, and the last row.
        big: stored_vector(t, [0, 1, 57, 99, 100, 101, rows_of[big] - 1] + list(range(120, 160))),
        # The whole first row group.
        files[0] if files[0] != big else files[1]: inline_vector(range(min(100, rows_of[files[0]]))),
    }
    other = next(f for f in files if f not in picked)
    picked[other] = inline_vector(range(0, rows_of[other], 3))
    commit_vectors(t, picked)
    # A vector replaced by a larger one, of another kind.
    commit_vectors(t, {big: stored_vector(t, list(range(0, rows_of[big], 2)), prefix="")})
    # deltalake reads the vectors as written.
    assert len(pa.table(deltalake.DeltaTable(str(t)).deletion_vectors())) == 3
    live = read_delta(t).num_rows
    assert live < sum(rows_of.values()), live

    assert refresh(s)["errors"] == []
    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    columns = ", ".join(deltalake.DeltaTable(str(t)).schema().to_arrow().names)
    hits = hot_hits(s)
    for version in (None, 0, 2, 3):
        name = "shop.dv" if version is None else f'shop."dv@v{version}"'
        snapshot = read_delta(t, version)
        ctx = datafusion.SessionContext()
        ctx.register_record_batches("t", [snapshot.to_batches()])
        # A limit the nodes apply counts only live rows.
        for q in [*QUERIES, "SELECT count(*) AS n FROM {t} WHERE region = 'us'",
                  "SELECT count(*) AS n FROM (SELECT id FROM {t} LIMIT 50) x",
                  "SELECT count(*) AS n FROM (SELECT id FROM {t} WHERE region = 'us' LIMIT 400) x"]:
            query = q.replace("SELECT * ", f"SELECT {columns} ")
            want = ctx.sql(query.format(t="t")).to_arrow_table()
            for _ in ("cold", "warm", "hot"):
                got = sql(conn, query.format(t=name))
                assert rows(got) == rows(want), (version, query)
    assert hot_hits(s) > hits, "the hot tier answered none of the scans"
    conn.close()

    out = tmp_path / "dv.parquet"
    run = quiver_cli(s, "sql", "SELECT id, region FROM t WHERE id % 5 <> 2", "--table", "t=lake/shop/dv/",
                     "--format", "parquet", "--output", str(out))
    assert run.returncode == 0, run.stderr
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [read_delta(t).to_batches()])
    assert rows(pq.read_table(out)) == rows(ctx.sql("SELECT id, region FROM t WHERE id % 5 <> 2").to_arrow_table())

    # Hostile vectors in tickets: each refused with its code.
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")
    good = stored_vector(t, [3, 4], prefix="x")

    def ticket(dv: dict, path: str = big) -> fl.Ticket:
        wire = {"table": "shop/dv/", "storage_type": dv["storageType"], "path_or_inline_dv": dv["pathOrInlineDv"],
                "size_in_bytes": dv["sizeInBytes"], "cardinality": dv["cardinality"]}
        if "offset" in dv:
            wire["offset"] = dv["offset"]
        return fl.Ticket(json.dumps({"source": "lake", "path": f"shop/dv/{path}", "deletion_vector": wire}))

    assert client.do_get(ticket(good)).read_all().num_rows == rows_of[big] - 2
    cases = [
        (dict(good, cardinality=3), pa.ArrowException, "data loss"),
        (dict(good, pathOrInlineDv="../" + good["pathOrInlineDv"][1:]), pa.ArrowInvalid, "invalid argument"),
        (dict(good, sizeInBytes=good["sizeInBytes"] + 1), pa.ArrowException, "data loss"),
        (inline_vector([rows_of[big] + 5]), pa.ArrowException, "data loss"),
        ({"storageType": "i", "pathOrInlineDv": "0000", "sizeInBytes": 4, "cardinality": 0}, pa.ArrowInvalid,
         "invalid argument"),
        ({"storageType": "i", "pathOrInlineDv": "00000" * 4, "sizeInBytes": 16, "cardinality": 0}, pa.ArrowException,
         "data loss"),
        # Z85 padding: three bytes, where the kernel reads a 4-byte magic.
        ({"storageType": "i", "pathOrInlineDv": "#0000", "sizeInBytes": 3, "cardinality": 0}, pa.ArrowInvalid,
         "invalid argument"),
        # A prefix that makes the vector's URL name a data file instead.
        (dict(good, pathOrInlineDv=big.split("/")[-1] + "?" + good["pathOrInlineDv"][-20:]), pa.ArrowInvalid,
         "invalid argument"),
        (dict(good, pathOrInlineDv="x#" + good["pathOrInlineDv"][-20:]), pa.ArrowInvalid, "invalid argument"),
    ]
    for dv, error, text in cases:
        with pytest.raises(error) as e:
            client.do_get(ticket(dv)).read_all()
        assert text in str(e.value).lower(), (dv, str(e.value))
    prefix = json.dumps({"source": "lake", "path": "shop/dv/", "deletion_vector": json.loads(
        ticket(good).ticket)["deletion_vector"]})
    with pytest.raises(pa.ArrowInvalid) as e:
        client.get_flight_info(fl.FlightDescriptor.for_command(prefix))
    assert "one object" in str(e.value), str(e.value)
    assert client.do_get(ticket(good)).read_all().num_rows == rows_of[big] - 2


def test_column_mapping(lake):
    """A table that maps columns by name (files hold `col-<uuid>` columns,
    partition values and statistics use those names) reads under its own
    column names, through an append, a DELETE, an UPDATE and partition
    filters, cold and warm, at the latest and an older version; a table
    mapping by id is refused."""
    s, root = lake
    rng = random.Random(29)
    t = root / "shop" / "mapped"
    config = {"delta.columnMapping.mode": "name"}
    deltalake.write_deltalake(str(t), batch(rng, 0, 200), partition_by=["region"], configuration=config)
    # delta-rs does not evolve the schema of a table that maps columns.
    deltalake.write_deltalake(str(t), batch(rng, 200, 150), mode="append", partition_by=["region"])
    deltalake.DeltaTable(str(t)).delete("amount < -500")
    deltalake.DeltaTable(str(t)).update(predicate="region = 'us'", updates={"name": "'z'"})
    schema = json.loads(json.loads((t / "_delta_log" / "00000000000000000000.json").read_text().splitlines()[2])[
        "metaData"]["schemaString"])
    assert all(f["metadata"]["delta.columnMapping.physicalName"].startswith("col-") for f in schema["fields"])
    assert refresh(s)["errors"] == []
    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    check(conn, t, "shop.mapped", extra_queries=[
        "SELECT name, count(*) AS n FROM {t} WHERE region IN ('us', 'apac') GROUP BY name",
        "SELECT t.id FROM {t} t WHERE t.id < 20 AND t.name IS NOT NULL",
    ])
    got = sql(conn, 'SELECT count(*) AS n FROM shop."mapped@v0"')
    assert got.to_pylist() == oracle(t, "SELECT count(*) AS n FROM t", 0).to_pylist()
    conn.close()

    by_id = root / "shop" / "by_id"
    deltalake.write_deltalake(str(by_id), batch(rng, 0, 10), configuration={"delta.columnMapping.mode": "id"})
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")
    with pytest.raises(pa.ArrowInvalid) as e:
        next(client.do_action(fl.Action("table-snapshot", json.dumps({"source": "lake", "path": "shop/by_id"}).encode())))
    assert "precondition failed error" in str(e.value) and "mode `name`" in str(e.value), str(e.value)


def test_delta_files_are_not_revalidated(lake):
    """A data file a Delta log names is never rewritten, so its scans are
    marked `immutable` and the node asks the origin about it once, not
    again after every `validate` window (1 s here): a repeated warm query
    makes no origin request, where the same scans without the mark HEAD
    every file again."""
    s, root = lake
    rng = random.Random(31)
    t = root / "shop" / "still"
    for i in range(6):
        deltalake.write_deltalake(str(t), batch(rng, i * 50, 50), mode="append")
    assert refresh(s)["errors"] == []
    conn = flight_sql.connect(f"grpc://127.0.0.1:{s.port}", autocommit=True)
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")

    def origin_requests() -> int:
        stats = json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())
        return stats["origin_requests"] + stats["origin_heads"]

    query = "SELECT count(*) AS n, sum(id) AS s FROM shop.still WHERE id % 3 = 1"
    want = oracle(t, query.replace("shop.still", "t")).to_pylist()
    assert sql(conn, query).to_pylist() == want
    for _ in range(2):
        time.sleep(1.5)  # past the source's `validate`
        before = origin_requests()
        assert sql(conn, query).to_pylist() == want
        assert origin_requests() == before, "a warm query of a Delta table asked the origin"
    conn.close()

    # The same scans without the mark revalidate each file; with it, none.
    files = sorted(live_adds(t))
    for immutable, expected in ((False, len(files)), (True, 0)):
        time.sleep(1.5)
        before = origin_requests()
        for f in files:
            req = {"source": "lake", "path": f"shop/still/{f}", "columns": ["id"]}
            if immutable:
                req["immutable"] = True
            info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
            assert json.loads(info.endpoints[0].ticket.ticket).get("immutable", False) == immutable
            client.do_get(info.endpoints[0].ticket).read_all()
        assert origin_requests() - before == expected, (immutable, origin_requests() - before)
    with pytest.raises(pa.ArrowInvalid) as e:
        client.get_flight_info(fl.FlightDescriptor.for_command(
            json.dumps({"source": "lake", "path": "shop/still/", "immutable": True})))
    assert "one object" in str(e.value), str(e.value)


def test_a_commit_between_plan_and_read(lake):
    """Endpoints planned from one snapshot read that version even when a
    DELETE (which rewrites files) and an append commit before they are
    read: every object a ticket names is pinned to the ETag it was planned
    at, and Delta leaves the removed files in place until VACUUM."""
    s, root = lake
    rng = random.Random(37)
    t = root / "shop" / "moving"
    deltalake.write_deltalake(str(t), batch(rng, 0, 120), partition_by=["region"])
    deltalake.write_deltalake(str(t), batch(rng, 120, 80), mode="append", partition_by=["region"])
    client = fl.connect(f"grpc://127.0.0.1:{s.port}")

    def plan(version=None) -> list:
        body = {"source": "lake", "path": "shop/moving/"}
        if version is not None:
            body["version"] = version
        snap = json.loads(next(client.do_action(fl.Action("table-snapshot", json.dumps(body).encode()))).body.to_pybytes())
        tickets = []
        for f in snap["files"]:
            req = {"source": "lake", "path": f["path"], "columns": ["id"], "immutable": True}
            info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
            tickets += [e.ticket for e in info.endpoints]
        return tickets

    def ids(tickets) -> list:
        return sorted(i for tk in tickets for i in client.do_get(tk).read_all().column("id").to_pylist())

    planned = plan()
    deltalake.DeltaTable(str(t)).delete("id % 4 = 1")
    deltalake.write_deltalake(str(t), batch(rng, 200, 40), mode="append", partition_by=["region"])
    want_then = sorted(oracle(t, "SELECT id FROM t", 1).column("id").to_pylist())
    want_now = sorted(oracle(t, "SELECT id FROM t").column("id").to_pylist())
    assert want_then != want_now
    # Read after the commits: the version it was planned at, whole.
    assert ids(planned) == want_then
    assert ids(plan()) == want_now
    assert ids(plan(1)) == want_then
