"""Delta Lake tables through Flight SQL, against the `deltalake` package's
own reader of the same version (an independent implementation of the log).

Tables are written at run time with `deltalake` (the delta-rs writer): a
partitioned table taken through appends, a DELETE and an UPDATE (which
rewrite files), OPTIMIZE, an added column and a checkpoint, and a plain
one overwritten. Every query runs twice (cold, then warm) through ADBC and
is compared row for row with DataFusion running the same SQL over the
oracle's table.
"""

import datetime
import json
import random

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import datafusion
import deltalake
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from conftest import Server


def value(v):
    """Floats to 12 significant digits: sums add in another order."""
    return float(f"{v:.12g}") + 0.0 if isinstance(v, float) else v


def rows(table: pa.Table) -> list:
    return sorted((tuple(value(v) for v in r) for r in zip(*(c.to_pylist() for c in table.columns))), key=repr)


def sql(conn, query: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def oracle(path, query: str, version=None) -> pa.Table:
    """`query` over table `t` as the deltalake reader sees `path`."""
    table = deltalake.DeltaTable(str(path), version=version).to_pyarrow_table()
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
]


def select_list(table: pa.Table) -> str:
    return ", ".join(f'"{n}"' for n in table.schema.names)


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
    assert tables == [("default", "plain"), ("shop", "sales")]
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
    assert refresh(s)["errors"] == []
    check(conn, sales, "shop.sales")
    check(conn, plain, "plain")

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
    committed = {h["version"]: h["timestamp"] for h in deltalake.DeltaTable(str(t)).history()}
    at = datetime.datetime.fromtimestamp(committed[1] / 1000, datetime.timezone.utc)
    snap = action("table-snapshot", {"source": "lake", "path": "t", "timestamp": at.isoformat()})
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
    # The node still serves.
    assert action("tables", {"source": "lake"})["tables"][0]["path"] == "t/"
