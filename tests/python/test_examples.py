"""The Python examples (examples/python/) against the real quiver-server binary.

Every answer is checked against pyarrow (or datafusion-python) reading the
same Parquet files directly, value by value.
"""

import datetime
import decimal
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))

import datafusion_sql  # noqa: E402
import polars_read  # noqa: E402
import quiver_flight  # noqa: E402

D = decimal.Decimal
SPLIT_FILES = 5


def endpoint(server) -> str:
    return f"grpc://127.0.0.1:{server.port}"


def table_files(server, table: str) -> list:
    """The sample table's Parquet objects, in key order (the node's endpoint order)."""
    files = sorted((server.data_dir / "tpch" / table).glob("*.parquet"))
    assert files
    return files


def direct(paths, columns=None, expression=None) -> pa.Table:
    """pyarrow reading the files itself, in the order given."""
    pieces = [ds.dataset(str(p), format="parquet").to_table(columns=columns, filter=expression) for p in paths]
    return pa.concat_tables(pieces)


def rows(table: pa.Table) -> Counter:
    return Counter(tuple(r.values()) for r in table.to_pylist())


@pytest.fixture(scope="module")
def split_lineitem(server):
    """lineitem cut into SPLIT_FILES objects of several row groups each, so a
    scan of the prefix has that many endpoints. Returns their paths in key
    order (the order the node lists its endpoints in)."""
    whole = direct(table_files(server, "lineitem"))
    out = server.data_dir / "split" / "lineitem"
    out.mkdir(parents=True)
    step = math.ceil(whole.num_rows / SPLIT_FILES)
    paths = []
    for i in range(SPLIT_FILES):
        path = out / f"part-{i:02}.parquet"
        pq.write_table(whole.slice(i * step, step), path, row_group_size=2000)
        paths.append(path)
    return paths


# (columns, filter for the node, the same filter for pyarrow)
SCANS = [
    (None, None, None),
    (["l_orderkey", "l_linenumber", "l_quantity"], None, None),
    (["l_extendedprice", "l_orderkey"], "l_quantity > 45", ds.field("l_quantity") > D("45")),
    (["l_orderkey", "l_shipdate", "l_shipmode"],
     "l_shipdate >= DATE '1995-01-01' AND l_shipmode IN ('AIR', 'MAIL')",
     (ds.field("l_shipdate") >= datetime.date(1995, 1, 1)) & ds.field("l_shipmode").isin(["AIR", "MAIL"])),
    (["l_orderkey", "l_discount"], "l_discount BETWEEN 0.05 AND 0.07 AND l_linenumber = 1",
     (ds.field("l_discount") >= D("0.05")) & (ds.field("l_discount") <= D("0.07")) & (ds.field("l_linenumber") == 1)),
    (["l_orderkey"], "l_quantity > 1000", ds.field("l_quantity") > D("1000")),  # matches nothing
]


@pytest.mark.parametrize("columns,flt,expr", SCANS)
def test_read_scan_returns_the_files_rows_in_order(server, columns, flt, expr):
    request = quiver_flight.scan_request("local", "tpch/lineitem/", columns, flt)
    got = quiver_flight.read_scan(endpoint(server), request)
    want = direct(table_files(server, "lineitem"), columns, expr)
    if flt != "l_quantity > 1000":
        assert want.num_rows > 0
    assert got.column_names == want.column_names
    # Without a limit, rows come back in file order: the same table exactly.
    assert got.equals(want)


@pytest.mark.parametrize("columns,flt,expr", SCANS)
def test_many_endpoints_are_joined_in_endpoint_order(server, split_lineitem, columns, flt, expr):
    request = quiver_flight.scan_request("local", "split/lineitem/", columns, flt)
    with quiver_flight.Clients() as clients:
        info = quiver_flight.flight_info(clients, endpoint(server), request)
        assert len(info.endpoints) == SPLIT_FILES
        got = quiver_flight.read_endpoints(clients, info.endpoints, info.schema, endpoint(server), max_workers=4)
    assert got.equals(direct(split_lineitem, columns, expr))


@pytest.mark.parametrize("limit", [0, 1, 7, 4000, 10**9])
def test_limit_without_filter(server, split_lineitem, limit):
    columns = ["l_orderkey", "l_linenumber", "l_comment"]
    request = quiver_flight.scan_request("local", "split/lineitem/", columns, limit=limit)
    got = quiver_flight.read_scan(endpoint(server), request)
    every = direct(split_lineitem, columns)
    assert got.num_rows == min(limit, every.num_rows)
    assert got.schema == every.schema
    assert not rows(got) - rows(every)  # each row is one of the files' rows, none twice


@pytest.mark.parametrize("limit", [1, 25, 2500])
def test_limit_with_filter_counts_over_all_endpoints(server, split_lineitem, limit):
    # Each ticket carries the whole limit; the reader must stop at limit rows in all.
    columns = ["l_orderkey", "l_linenumber", "l_quantity"]
    request = quiver_flight.scan_request("local", "split/lineitem/", columns, "l_quantity >= 10", limit)
    got = quiver_flight.read_scan(endpoint(server), request)
    expr = ds.field("l_quantity") >= D("10")
    matching = direct(split_lineitem, columns, expr)
    first_file = direct(split_lineitem[:1], columns, expr)
    assert matching.num_rows > limit
    assert got.num_rows == limit
    # Joined in endpoint order and then cut: when the first object alone has
    # enough matching rows, every row comes from it.
    if first_file.num_rows >= limit:
        assert not rows(got) - rows(first_file)
    assert not rows(got) - rows(matching)
    assert all(v >= D("10") for v in got.column("l_quantity").to_pylist())


def test_falls_back_to_other_locations_and_to_the_planner(server, split_lineitem):
    live = endpoint(server)
    dead = f"grpc://127.0.0.1:{free_port()}"
    request = quiver_flight.scan_request("local", "split/lineitem/", ["l_orderkey", "l_partkey"], "l_partkey < 500")
    with quiver_flight.Clients() as clients:
        info = quiver_flight.flight_info(clients, live, request)
        eps = info.endpoints
        assert eps[0].locations[0].uri.decode() == live
        rewritten = [
            fl.FlightEndpoint(eps[0].ticket, [dead, live]),                 # primary down: the replica answers
            fl.FlightEndpoint(eps[1].ticket, []),                           # no location: the planning node
            fl.FlightEndpoint(eps[2].ticket, [dead, dead.replace("grpc://", "http://"), live]),
            fl.FlightEndpoint(eps[3].ticket, [fl.Location(quiver_flight.REUSE_CONNECTION)]),
            fl.FlightEndpoint(eps[4].ticket, [live.replace("grpc://", "http://")]),
        ]
        got = quiver_flight.read_endpoints(clients, rewritten, info.schema, live)
        assert got.equals(direct(split_lineitem, ["l_orderkey", "l_partkey"], ds.field("l_partkey") < 500))
        assert got.num_rows > 0

        # Every location down: the primary's error comes out.
        with pytest.raises(fl.FlightUnavailableError):
            quiver_flight.read_endpoints(clients, [fl.FlightEndpoint(eps[0].ticket, [dead])], info.schema, live)
        # No location and the planner is down: the same.
        with pytest.raises(fl.FlightUnavailableError):
            quiver_flight.read_endpoints(clients, [fl.FlightEndpoint(eps[0].ticket, [])], info.schema, dead)


def test_server_errors_are_raised_not_swallowed(server):
    request = quiver_flight.scan_request("local", "tpch/lineitem/", ["no_such_column"])
    with pytest.raises(pa.ArrowException, match="no_such_column"):
        quiver_flight.read_scan(endpoint(server), request)


def test_bearer_token(make_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("example-token\n")
    s = make_server("--tokens-file", str(tokens))
    request = quiver_flight.scan_request("local", "tpch/nation/", ["n_nationkey", "n_name"], "n_regionkey = 1")
    got = quiver_flight.read_scan(endpoint(s), request, token="example-token")
    want = direct(table_files(s, "nation"), ["n_nationkey", "n_name"], ds.field("n_regionkey") == 1)
    assert want.num_rows == 5
    assert got.equals(want)
    with pytest.raises(fl.FlightUnauthenticatedError):
        quiver_flight.read_scan(endpoint(s), request)
    with pytest.raises(fl.FlightUnauthenticatedError):
        quiver_flight.read_scan(endpoint(s), request, token="wrong")
    assert s.stop() == 0


def run_example(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pyarrow_flight_command_line(server):
    out = run_example("pyarrow_flight.py", "--endpoint", endpoint(server), "--source", "local",
                      "--path", "tpch/lineitem/", "--columns", "l_orderkey,l_quantity",
                      "--filter", "l_quantity > 45", "--show", "3")
    want = direct(table_files(server, "lineitem"), ["l_orderkey", "l_quantity"], ds.field("l_quantity") > D("45"))
    assert f"read {want.num_rows} rows" in out
    assert want.num_rows > 0
    for row in want.slice(0, 3).to_pylist():
        assert str(row) in out


# --- datafusion_sql -----------------------------------------------------------------------------


def files_context(server, *tables: str) -> datafusion.SessionContext:
    """datafusion-python reading the Parquet files itself."""
    ctx = datafusion.SessionContext()
    for t in tables:
        ctx.register_parquet(t, str(server.data_dir / "tpch" / t))
    return ctx


def q6_by_pyarrow(paths) -> D:
    t = ds.dataset([str(p) for p in paths], format="parquet").to_table(
        columns=["l_extendedprice", "l_discount"],
        filter=(ds.field("l_shipdate") >= datetime.date(1994, 1, 1))
        & (ds.field("l_shipdate") < datetime.date(1995, 1, 1))
        & (ds.field("l_discount") >= D("0.05")) & (ds.field("l_discount") <= D("0.07"))
        & (ds.field("l_quantity") < D("24")),
    )
    return pc.sum(pc.multiply(t["l_extendedprice"], t["l_discount"])).as_py()


def test_datafusion_default_query_is_q6(server):
    tables = {"lineitem": quiver_flight.scan_request("local", "tpch/lineitem/", datafusion_sql.DEFAULT_COLUMNS)}
    got = datafusion_sql.run_sql(endpoint(server), tables, datafusion_sql.DEFAULT_SQL).to_pylist()
    want = q6_by_pyarrow(table_files(server, "lineitem"))
    assert want > 0
    assert got == [{"revenue": want}]
    # and datafusion on the file itself agrees
    assert files_context(server, "lineitem").sql(datafusion_sql.DEFAULT_SQL).to_pylist() == got


def test_datafusion_join_with_pushed_down_filters(server):
    sql = """
        SELECT o_orderpriority, count(*) AS lines, sum(l_quantity) AS qty, max(o_totalprice) AS top
        FROM orders JOIN lineitem ON l_orderkey = o_orderkey
        WHERE o_orderdate >= DATE '1996-01-01' AND l_returnflag = 'N'
        GROUP BY o_orderpriority ORDER BY o_orderpriority"""
    tables = {
        "orders": quiver_flight.scan_request("local", "tpch/orders/",
                                             ["o_orderkey", "o_orderpriority", "o_totalprice", "o_orderdate"],
                                             "o_orderdate >= DATE '1996-01-01'"),
        "lineitem": quiver_flight.scan_request("local", "tpch/lineitem/", ["l_orderkey", "l_quantity", "l_returnflag"],
                                               "l_returnflag = 'N'"),
    }
    got = datafusion_sql.run_sql(endpoint(server), tables, sql).to_pylist()
    want = files_context(server, "orders", "lineitem").sql(sql).to_pylist()
    assert len(want) == 5
    assert got == want


def test_datafusion_command_line(server):
    out = run_example("datafusion_sql.py", "--endpoint", endpoint(server), "--source", "local",
                      "--path", "tpch/lineitem/")
    assert out.strip() == str({"revenue": q6_by_pyarrow(table_files(server, "lineitem"))})


# --- polars_read --------------------------------------------------------------------------------


def summary_by_pyarrow(paths, expression) -> list:
    t = ds.dataset([str(p) for p in paths], format="parquet").to_table(columns=polars_read.COLUMNS, filter=expression)
    price = pc.cast(t["l_extendedprice"], pa.float64())
    discount = pc.cast(t["l_discount"], pa.float64())
    t = t.append_column("disc_price", pc.multiply(price, pc.subtract(1.0, discount))).append_column("disc", discount)
    g = t.group_by(["l_returnflag", "l_linestatus"]).aggregate([
        ("l_quantity", "sum"), ("l_extendedprice", "sum"), ("disc_price", "sum"), ("disc", "mean"),
        ("l_quantity", "count"),
    ]).sort_by([("l_returnflag", "ascending"), ("l_linestatus", "ascending")])
    return [
        {"l_returnflag": r["l_returnflag"], "l_linestatus": r["l_linestatus"], "sum_qty": r["l_quantity_sum"],
         "sum_base_price": r["l_extendedprice_sum"], "sum_disc_price": r["disc_price_sum"],
         "avg_disc": r["disc_mean"], "count_order": r["l_quantity_count"]}
        for r in g.to_pylist()
    ]


def assert_same_summary(got: list, want: list) -> None:
    assert [list(r) for r in got] == [list(r) for r in want]  # same columns, in order
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        for k in ("l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "count_order"):
            assert g[k] == w[k], (k, g, w)  # decimals exactly
        for k in ("sum_disc_price", "avg_disc"):
            assert math.isclose(g[k], w[k], rel_tol=1e-9), (k, g, w)


@pytest.mark.parametrize("flt,expr", [
    (polars_read.DEFAULT_FILTER, ds.field("l_shipdate") <= datetime.date(1998, 9, 2)),
    ("l_shipmode = 'AIR' AND l_quantity < 10", (ds.field("l_shipmode") == "AIR") & (ds.field("l_quantity") < D("10"))),
])
def test_polars_group_by(server, flt, expr):
    lines = polars_read.read_frame(endpoint(server), "local", "tpch/lineitem/", polars_read.COLUMNS, flt)
    got = polars_read.pricing_summary(lines).to_dicts()
    assert_same_summary(got, summary_by_pyarrow(table_files(server, "lineitem"), expr))


def test_polars_command_line(server):
    out = run_example("polars_read.py", "--endpoint", endpoint(server), "--source", "local", "--path", "tpch/lineitem/")
    want = summary_by_pyarrow(table_files(server, "lineitem"), ds.field("l_shipdate") <= datetime.date(1998, 9, 2))
    assert f"read {sum(r['count_order'] for r in want)} rows of 5 columns" in out
    for r in want:
        # each group's row: flags, then the exact decimal sums
        assert re.search(rf"{r['l_returnflag']}\s*┆\s*{r['l_linestatus']}\s*┆\s*{r['sum_qty']}\s*┆\s*{r['sum_base_price']}",
                         out), (r, out)
