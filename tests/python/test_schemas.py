"""Honest schemas against the real quiver-server binary (docs/protocol.md,
"Type mapping" and "Schema merging").

Files written by pyarrow: a dictionary-encoded string column, read through
pyarrow's Flight client and the ADBC Flight SQL driver; tables whose files
differ in column order, columns and integer or float width, read with a
merged schema; and a table whose files cannot be merged, listed and failing
with a message naming both files and the column. Every answer is compared
with pyarrow reading the same files.
"""

import json

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest


def uri(server) -> str:
    return f"grpc://127.0.0.1:{server.port}"


def rows(table: pa.Table) -> list:
    return sorted(zip(*(c.to_pylist() for c in table.columns)), key=repr)


def sql(conn, query: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def write(server, key: str, table: pa.Table):
    path = server.data_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def refresh(server) -> dict:
    client = fl.connect(uri(server))
    answer = next(iter(client.do_action(fl.Action("refresh-catalog", b""))))
    return json.loads(answer.body.to_pybytes())


@pytest.fixture(scope="module")
def lake(server):
    """The files of every test here, written before the catalog is listed."""
    n = 400
    tags = pa.array([["a", "b", "c", None][i % 4] for i in range(n)]).dictionary_encode()
    write(server, "dict/t/part-0.parquet", pa.table({
        "id": pa.array(range(n), pa.int64()),
        "tag": tags,
        "note": pa.array([f"n{i}" for i in range(n)], pa.large_string()),
    }))
    write(server, "mixed/t/a.parquet", pa.table({
        "id": pa.array(range(0, 50), pa.int32()),
        "name": [f"n{i}" for i in range(0, 50)],
        "score": pa.array([i / 10 for i in range(0, 50)], pa.float32()),
    }))
    write(server, "mixed/t/b.parquet", pa.table({
        "name": [f"n{i}" for i in range(50, 100)],
        "id": pa.array(range(50, 100), pa.int64()),
    }))
    write(server, "mixed/t/c.parquet", pa.table({
        "score": pa.array([i / 10 for i in range(100, 150)], pa.float64()),
        "id": pa.array(range(100, 150), pa.int64()),
        "extra": [f"e{i}" if i % 2 == 0 else None for i in range(100, 150)],
    }))
    write(server, "bad/t/a.parquet", pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["x", "y"]}))
    write(server, "bad/t/b.parquet", pa.table({"id": pa.array([3], pa.int64()), "v": pa.array([7], pa.int64())}))
    report = refresh(server)
    return server, report


@pytest.fixture(scope="module")
def conn(lake):
    server, _ = lake
    c = flight_sql.connect(uri(server), autocommit=True)
    yield c
    c.close()


def test_dictionary_column_over_pyarrow_flight(lake):
    server, _ = lake
    client = fl.connect(uri(server))
    cmd = json.dumps({"source": "local", "path": "dict/t/part-0.parquet", "filter": "tag = 'b'"})
    info = client.get_flight_info(fl.FlightDescriptor.for_command(cmd))
    reader = client.do_get(info.endpoints[0].ticket)
    got = reader.read_all()
    # What GetFlightInfo announced is what DoGet streamed: strings, not a
    # dictionary, and large strings as plain ones.
    assert reader.schema == info.schema
    assert info.schema.field("tag").type == pa.string()
    assert info.schema.field("note").type == pa.string()
    want = pq.read_table(server.data_dir / "dict/t/part-0.parquet")
    want = want.filter(pc.field("tag") == "b")
    assert rows(got) == rows(want) and got.num_rows == 100


def test_dictionary_column_over_flight_sql(conn, lake):
    server, report = lake
    want = pq.read_table(server.data_dir / "dict/t/part-0.parquet")
    got = sql(conn, "SELECT id, tag, note FROM dict.t WHERE tag = 'b' OR id < 3")
    expected = want.filter((pc.field("tag") == "b") | (pc.field("id") < 3))
    assert got.num_rows == expected.num_rows > 0
    assert rows(got) == rows(expected)
    counted = sql(conn, "SELECT tag, count(*) AS n FROM dict.t GROUP BY tag")
    tags = pa.table({"tag": want["tag"].cast(pa.string())})
    by_tag = tags.group_by("tag").aggregate([([], "count_all")])
    assert rows(counted) == rows(by_tag.select(["tag", "count_all"]))


def test_files_that_differ_are_read_merged(conn, lake):
    server, report = lake
    files = sorted((server.data_dir / "mixed/t").glob("*.parquet"))
    # pyarrow's own merge: columns in order of appearance, int32 and
    # float32 promoted, missing columns null.
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    want = ds.dataset(files, schema=schema, format="parquet").to_table()
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.int64()), ("name", pa.string()), ("score", pa.float64()), ("extra", pa.string()),
    ]
    got = sql(conn, "SELECT * FROM mixed.t")
    assert got.schema.names == schema.names
    assert [f.type for f in got.schema] == [f.type for f in schema]
    assert rows(got) == rows(want)
    for where, mask in [
        ("id >= 40 AND id < 110", (pc.field("id") >= 40) & (pc.field("id") < 110)),
        ("score > 2.5", pc.field("score") > 2.5),
        ("extra IS NULL", pc.field("extra").is_null()),
    ]:
        got = sql(conn, f"SELECT * FROM mixed.t WHERE {where}")
        expected = want.filter(mask)
        assert got.num_rows == expected.num_rows > 0, where
        assert rows(got) == rows(expected), where


def test_files_that_conflict_are_listed_and_named(conn, lake):
    server, report = lake
    parts = ["`v`", "local/bad/t/a.parquet", "local/bad/t/b.parquet"]
    assert any(all(p in e for p in parts) for e in report["errors"]), report
    objects = conn.adbc_get_objects(depth="tables", db_schema_filter="bad").read_all().to_pylist()
    tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] or []
              for t in s["db_schema_tables"] or []]
    assert tables == ["t"]
    with pytest.raises(Exception) as failure:
        sql(conn, "SELECT * FROM bad.t")
    for p in parts:
        assert p in str(failure.value), str(failure.value)
    # The connection and the other tables still serve.
    assert sql(conn, "SELECT count(*) AS n FROM mixed.t").to_pylist() == [{"n": 150}]
