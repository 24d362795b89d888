"""Follow Quiver's pre-signed endpoints with pyarrow.

A client that sends `"accept": ["flight", "presigned"]` may get, for a cold
object, a pre-signed S3 GET URL instead of a Flight location, while the
owning node warms its cache in the background. This example reads such an
endpoint itself: pyarrow opens the Parquet object through HTTP Range requests
(the footer, then only the column chunks it needs), every request names the
planned ETag with If-Match and every answer's ETag is checked, and the
ticket's filter and limit are applied with datafusion-python. A URL that has
expired (HTTP 403) is planned again. Flight endpoints are read with DoGet.

    python examples/python/presigned_read.py --endpoint grpc://127.0.0.1:50051 \\
        --source lake --path tpch/lineitem/ \\
        --columns l_orderkey,l_quantity --filter "l_quantity > 45"
"""

import argparse
import io
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datafusion  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.flight as fl  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import quiver_flight  # noqa: E402


class UrlExpired(Exception):
    """The store refused the URL (403): plan the object again."""


class ObjectChanged(Exception):
    """The object is not the version the plan saw: plan it again."""


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over one pre-signed URL: each read is one
    HTTP Range request, pinned to `etag`."""

    def __init__(self, url: str, size: int, etag: str, timeout: float = 60.0):
        self.url, self.size, self.etag, self.timeout = url, size, etag, timeout
        self.pos = 0
        self.requests = 0
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, min(self.size, base + offset))
        return self.pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        request = urllib.request.Request(self.url, headers={
            "Range": f"bytes={self.pos}-{self.pos + n - 1}",
            "If-Match": self.etag,
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                if answer.headers.get("ETag", self.etag).strip('"') != self.etag.strip('"'):
                    raise ObjectChanged(self.url)
                data = answer.read()
        except urllib.error.HTTPError as e:
            if e.code == 403:
                raise UrlExpired(self.url) from e
            if e.code == 412:
                raise ObjectChanged(self.url) from e
            raise
        self.requests += 1
        self.bytes += len(data)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def needed_columns(schema: pa.Schema, columns: Optional[list], filter: Optional[str]) -> list:
    """The projection, plus every column the filter names."""
    wanted = list(columns) if columns else list(schema.names)
    if filter:
        for name in schema.names:
            if name not in wanted and re.search(rf"\b{re.escape(name)}\b", filter):
                wanted.append(name)
    return wanted


def read_presigned(url: str, meta: dict, ticket: dict, source: Optional[RangeFile] = None) -> pa.Table:
    """The object behind a pre-signed endpoint, with the ticket's projection,
    filter and limit applied. `source` may be given to see what was read."""
    source = source or RangeFile(url, meta["size"], meta["etag"])
    parquet = pq.ParquetFile(io.BufferedReader(source, buffer_size=64 << 10))
    schema = parquet.schema_arrow
    table = parquet.read(columns=needed_columns(schema, ticket.get("columns"), ticket.get("filter")))
    columns = ticket.get("columns") or schema.names
    if ticket.get("filter") is None and ticket.get("limit") is None:
        return table.select(columns)
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [table.to_batches()])
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    sql = f"SELECT {quoted} FROM t"
    if ticket.get("filter"):
        sql += f" WHERE {ticket['filter']}"
    if ticket.get("limit") is not None:
        sql += f" LIMIT {int(ticket['limit'])}"
    result = ctx.sql(sql).to_arrow_table()
    return result.cast(table.select(columns).schema)


def read_endpoint(clients, ep: fl.FlightEndpoint, planner: str, token: Optional[str], replanned: bool = False):
    """One endpoint as a pyarrow.Table, and how it was read."""
    meta = json.loads(ep.app_metadata) if ep.app_metadata else {}
    if meta.get("kind") != "presigned":
        return quiver_flight.read_endpoint(clients, ep, planner, token), "flight"
    ticket = json.loads(ep.ticket.ticket)
    try:
        return read_presigned(ep.locations[0].uri.decode(), meta, ticket), "presigned"
    except (UrlExpired, ObjectChanged):
        if replanned:
            raise
        again = {k: v for k, v in ticket.items() if k in ("source", "path", "columns", "filter", "limit")}
        again["accept"] = ["flight", "presigned"]
        info = quiver_flight.flight_info(clients, planner, again, token)
        return read_endpoint(clients, info.endpoints[0], planner, token, replanned=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    quiver_flight.add_scan_arguments(parser)
    parser.add_argument("--columns", default=None, help="comma-separated projection (default: every column)")
    parser.add_argument("--filter", default=None, help="a SQL boolean expression, e.g. \"l_quantity > 45\"")
    parser.add_argument("--limit", type=int, default=None, help="a row cap per object")
    args = parser.parse_args(argv)

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    request = quiver_flight.scan_request(args.source, args.path, columns, args.filter, args.limit)
    request["accept"] = ["flight", "presigned"]
    with quiver_flight.Clients(quiver_flight.read_pem(args.tls_root_certs)) as clients:
        info = quiver_flight.flight_info(clients, args.endpoint, request, args.token)
        for ep in info.endpoints:
            table, how = read_endpoint(clients, ep, args.endpoint, args.token)
            print(f"{json.loads(ep.ticket.ticket)['path']}: {table.num_rows} rows via {how}")


if __name__ == "__main__":
    main()
