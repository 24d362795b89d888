"""Read a Quiver scan into a Polars DataFrame and aggregate it.

The node does the projection and the filter; Polars gets only the columns and
rows it needs (polars.from_arrow over the pyarrow.Table that
quiver_flight.read_scan returns, without copying the Arrow buffers where it
can) and does a TPC-H Q1-like pricing summary: per return flag and line
status, the quantity, the base price, the discounted price, the average
discount and the number of lines shipped up to 1998-09-02.

    python examples/python/polars_read.py --endpoint grpc://127.0.0.1:50051 \\
        --source local --path tpch/lineitem/
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl  # noqa: E402

import quiver_flight  # noqa: E402

COLUMNS = ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount"]
DEFAULT_FILTER = "l_shipdate <= DATE '1998-09-02'"


def read_frame(
    endpoint: str,
    source: str,
    path: str,
    columns=None,
    filter: Optional[str] = None,
    limit: Optional[int] = None,
    token: Optional[str] = None,
    max_workers: int = 8,
    tls_root_certs: Optional[bytes] = None,
) -> pl.DataFrame:
    """One Quiver scan as a Polars DataFrame."""
    request = quiver_flight.scan_request(source, path, columns, filter, limit)
    table = quiver_flight.read_scan(endpoint, request, token=token, max_workers=max_workers,
                                    tls_root_certs=tls_root_certs)
    return pl.from_arrow(table)


def pricing_summary(lines: pl.DataFrame) -> pl.DataFrame:
    """The Q1-like summary, one row per (l_returnflag, l_linestatus), sorted.

    Quantities and prices are Decimal(15, 2); their sums stay exact decimals.
    Polars keeps a decimal product at the larger input scale (2), which would
    round every discounted price to the cent, so that product is taken in
    float64."""
    price = pl.col("l_extendedprice").cast(pl.Float64)
    discount = pl.col("l_discount").cast(pl.Float64)
    return (
        lines.group_by("l_returnflag", "l_linestatus")
        .agg(
            pl.col("l_quantity").sum().alias("sum_qty"),
            pl.col("l_extendedprice").sum().alias("sum_base_price"),
            (price * (1 - discount)).sum().alias("sum_disc_price"),
            discount.mean().alias("avg_disc"),
            pl.len().alias("count_order"),
        )
        .sort("l_returnflag", "l_linestatus")
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    quiver_flight.add_scan_arguments(parser)
    parser.add_argument("--filter", default=DEFAULT_FILTER,
                        help="the filter the node applies (default: %(default)s; \"\" for none)")
    parser.add_argument("--limit", type=int, default=None, help="a row cap over the scan")
    args = parser.parse_args(argv)

    lines = read_frame(
        args.endpoint, args.source, args.path, COLUMNS, args.filter or None, args.limit,
        token=args.token, max_workers=args.workers, tls_root_certs=quiver_flight.read_pem(args.tls_root_certs),
    )
    print(f"read {lines.height} rows of {lines.width} columns")
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=4):
        print(pricing_summary(lines))


if __name__ == "__main__":
    main()
