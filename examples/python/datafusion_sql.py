"""Run SQL with datafusion-python over tables read through Quiver.

Each table is one Quiver scan (a source and a key or prefix, with an optional
projection and filter that the node evaluates before sending anything), read
with quiver_flight.read_scan and registered in a DataFusion SessionContext
under its name. The default query is TPC-H Q6 (the forecast of revenue change)
over lineitem, which needs four of its sixteen columns, so only those cross
the wire.

    python examples/python/datafusion_sql.py --endpoint grpc://127.0.0.1:50051 \\
        --source local --path tpch/lineitem/

    # a join: name each table, then refer to them in the SQL
    python examples/python/datafusion_sql.py --table lineitem=tpch/lineitem/ \\
        --table orders=tpch/orders/ \\
        --sql "SELECT o_orderpriority, count(*) FROM orders JOIN lineitem ON l_orderkey = o_orderkey
               GROUP BY o_orderpriority ORDER BY o_orderpriority"
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datafusion  # noqa: E402
import pyarrow as pa  # noqa: E402

import quiver_flight  # noqa: E402

# TPC-H Q6 with the specification's validation parameters.
DEFAULT_SQL = """
SELECT sum(l_extendedprice * l_discount) AS revenue
FROM lineitem
WHERE l_shipdate >= DATE '1994-01-01'
  AND l_shipdate < DATE '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07
  AND l_quantity < 24
"""

# What the default query reads of lineitem.
DEFAULT_COLUMNS = ["l_extendedprice", "l_discount", "l_quantity", "l_shipdate"]


def load_tables(
    ctx: datafusion.SessionContext,
    endpoint: str,
    tables: dict,
    token: Optional[str] = None,
    max_workers: int = 8,
    tls_root_certs: Optional[bytes] = None,
) -> dict:
    """Reads each ScanRequest of ``tables`` (name -> request dict) through
    Quiver and registers the result in ``ctx`` under its name. Returns the
    pyarrow tables, by name."""
    loaded = {}
    for name, request in tables.items():
        table = quiver_flight.read_scan(endpoint, request, token=token, max_workers=max_workers,
                                        tls_root_certs=tls_root_certs)
        ctx.from_arrow(table, name=name)
        loaded[name] = table
    return loaded


def run_sql(
    endpoint: str,
    tables: dict,
    sql: str,
    token: Optional[str] = None,
    max_workers: int = 8,
    tls_root_certs: Optional[bytes] = None,
) -> pa.Table:
    """Loads ``tables`` (name -> ScanRequest dict) and returns the answer to
    ``sql`` over them."""
    ctx = datafusion.SessionContext()
    load_tables(ctx, endpoint, tables, token=token, max_workers=max_workers, tls_root_certs=tls_root_certs)
    return ctx.sql(sql).to_arrow_table()


def parse_tables(args: argparse.Namespace) -> dict:
    """The --table NAME=PATH flags (or the one table at --path) as requests."""
    specs = args.table or [f"{Path(args.path.rstrip('/')).name}={args.path}"]
    tables = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--table wants NAME=PATH, not {spec!r}")
        columns = None
        if args.columns is not None:
            columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        elif args.sql == DEFAULT_SQL and name == "lineitem":
            columns = DEFAULT_COLUMNS
        tables[name] = quiver_flight.scan_request(args.source, path, columns, args.filter)
    return tables


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    quiver_flight.add_scan_arguments(parser)
    parser.add_argument("--table", action="append", metavar="NAME=PATH",
                        help="a table to register, read from PATH of --source (repeatable); "
                             "default: one table named after --path's last segment")
    parser.add_argument("--columns", default=None,
                        help="comma-separated projection applied to every table (default: what the "
                             "default query needs, or every column with --sql)")
    parser.add_argument("--filter", default=None,
                        help="a filter the node applies to every table before sending it")
    parser.add_argument("--sql", default=DEFAULT_SQL, help="the query (default: TPC-H Q6 over lineitem)")
    args = parser.parse_args(argv)

    tables = parse_tables(args)
    result = run_sql(args.endpoint, tables, args.sql, token=args.token, max_workers=args.workers,
                     tls_root_certs=quiver_flight.read_pem(args.tls_root_certs))
    for row in result.to_pylist():
        print(row)


if __name__ == "__main__":
    main()
