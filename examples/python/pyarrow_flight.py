"""Read a Quiver scan with plain pyarrow.flight.

Shows the whole client side of a scan: GetFlightInfo for a ScanRequest
(source, path, columns, filter, limit), then a DoGet for every endpoint in
parallel, each sent to the endpoint's first location with the others as
fall-backs, joined in endpoint order into one pyarrow.Table.

    python examples/python/pyarrow_flight.py --endpoint grpc://127.0.0.1:50051 \\
        --source local --path tpch/lineitem/ \\
        --columns l_orderkey,l_quantity --filter "l_quantity > 45" --limit 10
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quiver_flight  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    quiver_flight.add_scan_arguments(parser)
    parser.add_argument("--columns", default=None,
                        help="comma-separated projection, in the order wanted (default: every column)")
    parser.add_argument("--filter", default=None,
                        help="a SQL boolean expression in DataFusion's dialect, e.g. \"l_quantity > 45\"")
    parser.add_argument("--limit", type=int, default=None, help="a row cap over the whole result")
    parser.add_argument("--show", type=int, default=10, help="rows to print (default: %(default)s)")
    args = parser.parse_args(argv)

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    request = quiver_flight.scan_request(args.source, args.path, columns, args.filter, args.limit)
    with quiver_flight.Clients(quiver_flight.read_pem(args.tls_root_certs)) as clients:
        started = time.perf_counter()
        info = quiver_flight.flight_info(clients, args.endpoint, request, args.token)
        print(f"request:   {json.dumps(request)}")
        print(f"endpoints: {len(info.endpoints)}, total_records: {info.total_records}")
        for ep in info.endpoints[:5]:
            ticket = json.loads(ep.ticket.ticket)
            print(f"  {ticket['path']} at {[loc.uri.decode() for loc in ep.locations]}")
        if len(info.endpoints) > 5:
            print(f"  ... and {len(info.endpoints) - 5} more")
        table = quiver_flight.read_endpoints(
            clients, info.endpoints, info.schema, args.endpoint,
            token=args.token, limit=args.limit, max_workers=args.workers,
            compression=args.compression,
        )
        elapsed = time.perf_counter() - started
    print(f"read {table.num_rows} rows, {table.nbytes} bytes in {elapsed:.3f}s")
    print(table.schema)
    for row in table.slice(0, args.show).to_pylist():
        print(row)


if __name__ == "__main__":
    main()
