"""Reading a Quiver scan into one pyarrow.Table: the code the other examples share.

A scan is two steps (docs/protocol.md, sections 1 and 2):

1. GetFlightInfo with a ScanRequest (JSON) as the descriptor's command. The
   node validates it and answers with the projected schema and one endpoint
   per Parquet object, in key order. Each endpoint carries a ticket for that
   one object and the nodes that own it, primary first.
2. DoGet for every endpoint's ticket. This module sends them in parallel from
   a thread pool, each to the endpoint's first location and, if that fails,
   to the next ones in order; an endpoint with no location is read from the
   node that answered GetFlightInfo. The pieces are joined in endpoint order.

With a filter every ticket carries the whole ``limit``, so the joined table is
cut to ``limit`` rows at the end (without a filter the node already split the
limit across the endpoints exactly).

Copy this file next to your own code; it needs only pyarrow.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional, Sequence

import pyarrow as pa
import pyarrow.flight as fl

DEFAULT_ENDPOINT = "grpc://127.0.0.1:50051"

# A location that means "the connection you asked on" (Arrow Flight's spec).
REUSE_CONNECTION = "arrow-flight-reuse-connection://?"


def scan_request(
    source: str,
    path: str,
    columns: Optional[Sequence[str]] = None,
    filter: Optional[str] = None,
    limit: Optional[int] = None,
) -> dict:
    """A ScanRequest as a dict; fields left as None are left out (absent means
    every column, no filter, no limit)."""
    request = {"source": source, "path": path}
    if columns is not None:
        request["columns"] = list(columns)
    if filter is not None:
        request["filter"] = filter
    if limit is not None:
        request["limit"] = int(limit)
    return request


# The header that asks a node to compress the IPC bodies it streams
# (docs/protocol.md, "Compression").
COMPRESSION_HEADER = b"x-quiver-ipc-compression"


def compression_for(uri: str, choice: str = "auto") -> Optional[str]:
    """The codec to ask the node at ``uri`` for: ``choice`` itself, or with
    ``auto`` LZ4_FRAME from a node off this machine's loopback and none from
    one on it, where compressing costs more CPU than the bytes it saves."""
    if choice != "auto":
        return None if choice == "none" else choice
    host = urllib.parse.urlparse(uri).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in ("", "localhost")
    return None if loopback else "lz4_frame"


def call_options(token: Optional[str] = None, compression: Optional[str] = None) -> fl.FlightCallOptions:
    """Call options carrying ``authorization: Bearer <token>`` when a token is
    given, and the compression header when a codec is."""
    headers = []
    if token:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    if compression:
        headers.append((COMPRESSION_HEADER, compression.encode()))
    return fl.FlightCallOptions(headers=headers)


def dial_uri(location: str, planner: str) -> str:
    """The URI pyarrow dials for a Flight location. ``grpc://``, ``grpc+tcp://``
    and ``grpc+tls://`` are used as they are, ``http://`` and ``https://`` are
    their plain and TLS spellings, and the reuse-connection URI (or an empty
    one) means the node that planned the scan."""
    if not location or location.startswith("arrow-flight-reuse-connection://"):
        return planner
    if location.startswith("http://"):
        return "grpc+tcp://" + location[len("http://"):]
    if location.startswith("https://"):
        return "grpc+tls://" + location[len("https://"):]
    return location


class Clients:
    """One FlightClient per URI, made on first use and shared by the threads
    (a FlightClient may be used from several threads at once)."""

    def __init__(self, tls_root_certs: Optional[bytes] = None):
        self._tls_root_certs = tls_root_certs
        self._clients: dict[str, fl.FlightClient] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> fl.FlightClient:
        with self._lock:
            client = self._clients.get(uri)
            if client is None:
                kwargs = {}
                if self._tls_root_certs and uri.startswith("grpc+tls://"):
                    kwargs["tls_root_certs"] = self._tls_root_certs
                client = fl.connect(uri, **kwargs)
                self._clients[uri] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> "Clients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def flight_info(clients: Clients, endpoint: str, request: dict, token: Optional[str] = None) -> fl.FlightInfo:
    """GetFlightInfo for ``request`` on the node at ``endpoint``."""
    descriptor = fl.FlightDescriptor.for_command(json.dumps(request))
    return clients.get(endpoint).get_flight_info(descriptor, call_options(token))


def endpoint_uris(ep: fl.FlightEndpoint, planner: str) -> list[str]:
    """Where to send one endpoint's DoGet, in the order to try: its locations
    (primary first), or the planning node when it lists none."""
    uris = [dial_uri(loc.uri.decode(), planner) for loc in ep.locations]
    uris = list(dict.fromkeys(uris))  # the same node once, in first-seen order
    return uris or [planner]


def read_endpoint(
    clients: Clients,
    ep: fl.FlightEndpoint,
    planner: str,
    token: Optional[str] = None,
    compression: str = "auto",
) -> pa.Table:
    """DoGet for one endpoint, trying its locations in order, each asked for
    the compression ``compression`` chooses for it. When every location
    fails, the first location's error is raised (with the others as notes),
    since the primary's answer is the telling one."""
    errors: list[tuple[str, BaseException]] = []
    for uri in endpoint_uris(ep, planner):
        options = call_options(token, compression_for(uri, compression))
        try:
            return clients.get(uri).do_get(ep.ticket, options).read_all()
        except (pa.ArrowException, OSError) as e:
            errors.append((uri, e))
    _, first = errors[0]
    for uri, e in errors[1:]:
        if hasattr(first, "add_note"):  # Python 3.11+
            first.add_note(f"the fallback {uri} failed too: {e}")
    raise first


def read_endpoints(
    clients: Clients,
    endpoints: Iterable[fl.FlightEndpoint],
    schema: pa.Schema,
    planner: str,
    token: Optional[str] = None,
    limit: Optional[int] = None,
    max_workers: int = 8,
    compression: str = "auto",
) -> pa.Table:
    """Reads every endpoint in parallel and joins the pieces in endpoint order
    into one table of ``schema``, cut to ``limit`` rows when one is given."""
    endpoints = list(endpoints)
    if not endpoints:
        return schema.empty_table()
    workers = max(1, min(max_workers, len(endpoints)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quiver-doget") as pool:
        futures = [pool.submit(read_endpoint, clients, ep, planner, token, compression) for ep in endpoints]
        pieces = [f.result() for f in futures]  # endpoint order, whatever finished first
    table = pa.concat_tables(pieces)
    if limit is not None and table.num_rows > limit:
        table = table.slice(0, limit)
    return table


def read_scan(
    endpoint: str,
    request: dict,
    token: Optional[str] = None,
    max_workers: int = 8,
    tls_root_certs: Optional[bytes] = None,
) -> pa.Table:
    """The whole answer to a ScanRequest as one pyarrow.Table: GetFlightInfo on
    ``endpoint``, then every endpoint's DoGet in parallel."""
    with Clients(tls_root_certs) as clients:
        info = flight_info(clients, endpoint, request, token)
        return read_endpoints(
            clients, info.endpoints, info.schema, endpoint,
            token=token, limit=request.get("limit"), max_workers=max_workers,
        )


def add_scan_arguments(parser: argparse.ArgumentParser, path: str = "tpch/lineitem/") -> None:
    """The command-line flags every example shares."""
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                        help="the Quiver node to plan the scan on (default: %(default)s)")
    parser.add_argument("--source", default="local", help="a source configured on the node (default: %(default)s)")
    parser.add_argument("--path", default=path,
                        help="an object key, or a prefix ending in / (default: %(default)s)")
    parser.add_argument("--token", default=None, help="a bearer token, when the node has auth on")
    parser.add_argument("--tls-root-certs", default=None, metavar="PEM",
                        help="CA certificates to trust for grpc+tls:// endpoints")
    parser.add_argument("--workers", type=int, default=8, help="parallel DoGet calls (default: %(default)s)")
    parser.add_argument("--compression", default="auto", choices=["auto", "none", "lz4_frame", "zstd"],
                        help="IPC compression to ask nodes for; auto: lz4_frame from nodes off loopback "
                             "(default: %(default)s)")


def read_pem(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()
