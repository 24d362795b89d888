"""Flight SQL against the real quiver-server binary, with real SQL clients.

The ADBC Flight SQL driver (the Go driver under adbc_driver_flightsql),
Polars reading through it, and the arrow-rs `flight_sql_client` command line
(its path in QUIVER_FLIGHT_SQL_CLIENT; infra/test.sh installs it). Every
answer is compared, value by value, with pyarrow reading the same Parquet
files from the node's data directory.
"""

import datetime
import decimal
import json
import os
import subprocess
import time
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from conftest import Server

D = decimal.Decimal
TPCH = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
TOKEN = "secret-token"
AUTH_HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
TLS_ROOT_CERTS = adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value


def uri(server) -> str:
    return f"grpc://127.0.0.1:{server.port}"


def connect(server, **db_kwargs):
    # Quiver has no transactions; autocommit=True keeps the driver from
    # asking for them (it would only warn).
    return flight_sql.connect(uri(server), db_kwargs=db_kwargs or None, autocommit=True)


def direct(server, table: str) -> pa.Table:
    """The table as pyarrow reads its Parquet files, bypassing the node."""
    return ds.dataset(server.data_dir / "tpch" / table, format="parquet").to_table()


def rows(table) -> list:
    """The rows of a pyarrow or Polars table as sorted tuples."""
    if isinstance(table, pl.DataFrame):
        return sorted(table.iter_rows())
    return sorted(zip(*(c.to_pylist() for c in table.columns)))


def sql(conn, query: str, parameters=None) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query, parameters=parameters)
        return cur.fetch_arrow_table()


def assert_answers(conn) -> None:
    """The node (and the connection) still serve after an error."""
    assert sql(conn, "SELECT count(*) AS n FROM tpch.region").to_pylist() == [{"n": 5}]


@pytest.fixture(scope="module")
def conn(server):
    c = connect(server)
    yield c
    c.close()


# --- statements ---------------------------------------------------------


def test_whole_table_matches_parquet(conn, server):
    for name in ("nation", "lineitem"):
        got = sql(conn, f"SELECT * FROM tpch.{name}")
        want = direct(server, name)
        # Plain types (no view types), the file's columns in order.
        assert got.schema.names == want.schema.names
        assert [f.type for f in got.schema] == [f.type for f in want.schema]
        assert got.num_rows == want.num_rows > 0
        assert rows(got) == rows(want)


def test_projection_and_filter(conn, server):
    got = sql(conn, """
        SELECT l_orderkey, l_linenumber, l_quantity, l_shipdate FROM local.tpch.lineitem
        WHERE l_shipdate >= DATE '1995-01-01' AND l_quantity > 45 AND l_shipmode = 'AIR'
    """)
    li = direct(server, "lineitem")
    want = li.filter(
        (pc.field("l_shipdate") >= datetime.date(1995, 1, 1))
        & (pc.field("l_quantity") > D("45")) & (pc.field("l_shipmode") == "AIR")
    ).select(["l_orderkey", "l_linenumber", "l_quantity", "l_shipdate"])
    assert got.schema.names == want.schema.names
    assert 0 < got.num_rows < li.num_rows
    assert rows(got) == rows(want)


def test_join(conn, server):
    got = sql(conn, """
        SELECT n.n_name, r.r_name FROM tpch.nation n
        JOIN tpch.region r ON n.n_regionkey = r.r_regionkey
    """)
    nation, region = direct(server, "nation"), direct(server, "region")
    want = nation.join(region, keys="n_regionkey", right_keys="r_regionkey").select(["n_name", "r_name"])
    assert got.num_rows == 25
    assert rows(got) == rows(want)


def test_aggregate(conn, server):
    got = sql(conn, """
        SELECT l_returnflag, l_linestatus, count(*) AS n, sum(l_quantity) AS qty,
               sum(l_extendedprice) AS price, min(l_shipdate) AS first
        FROM tpch.lineitem GROUP BY l_returnflag, l_linestatus
    """)
    want = direct(server, "lineitem").group_by(["l_returnflag", "l_linestatus"]).aggregate([
        ([], "count_all"), ("l_quantity", "sum"), ("l_extendedprice", "sum"), ("l_shipdate", "min"),
    ])
    want = want.select(["l_returnflag", "l_linestatus", "count_all", "l_quantity_sum",
                        "l_extendedprice_sum", "l_shipdate_min"])
    assert got.schema.names == ["l_returnflag", "l_linestatus", "n", "qty", "price", "first"]
    assert got.num_rows >= 3
    # Decimals compare by value, whatever precision each side gave the sum.
    assert rows(got) == rows(want)


def test_join_aggregate_order_limit(conn, server):
    got = sql(conn, """
        SELECT n_name, count(*) AS orders, sum(o_totalprice) AS total
        FROM tpch.orders JOIN tpch.customer ON o_custkey = c_custkey
        JOIN tpch.nation ON c_nationkey = n_nationkey
        GROUP BY n_name ORDER BY total DESC, n_name LIMIT 5
    """)
    joined = direct(server, "orders").join(direct(server, "customer"), keys="o_custkey", right_keys="c_custkey")
    joined = joined.join(direct(server, "nation"), keys="c_nationkey", right_keys="n_nationkey")
    want = joined.group_by("n_name").aggregate([([], "count_all"), ("o_totalprice", "sum")])
    want = sorted(
        zip(want["n_name"].to_pylist(), want["count_all"].to_pylist(), want["o_totalprice_sum"].to_pylist()),
        key=lambda r: (-r[2], r[0]),
    )[:5]
    # ORDER BY is kept: compared in order, not sorted.
    assert list(zip(*(c.to_pylist() for c in got.columns))) == want


def test_statement_without_prepare(conn, server):
    """CommandStatementQuery: GetFlightInfo, then DoGet of its ticket."""
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        stmt.set_sql_query("SELECT r_regionkey, r_name FROM tpch.region")
        handle, _ = stmt.execute_query()
        got = pa.RecordBatchReader._import_from_c(handle.address).read_all()
    assert rows(got) == rows(direct(server, "region").select(["r_regionkey", "r_name"]))


def test_execute_schema_and_partitions(conn, server):
    region = direct(server, "region")
    with conn.cursor() as cur:
        schema = cur.adbc_execute_schema("SELECT * FROM tpch.region")
        assert schema.names == region.schema.names
        assert [f.type for f in schema] == [f.type for f in region.schema]
        partitions, schema = cur.adbc_execute_partitions("SELECT * FROM tpch.region")
        assert schema.names == region.schema.names
        assert len(partitions) >= 1
        got = []
        for p in partitions:
            cur.adbc_read_partition(p)
            got.append(cur.fetch_arrow_table())
    assert rows(pa.concat_tables(got)) == rows(region)


def test_information_schema_and_show_tables(conn):
    got = sql(conn, "SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema = 'tpch'")
    assert rows(got) == [("local", "tpch", t) for t in TPCH]
    shown = sql(conn, "SHOW TABLES")
    assert {"nation", "lineitem"} <= set(shown["table_name"].to_pylist())
    plan = sql(conn, "EXPLAIN SELECT * FROM tpch.region")
    assert plan.num_rows >= 1


# --- prepared statements ---------------------------------------------------


def test_prepared_statement_with_parameters(conn, server):
    nation = direct(server, "nation")
    query = "SELECT n_nationkey, n_name FROM tpch.nation WHERE n_regionkey = $1"
    with conn.cursor() as cur:
        # The driver passes the text unchanged; DataFusion's placeholders are $n.
        params = cur.adbc_prepare(query)
        assert params is not None and params.names == ["$1"]
        assert params.field("$1").type == pa.int64()
        # One cursor, one prepared statement, bound twice.
        for region in (1, 3):
            cur.execute(query, parameters=(region,))
            got = cur.fetch_arrow_table()
            want = nation.filter(pc.field("n_regionkey") == region).select(["n_nationkey", "n_name"])
            assert got.num_rows == 5
            assert rows(got) == rows(want)
        assert sql(conn, query, (1,)) != sql(conn, query, (3,))


def test_prepared_statement_with_typed_parameters(conn, server):
    orders = direct(server, "orders")
    got = sql(conn, """
        SELECT o_orderkey, o_totalprice FROM tpch.orders
        WHERE o_orderdate < $1 AND o_orderpriority = $2 AND o_totalprice > $3
    """, (datetime.date(1993, 1, 1), "1-URGENT", D("100000.00")))
    want = orders.filter(
        (pc.field("o_orderdate") < datetime.date(1993, 1, 1)) & (pc.field("o_orderpriority") == "1-URGENT")
        & (pc.field("o_totalprice") > D("100000.00"))
    ).select(["o_orderkey", "o_totalprice"])
    assert got.num_rows > 0
    assert rows(got) == rows(want)


def test_prepared_statement_missing_parameter(conn):
    with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
        sql(conn, "SELECT n_name FROM tpch.nation WHERE n_regionkey = $1")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    assert "$1" in str(e.value)
    assert_answers(conn)


def test_prepared_statement_with_qmark_parameters(conn, server):
    """Issue 25: DB-API code (paramstyle qmark, like JDBC) writes `?`, which
    the node numbered left to right; one inside a string, a quoted name or a
    comment is text."""
    assert flight_sql.paramstyle == "qmark"
    query = """
        SELECT l_orderkey, l_linenumber, l_shipmode AS "mode?", l_quantity, '?' AS q
        FROM tpch.lineitem -- which rows? these:
        WHERE l_orderkey < ? AND l_shipmode = ? /* and ? not this */ AND l_shipdate >= ?
          AND l_quantity > ? AND l_comment <> 'why?'
    """
    params = (30000, "AIR", datetime.date(1995, 1, 1), D("30"))
    with conn.cursor() as cur:
        schema = cur.adbc_prepare(query)
        assert schema.names == ["$1", "$2", "$3", "$4"]
    got = sql(conn, query, params)
    li = direct(server, "lineitem")
    want = li.filter(
        (pc.field("l_orderkey") < 30000) & (pc.field("l_shipmode") == "AIR")
        & (pc.field("l_shipdate") >= datetime.date(1995, 1, 1)) & (pc.field("l_quantity") > D("30"))
        & (pc.field("l_comment") != "why?")
    )
    want = [(k, n, m, q, "?") for k, n, m, q in rows(
        want.select(["l_orderkey", "l_linenumber", "l_shipmode", "l_quantity"]))]
    assert got.schema.names == ["l_orderkey", "l_linenumber", "mode?", "l_quantity", "q"]
    assert 0 < got.num_rows < li.num_rows
    assert rows(got) == sorted(want)


def test_prepared_statement_with_a_null_qmark_parameter(conn, server):
    nation = direct(server, "nation")
    query = "SELECT n_nationkey, n_name FROM tpch.nation WHERE n_regionkey = ? OR n_nationkey < ?"
    got = sql(conn, query, (None, 4))
    # NULL equals nothing: only the second condition selects.
    want = nation.filter(pc.field("n_nationkey") < 4).select(["n_nationkey", "n_name"])
    assert got.num_rows == 4
    assert rows(got) == rows(want)


def test_mixed_placeholder_styles_are_refused(conn):
    with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
        sql(conn, "SELECT n_name FROM tpch.nation WHERE n_regionkey = ? AND n_nationkey > $2", (1, 2))
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    assert "mixes" in str(e.value)
    assert_answers(conn)


@pytest.mark.parametrize("op,value", [
    ("<>", float("nan")), ("=", float("nan")), ("<", float("inf")), (">", float("-inf")),
    (">", -0.0), ("<", 24.5),
])
def test_special_float_parameters_are_pushed_exactly(conn, server, op, value):
    """Issue 25: NaN and the infinities were pushed to the node as bare words
    (`"f" <> NaN`: "No field named nan"), in parameters and in statements."""
    li = direct(server, "lineitem")
    quantity = pc.cast(li["l_quantity"], pa.float64())
    # Arrow's order, like DataFusion's: NaN equals NaN.
    if value != value:
        match = pc.is_nan(quantity) if op == "=" else pc.invert(pc.is_nan(quantity))
    else:
        match = {"<": pc.less, ">": pc.greater}[op](quantity, value)
    want = rows(li.filter(match).select(["l_orderkey", "l_linenumber"]))
    query = f"SELECT l_orderkey, l_linenumber FROM tpch.lineitem WHERE CAST(l_quantity AS DOUBLE) {op} "
    assert rows(sql(conn, query + "$1", (value,))) == want
    text = "CAST('NaN' AS DOUBLE)" if value != value else f"CAST('{value}' AS DOUBLE)"
    assert rows(sql(conn, query + text)) == want


def test_long_list_of_negative_numbers(conn, server):
    """Issue 25: the node counted every minus sign as an operator and
    refused the pushed-down filter of this query."""
    keys = [-k for k in range(1, 301)] + [1, 2, 3]
    got = sql(conn, f"SELECT l_orderkey, l_linenumber FROM tpch.lineitem WHERE l_orderkey IN ({', '.join(map(str, keys))})")
    li = direct(server, "lineitem")
    want = li.filter(pc.field("l_orderkey").isin(keys)).select(["l_orderkey", "l_linenumber"])
    assert got.num_rows > 0
    assert rows(got) == rows(want)


# --- metadata ------------------------------------------------------------


def test_get_objects(conn, server):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert list(catalogs) == ["local"]
    schemas = {s["db_schema_name"]: s for s in catalogs["local"]["catalog_db_schemas"]}
    assert "tpch" in schemas
    tables = {t["table_name"]: t for t in schemas["tpch"]["db_schema_tables"]}
    assert sorted(tables) == TPCH
    for name, table in tables.items():
        assert table["table_type"] == "TABLE"
        columns = table["table_columns"]
        assert [c["column_name"] for c in columns] == direct(server, name).schema.names
        assert [c["ordinal_position"] for c in columns] == list(range(1, len(columns) + 1))

    only = conn.adbc_get_objects(depth="tables", catalog_filter="local", db_schema_filter="tpch",
                                 table_name_filter="n%").read_all().to_pylist()
    assert [[t["table_name"] for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
            for c in only] == [["nation"]]
    assert conn.adbc_get_objects(depth="catalogs", catalog_filter="nope").read_all().num_rows == 0
    assert conn.adbc_get_table_types() == ["TABLE"]


def test_get_table_schema(conn, server):
    schema = conn.adbc_get_table_schema("nation", db_schema_filter="tpch", catalog_filter="local")
    want = direct(server, "nation").schema
    assert schema.names == want.names
    assert [f.type for f in schema] == [f.type for f in want]
    with pytest.raises(adbc_driver_manager.Error) as e:
        conn.adbc_get_table_schema("nope", db_schema_filter="tpch", catalog_filter="local")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
    assert_answers(conn)


def test_get_info(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Quiver"
    assert info["vendor_version"]


# --- errors ----------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "INSERT INTO tpch.nation VALUES (99, 'ATLANTIS', 0, 'sunk')",
    "UPDATE tpch.nation SET n_name = 'X'",
    "DELETE FROM tpch.nation",
    "CREATE TABLE t (a INT)",
    "CREATE VIEW v AS SELECT * FROM tpch.nation",
    "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
    "COPY tpch.nation TO '/tmp/quiver-copy.parquet'",
    "DROP TABLE tpch.nation",
])
def test_writes_are_refused(conn, statement):
    with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
        sql(conn, statement)
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    assert "INVALID_ARGUMENT" in str(e.value) and "read-only" in str(e.value)
    assert_answers(conn)


def test_updates_and_ingest_are_refused(conn):
    """The update and bulk-ingest calls, not only queries that write."""
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        stmt.set_sql_query("INSERT INTO tpch.nation VALUES (99, 'ATLANTIS', 0, 'sunk')")
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            stmt.execute_update()
        assert "read-only" in str(e.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.adbc_ingest("new_table", pa.table({"a": [1, 2]}))
        assert "read-only" in str(e.value)
    assert_answers(conn)
    assert sql(conn, "SELECT count(*) AS n FROM tpch.nation").to_pylist() == [{"n": 25}]


@pytest.mark.parametrize("statement,code,text", [
    ("SELEC 1", "INVALID_ARGUMENT", "SELEC"),
    ("SELECT nope FROM tpch.nation", "INVALID_ARGUMENT", "nope"),
    ("SELECT n_name FROM tpch.nation WHERE", "INVALID_ARGUMENT", ""),
    ("SELECT * FROM tpch.nope", "NOT_FOUND", "tpch.nope"),
    ("SELECT * FROM nation", "NOT_FOUND", "does not exist"),
    ("SELECT * FROM other.tpch.nation", "NOT_FOUND", "does not exist"),
    ("SELECT 1 / 0", "INVALID_ARGUMENT", "zero"),
    ("SELECT CAST('x' AS INT)", "INVALID_ARGUMENT", "cast"),
])
def test_bad_statements(conn, statement, code, text):
    with pytest.raises(adbc_driver_manager.Error) as e:
        sql(conn, statement)
    assert e.value.status_code == getattr(adbc_driver_manager.AdbcStatusCode, code)
    assert code in str(e.value)
    assert text.lower() in str(e.value).lower()
    # The node's request id travels with the error.
    assert any(k == b"x-quiver-request-id" for k, _ in e.value.details)
    assert_answers(conn)


# --- auth and TLS ---------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quiver-auth")
    tokens = tmp / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    s = Server(tmp, "--tokens-file", str(tokens))
    yield s
    assert s.stop() == 0, s.logs()


def test_auth_bearer_header(auth_server):
    c = connect(auth_server, **{AUTH_HEADER: f"Bearer {TOKEN}"})
    try:
        assert sql(c, "SELECT count(*) AS n FROM tpch.nation").to_pylist() == [{"n": 25}]
        assert "nation" in str(c.adbc_get_objects(depth="tables").read_all().to_pylist())
    finally:
        c.close()


# "user:secret-token" is 18, 16 and 17 bytes long: base64 with no padding,
# "==" and "=". The Go driver sends Basic credentials without padding.
@pytest.mark.parametrize("user", ["alice", "bob", "dave"])
def test_auth_basic_handshake(auth_server, user):
    c = connect(auth_server, username=user, password=TOKEN)
    try:
        assert sql(c, "SELECT count(*) AS n FROM tpch.region").to_pylist() == [{"n": 5}]
    finally:
        c.close()


def test_auth_refused(auth_server):
    c = connect(auth_server)
    try:
        with pytest.raises(adbc_driver_manager.Error) as e:
            sql(c, "SELECT 1")
        assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
        assert "UNAUTHENTICATED" in str(e.value)
    finally:
        c.close()
    with pytest.raises(adbc_driver_manager.Error) as e:
        c = connect(auth_server, username="abcd", password="wrong-token")
        sql(c, "SELECT 1")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
    with pytest.raises(adbc_driver_manager.Error) as e:
        c = connect(auth_server, **{AUTH_HEADER: "Bearer wrong-token"})
        sql(c, "SELECT 1")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
    c = connect(auth_server, **{AUTH_HEADER: f"Bearer {TOKEN}"})
    assert_answers(c)
    c.close()


def test_tls_and_token(make_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         # The node's SQL engine scans through a rustls client that calls
         # the node itself, trusting the node's own certificate when no
         # --tls-ca is given; rustls refuses a CA certificate as a server's
         # own, so this one is an end-entity certificate.
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True,
    )
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    s = make_server("--tls-cert", str(cert), "--tls-key", str(key), "--tokens-file", str(tokens))
    c = flight_sql.connect(f"grpc+tls://localhost:{s.port}", autocommit=True, db_kwargs={
        TLS_ROOT_CERTS: cert.read_text(), AUTH_HEADER: f"Bearer {TOKEN}",
    })
    try:
        got = sql(c, "SELECT * FROM tpch.region")
        assert rows(got) == rows(direct(s, "region"))
    finally:
        c.close()
    assert s.stop() == 0, s.logs()


# --- Polars ----------------------------------------------------------------


def test_polars_read_database(conn, server):
    df = pl.read_database("SELECT * FROM tpch.nation", conn)
    want = pl.from_arrow(direct(server, "nation"))
    assert df.schema == want.schema
    assert rows(df) == rows(want)

    df = pl.read_database(
        "SELECT o_orderpriority, count(*) AS n, sum(o_totalprice) AS total FROM tpch.orders GROUP BY 1", conn)
    agg = direct(server, "orders").group_by("o_orderpriority").aggregate(
        [([], "count_all"), ("o_totalprice", "sum")])
    assert df.height == 5
    assert rows(df) == rows(agg.select(["o_orderpriority", "count_all", "o_totalprice_sum"]))


# --- a lake of our own: partitions, refresh, prepared-statement limit ----------


def test_partitioned_tables_and_refresh(tmp_path):
    lake = tmp_path / "lake"
    for year in (2023, 2024):
        (lake / "events" / f"year={year}").mkdir(parents=True)
        pq.write_table(pa.table({"id": [year * 10 + 1, year * 10 + 2], "v": ["a", "b"]}),
                       lake / "events" / f"year={year}" / "part-0.parquet")
    config = tmp_path / "quiver.toml"
    config.write_text(f"""
[[source]]
name = "lake"
url = "file://{lake}/"
validate = "1s"

[sql]
refresh = "1s"
max_prepared = 3
""")
    s = Server(tmp_path / "node", "--config", str(config))
    try:
        c = flight_sql.connect(uri(s), autocommit=True)
        # A source is a catalog; a table at the root is in schema `default`.
        assert rows(sql(c, "SELECT * FROM events")) == [
            (20231, "a", "2023"), (20232, "b", "2023"), (20241, "a", "2024"), (20242, "b", "2024")]
        assert rows(sql(c, "SELECT id FROM lake.default.events WHERE year = $1", ("2024",))) == [(20241,), (20242,)]
        # The partition column is a string column after the file's own.
        schema = c.adbc_get_table_schema("events", catalog_filter="lake", db_schema_filter="default")
        assert [(f.name, f.type) for f in schema] == [("id", pa.int64()), ("v", pa.string()), ("year", pa.string())]

        # The driver closes each prepared statement: more statements than
        # the node keeps at once all run.
        for i in range(10):
            assert sql(c, "SELECT id FROM events WHERE id = $1", (20231 + (i % 2),)).num_rows == 1

        # A table added to the lake appears at the next listing.
        (lake / "extra" / "t1").mkdir(parents=True)
        pq.write_table(pa.table({"k": [1, 2, 3]}), lake / "extra" / "t1" / "part-0.parquet")
        deadline = time.time() + 30
        while True:
            tables = [t["table_name"] for cat in c.adbc_get_objects(depth="tables").read_all().to_pylist()
                      for sch in cat["catalog_db_schemas"] for t in sch["db_schema_tables"]]
            if "t1" in tables or time.time() > deadline:
                break
            time.sleep(0.5)
        assert sorted(tables) == ["events", "t1"]
        assert sql(c, "SELECT sum(k) AS s FROM lake.extra.t1").to_pylist() == [{"s": 6}]
        c.close()
    finally:
        assert s.stop() == 0, s.logs()


def test_rewritten_file(tmp_path):
    """Files rewritten in the lake while queries run: every query answers,
    with the old data or the new, and the new data is read within moments."""
    lake = tmp_path / "lake"
    (lake / "t").mkdir(parents=True)
    pq.write_table(pa.table({"k": [1, 2, 3]}), lake / "t" / "part-0.parquet")
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
    try:
        c = flight_sql.connect(uri(s), autocommit=True)
        assert sql(c, "SELECT sum(k) AS s FROM t").to_pylist() == [{"s": 6}]
        old, errors = 6, []
        for n in range(4, 12):
            pq.write_table(pa.table({"k": list(range(n))}), lake / "t" / "part-0.parquet")
            new = sum(range(n))
            # Never the node's internal "plan again" (FailedPrecondition
            # CHANGED <etag>): the SQL engine must act on it itself.
            answers, start = set(), time.time()
            while time.time() - start < 1.5 or (new not in answers and time.time() - start < 15):
                try:
                    answers.add(sql(c, "SELECT sum(k) AS s FROM t").to_pylist()[0]["s"])
                except adbc_driver_manager.Error as e:
                    errors.append(str(e))
            assert answers <= {old, new} and new in answers, answers
            old = new
        assert errors == [], f"{len(errors)} queries failed, e.g. {errors[0]}"
        # The catalog can also be listed again on demand.
        action = fl.connect(uri(s)).do_action(fl.Action("refresh-catalog", b""))
        assert json.loads(next(action).body.to_pybytes()) == {"tables": 1, "errors": []}
        c.close()
    finally:
        assert s.stop() == 0, s.logs()


# --- the arrow-rs flight_sql_client command line ------------------------------


@pytest.fixture(scope="module")
def flight_sql_client():
    path = os.environ.get("QUIVER_FLIGHT_SQL_CLIENT")
    if not path:
        pytest.fail("QUIVER_FLIGHT_SQL_CLIENT is not set: it names the arrow-rs flight_sql_client binary "
                    "(infra/test.sh installs it into ~/.cache/quiver-tools/bin with "
                    "`cargo install arrow-flight@59.3.2 --features \"cli flight-sql tls-ring\"`)")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"QUIVER_FLIGHT_SQL_CLIENT={path} is not an executable file")
    return path


def cli(binary, server, *args, check=True):
    """Runs flight_sql_client against `server` (plain gRPC); returns the run."""
    run = subprocess.run([binary, "--host", "127.0.0.1", "--port", str(server.port), *args],
                         capture_output=True, text=True, timeout=120)
    if check:
        assert run.returncode == 0, f"flight_sql_client {args} failed:\n{run.stdout}\n{run.stderr}"
    return run


def grid(output: str) -> tuple[list, list]:
    """The header and rows of the tool's pretty-printed table."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return (cells[0], cells[1:]) if cells else ([], [])


def test_flight_sql_client_metadata(flight_sql_client, server):
    header, body = grid(cli(flight_sql_client, server, "catalogs").stdout)
    assert header == ["catalog_name"] and body == [["local"]]

    header, body = grid(cli(flight_sql_client, server, "db-schemas", "local").stdout)
    assert header == ["catalog_name", "db_schema_name"]
    assert ["local", "tpch"] in body and ["local", "default"] in body
    _, body = grid(cli(flight_sql_client, server, "db-schemas", "local", "--db-schema-filter", "tp%").stdout)
    assert body == [["local", "tpch"]]

    header, body = grid(cli(flight_sql_client, server, "tables", "local", "--db-schema-filter", "tpch").stdout)
    assert header == ["catalog_name", "db_schema_name", "table_name", "table_type"]
    assert sorted(body) == [["local", "tpch", t, "TABLE"] for t in TPCH]
    _, body = grid(cli(flight_sql_client, server, "tables", "local", "--table-filter", "n%").stdout)
    assert body == [["local", "tpch", "nation", "TABLE"]]
    _, body = grid(cli(flight_sql_client, server, "tables", "nope").stdout)
    assert body == []

    _, body = grid(cli(flight_sql_client, server, "table-types").stdout)
    assert body == [["TABLE"]]


def test_flight_sql_client_queries(flight_sql_client, server):
    nation = direct(server, "nation")
    run = cli(flight_sql_client, server, "statement-query",
              "SELECT n_nationkey, n_name FROM tpch.nation WHERE n_regionkey = 1 ORDER BY n_nationkey")
    header, body = grid(run.stdout)
    want = nation.filter(pc.field("n_regionkey") == 1).sort_by("n_nationkey")
    assert header == ["n_nationkey", "n_name"]
    assert body == [[str(k), n] for k, n in zip(want["n_nationkey"].to_pylist(), want["n_name"].to_pylist())]

    run = cli(flight_sql_client, server, "statement-query",
              "SELECT r_name, count(*) AS nations FROM tpch.nation JOIN tpch.region "
              "ON n_regionkey = r_regionkey GROUP BY r_name ORDER BY r_name")
    region = direct(server, "region")
    assert grid(run.stdout) == (["r_name", "nations"], [[r, "5"] for r in sorted(region["r_name"].to_pylist())])

    for region_key in ("2", "4"):
        run = cli(flight_sql_client, server, "prepared-statement-query",
                  "SELECT n_name FROM tpch.nation WHERE n_regionkey = $1", "-p", f"$1={region_key}")
        want = nation.filter(pc.field("n_regionkey") == int(region_key))["n_name"].to_pylist()
        assert sorted(r[0] for r in grid(run.stdout)[1]) == sorted(want)


def test_flight_sql_client_errors(flight_sql_client, server):
    for query, text in [
        ("INSERT INTO tpch.nation VALUES (99, 'ATLANTIS', 0, 'sunk')", "read-only"),
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM tpch.nope", "does not exist"),
    ]:
        run = cli(flight_sql_client, server, "statement-query", query, check=False)
        assert run.returncode != 0
        assert text in run.stderr, run.stderr
        _, body = grid(cli(flight_sql_client, server, "statement-query", "SELECT count(*) AS n FROM tpch.region").stdout)
        assert body == [["5"]]


def test_flight_sql_client_auth(flight_sql_client, auth_server):
    # Basic handshake (arrow-rs pads its base64), then the Bearer token it got.
    run = cli(flight_sql_client, auth_server, "--username", "alice", "--password", TOKEN,
              "statement-query", "SELECT count(*) AS n FROM tpch.nation")
    assert grid(run.stdout)[1] == [["25"]]
    run = cli(flight_sql_client, auth_server, "--token", TOKEN, "tables", "local")
    assert ["local", "tpch", "nation", "TABLE"] in grid(run.stdout)[1]
    for creds in ([], ["--token", "wrong-token"], ["--username", "alice", "--password", "wrong-token"]):
        run = cli(flight_sql_client, auth_server, *creds, "catalogs", check=False)
        assert run.returncode != 0
        # tonic prints the code by its description.
        assert "valid authentication credentials" in run.stderr, run.stderr
