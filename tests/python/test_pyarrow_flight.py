"""pyarrow.flight against the real quiver-server binary.

Every answer is compared with pyarrow reading the same Parquet file directly.
"""

import datetime
import json
import subprocess

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pytest


def lineitem(server):
    return server.data_dir / "tpch" / "lineitem" / "part-0.parquet"


def direct(path, columns, expression):
    return ds.dataset(path, format="parquet").to_table(columns=columns, filter=expression)


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    keys = [(c, "ascending") for c in a.column_names]
    return a.sort_by(keys).equals(b.sort_by(keys))


def connect(server) -> fl.FlightClient:
    return fl.connect(f"grpc://127.0.0.1:{server.port}")


def cmd(**request) -> fl.FlightDescriptor:
    return fl.FlightDescriptor.for_command(json.dumps(request))


def test_flight_info_and_do_get_match_pyarrow(server):
    client = connect(server)
    columns = ["l_orderkey", "l_linenumber", "l_shipdate"]
    info = client.get_flight_info(cmd(
        source="local", path="tpch/lineitem/", columns=columns,
        filter="l_shipdate >= DATE '1995-01-01' AND l_linenumber < 3",
    ))
    assert info.schema.names == columns
    assert len(info.endpoints) == 1
    assert info.endpoints[0].locations[0].uri.decode() == f"grpc://127.0.0.1:{server.port}"
    got = pa.concat_tables(client.do_get(ep.ticket).read_all() for ep in info.endpoints)
    want = direct(lineitem(server), columns,
                  (ds.field("l_shipdate") >= datetime.date(1995, 1, 1)) & (ds.field("l_linenumber") < 3))
    assert got.num_rows > 0
    assert same_rows(got, want)


@pytest.mark.parametrize("codec", ["zstd", "lz4_frame"])
def test_compressed_streams_read_the_same(server, codec):
    """pyarrow reads the compressed bodies a header or ticket asks for, and
    gets the same rows as without."""
    client = connect(server)
    request = {"source": "local", "path": "tpch/orders/part-0.parquet",
               "columns": ["o_orderkey", "o_comment"], "filter": "o_orderkey < 20000"}
    plain = client.do_get(fl.Ticket(json.dumps(request))).read_all()
    header = fl.FlightCallOptions(headers=[(b"x-quiver-ipc-compression", codec.encode())])
    by_header = client.do_get(fl.Ticket(json.dumps(request)), header).read_all()
    by_ticket = client.do_get(fl.Ticket(json.dumps({**request, "compression": codec}))).read_all()
    assert plain.num_rows > 0
    assert by_header.equals(plain) and by_ticket.equals(plain)
    with pytest.raises(pa.ArrowInvalid, match="gzip"):
        client.do_get(fl.Ticket(json.dumps(request)), fl.FlightCallOptions(
            headers=[(b"x-quiver-ipc-compression", b"gzip")])).read_all()
    assert client.do_get(fl.Ticket(json.dumps(request))).read_all().equals(plain)


def test_hand_built_ticket(server):
    client = connect(server)
    ticket = fl.Ticket(json.dumps({
        "source": "local", "path": "tpch/orders/part-0.parquet",
        "columns": ["o_orderkey", "o_orderpriority"], "filter": "o_orderpriority LIKE '1%'",
    }))
    got = client.do_get(ticket).read_all()
    want = direct(server.data_dir / "tpch" / "orders" / "part-0.parquet", ["o_orderkey", "o_orderpriority"],
                  ds.field("o_orderpriority") == "1-URGENT")
    assert got.num_rows > 0
    assert same_rows(got, want)


def test_repeat_scan_costs_no_origin_bytes(server):
    client = connect(server)
    ticket = fl.Ticket(json.dumps({"source": "local", "path": "tpch/customer/part-0.parquet"}))
    client.do_get(ticket).read_all()
    before = json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())
    client.do_get(ticket).read_all()
    after = json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())
    assert after["origin_bytes"] == before["origin_bytes"]
    assert after["memory"]["hits"] > before["memory"]["hits"]


# pyarrow raises INVALID_ARGUMENT as ArrowInvalid and NOT_FOUND as
# ArrowKeyError; the message carries the gRPC code's name, which is asserted
# too, so that a case answered with the wrong §3 code fails.
@pytest.mark.parametrize("ticket,error,code", [
    ("not json", pa.ArrowInvalid, "invalid argument"),
    ('{"source":"local","path":"tpch/lineitem/part-0.parquet","colums":["x"]}', pa.ArrowInvalid, "invalid argument"),
    ('{"source":"nope","path":"x.parquet"}', pa.ArrowKeyError, "not found"),
    ('{"source":"local","path":"../../etc/passwd"}', pa.ArrowInvalid, "invalid argument"),
    ('{"source":"local","path":"tpch/missing.parquet"}', pa.ArrowKeyError, "not found"),
    ('{"source":"local","path":"tpch/region/part-0.parquet","filter":"r_nope > 1"}', pa.ArrowInvalid, "invalid argument"),
    ('{"source":"local","path":"tpch/region/part-0.parquet","limit":-1}', pa.ArrowInvalid, "invalid argument"),
])
def test_bad_tickets_leave_the_node_serving(server, ticket, error, code):
    client = connect(server)
    with pytest.raises(error) as e:
        client.do_get(fl.Ticket(ticket)).read_all()
    assert f"Flight returned {code} error" in str(e.value), str(e.value)
    ok = client.do_get(fl.Ticket(json.dumps({"source": "local", "path": "tpch/region/part-0.parquet"}))).read_all()
    assert ok.num_rows == 5


def test_tls_and_tokens(make_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    tokens = tmp_path / "tokens"
    tokens.write_text("secret-token\n")
    s = make_server("--tls-cert", str(cert), "--tls-key", str(key), "--tokens-file", str(tokens))
    client = fl.connect(f"grpc+tls://127.0.0.1:{s.port}", tls_root_certs=cert.read_bytes())
    ticket = fl.Ticket(json.dumps({"source": "local", "path": "tpch/nation/part-0.parquet"}))
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.do_get(ticket).read_all()
    header = client.authenticate_basic_token("alice", "secret-token")
    options = fl.FlightCallOptions(headers=[header])
    assert client.do_get(ticket, options).read_all().num_rows == 25
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.authenticate_basic_token("alice", "wrong")
    assert s.stop() == 0
