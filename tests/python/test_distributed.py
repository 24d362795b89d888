"""Flight SQL over a 3-node cluster in distributed stages (issue 28,
docs/architecture.md "Distributed SQL").

Three server processes share a topology (replication 2) over TPC-H SF 0.1
on s3s-fs, with reader, admin and peer tokens. Nodes n1 and n2 run
`sql.distributed = on`; n3 runs `off`, so it answers the same statements as
a single coordinator whose scans still read from the owners, while it works
for the others. Every answer is compared with DataFusion reading the same
Parquet files, and the distributed answers with n3's.
"""

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import datafusion
import pyarrow.dataset as ds
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from conftest import Server, free_port, s3_serving
from test_delta import number, tpch_queries

AUTH_HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
READER, ADMIN, PEER = "reader-token", "admin-token", "peer-token"
TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]

# Aggregates over lineitem whose distributed plans send partial aggregates,
# not rows, to the coordinator.
AGGREGATES = {
    "q1": dict(tpch_queries())["q1"],
    "q6": dict(tpch_queries())["q6"],
    "group_by": "SELECT l_suppkey, sum(l_quantity) AS qty, count(*) AS n "
                "FROM lineitem GROUP BY l_suppkey",
}


class Cluster:
    def __init__(self, tmp: Path, source_toml: str, sql_extra: str = ""):
        self.tmp, self.source_toml = tmp, source_toml
        secrets = tmp / "secrets"
        secrets.mkdir(parents=True)
        for name, token in [("tokens", READER), ("admin", ADMIN), ("peer", PEER)]:
            (secrets / name).write_text(token + "\n")
        self.ids = ["n1", "n2", "n3"]
        ports = [free_port() for _ in self.ids]
        topology = tmp / "topology.json"
        topology.write_text(json.dumps({
            "epoch": 1,
            "replication": 2,
            "nodes": [{"id": i, "url": f"grpc://127.0.0.1:{p}"} for i, p in zip(self.ids, ports)],
            "slots": [
                {"start": 0, "end": 5460, "owners": ["n1", "n2"]},
                {"start": 5461, "end": 10922, "owners": ["n2", "n3"]},
                {"start": 10923, "end": 16383, "owners": ["n3", "n1"]},
            ],
        }))
        self.nodes = {}
        for node_id, port, mode in zip(self.ids, ports, ["on", "on", "off"]):
            config = tmp / f"{node_id}.toml"
            config.write_text(f"""{source_toml}
[auth]
tokens_file = "{secrets / 'tokens'}"
admin_token_file = "{secrets / 'admin'}"
peer_token_file = "{secrets / 'peer'}"

[cluster]
node_id = "{node_id}"
topology = "{topology}"
reload = "200ms"

[sql]
distributed = "{mode}"
{sql_extra}
""")
            self.nodes[node_id] = Server(tmp / node_id, "--config", str(config), port=port)

    def connect(self, node_id: str, token: str = READER):
        return flight_sql.connect(f"grpc://127.0.0.1:{self.nodes[node_id].port}",
                                  db_kwargs={AUTH_HEADER: f"Bearer {token}"}, autocommit=True)

    def stats(self, node_id: str) -> dict:
        client = fl.connect(f"grpc://127.0.0.1:{self.nodes[node_id].port}")
        options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {ADMIN}".encode())])
        return json.loads(next(client.do_action(fl.Action("stats", b""), options)).body.to_pybytes())

    def all_stats(self) -> dict:
        return {i: self.stats(i) for i, s in self.nodes.items() if s.proc.poll() is None}

    def stop(self) -> None:
        for s in self.nodes.values():
            s.stop()


def sql(conn, query: str):
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def norm(table) -> list:
    return sorted((tuple(number(v) for v in r) for r in zip(*(c.to_pylist() for c in table.columns))), key=repr)


def split(source: Path, to: Path, rows: int = 100_000) -> None:
    """The table in files of at most `rows` rows, as a lake holds a large
    table: their keys hash to different slots, so owners differ."""
    table = ds.dataset(source, format="parquet").to_table()
    to.mkdir(parents=True)
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows)):
        pq.write_table(table.slice(start, rows), to / f"part-{i:03}.parquet", row_group_size=50_000)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """TPC-H SF 0.1 in an s3s-fs bucket, the oracle over the same files, and
    the cluster reading the bucket."""
    tmp = tmp_path_factory.mktemp("distributed")
    sample = Server(tmp / "sample", "--sample-scale", "0.1")
    assert sample.stop() == 0, sample.logs()
    bucket = tmp / "s3" / "lake"
    oracle = datafusion.SessionContext(
        datafusion.SessionConfig().set("datafusion.sql_parser.parse_float_as_decimal", "true"))
    for name in TABLES:
        split(sample.data_dir / "tpch" / name, bucket / name)
        oracle.register_parquet(name, str(bucket / name))
    with s3_serving(tmp / "s3") as source:
        cluster = Cluster(tmp, source)
        try:
            yield cluster, oracle
        finally:
            cluster.stop()


def delta(after: dict, before: dict, key: str) -> dict:
    return {i: after[i]["sql"][key] - before[i]["sql"][key] for i in after}


def test_tpch_in_distributed_stages_equals_the_oracle_and_one_coordinator(lake):
    """All 22 queries through n1 (distributed) and n3 (one coordinator)
    equal the oracle. Every query that reads lineitem (split over several
    nodes' slots) ran in stages, with tasks on at least two nodes; the
    others may read single-file tables, which a node reads alone."""
    cluster, oracle = lake
    distributed, single = cluster.connect("n1"), cluster.connect("n3")
    staged = []
    for name, query in tpch_queries():
        want = oracle.sql(query).to_arrow_table()
        before = cluster.all_stats()
        got = sql(distributed, query)
        after = cluster.all_stats()
        alone = sql(single, query)
        assert got.schema.names == want.schema.names, name
        assert norm(got) == norm(want), name
        assert norm(got) == norm(alone), name
        ran = delta(after, before, "distributed_statements")
        assert ran["n2"] == ran["n3"] == 0, (name, ran)
        if ran["n1"]:
            staged.append(name)
            tasks = delta(after, before, "tasks")
            assert sum(1 for n in tasks.values() if n > 0) >= 2, (name, tasks)
        else:
            assert "lineitem" not in query, name
    assert len(staged) >= 16, staged
    distributed.close()
    single.close()


@pytest.mark.parametrize("name", sorted(AGGREGATES))
def test_the_coordinator_receives_partial_aggregates_not_rows(lake, name):
    """The bytes n1 receives from workers for a distributed aggregate are at
    most 5% of what the owners stream to n3 for the same statement run on
    it alone; its tasks run on at least two nodes, each leaf task on an
    owner of the slots it reads."""
    cluster, oracle = lake
    query = AGGREGATES[name]
    want = norm(oracle.sql(query).to_arrow_table())
    single = cluster.connect("n3")
    s0 = cluster.all_stats()
    assert norm(sql(single, query)) == want
    s1 = cluster.all_stats()
    streamed = sum(s1[i]["bytes_served"] - s0[i]["bytes_served"] for i in s1)
    distributed = cluster.connect("n1")
    assert norm(sql(distributed, query)) == want
    s2 = cluster.all_stats()
    received = s2["n1"]["sql"]["coordinator_bytes"] - s1["n1"]["sql"]["coordinator_bytes"]
    assert streamed > 100_000, streamed
    assert 0 < received <= 0.05 * streamed, (received, streamed)
    tasks = delta(s2, s1, "tasks")
    assert sum(1 for n in tasks.values() if n > 0) >= 2, tasks
    leaves, local = delta(s2, s1, "leaf_tasks"), delta(s2, s1, "local_leaf_tasks")
    assert sum(leaves.values()) >= 2, leaves
    assert local == leaves, (local, leaves)
    single.close()
    distributed.close()


def test_explain_shows_the_stages_and_where_scans_run(lake):
    cluster, _ = lake
    urls = {f"grpc://127.0.0.1:{s.port}" for s in cluster.nodes.values()}
    conn = cluster.connect("n1")
    rows = {r["plan_type"]: r["plan"] for r in sql(conn, "EXPLAIN " + AGGREGATES["group_by"]).to_pylist()}
    assert set(rows) == {"logical_plan", "distributed_plan", "scan_tasks"}, rows
    assert "Stage 1" in rows["distributed_plan"] and "tasks=" in rows["distributed_plan"], rows
    tasks = [line for line in rows["scan_tasks"].splitlines() if line.strip().startswith("t")]
    assert len(tasks) >= 2, rows["scan_tasks"]
    where = {line.rsplit(" on ", 1)[1].rstrip("/") for line in tasks}
    assert where <= urls and len(where) >= 2, tasks
    # EXPLAIN ANALYZE runs it, with every stage's metrics.
    analyzed = sql(conn, "EXPLAIN ANALYZE " + AGGREGATES["group_by"]).to_pylist()
    assert "Stage 1" in analyzed[0]["plan"], analyzed
    # The node that does not coordinate explains its own single-node plan.
    single = cluster.connect("n3")
    plain = {r["plan_type"] for r in sql(single, "EXPLAIN " + AGGREGATES["group_by"]).to_pylist()}
    assert plain == {"logical_plan", "physical_plan"}, plain
    conn.close()
    single.close()


def test_the_memory_limit_holds_on_every_worker(lake):
    """A cluster whose statements may use 16 MiB: a sort over lineitem that
    needs more on each worker fails with ResourceExhausted from the stages,
    one that fits answers, and the cluster still serves."""
    cluster, oracle = lake
    small = Cluster(cluster.tmp / "small", cluster.source_toml, 'query_memory = "16MiB"')
    try:
        conn = small.connect("n1")
        with pytest.raises(Exception) as refused:
            sql(conn, "SELECT * FROM lineitem ORDER BY l_comment, l_orderkey")
        assert "(ResourceExhausted;" in str(refused.value), refused.value
        stats = small.stats("n1")["sql"]
        assert stats["distributed_statements"] >= 1, stats
        query = AGGREGATES["q6"]
        assert norm(sql(conn, query)) == norm(oracle.sql(query).to_arrow_table())
        conn.close()
    finally:
        small.stop()


def test_killing_a_worker_mid_statement(lake):
    """n2 is killed while n1 runs a distributed statement: the statement
    errors cleanly or answers the right rows, and the next one succeeds
    from the replicas. It runs last: n2 stays down."""
    cluster, oracle = lake
    query = dict(tpch_queries())["q9"]
    want = norm(oracle.sql(query).to_arrow_table())
    conn = cluster.connect("n1")
    assert norm(sql(conn, query)) == want
    outcome = {}

    def run():
        try:
            outcome["rows"] = norm(sql(conn, query))
        except Exception as e:
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.3)
    cluster.nodes["n2"].proc.send_signal(signal.SIGKILL)
    worker.join(timeout=300)
    assert not worker.is_alive()
    if "error" in outcome:
        message = str(outcome["error"])
        assert "(Unavailable;" in message and "distributed statement failed" in message, message
    else:
        assert outcome["rows"] == want
    conn.close()
    again = cluster.connect("n1")
    assert norm(sql(again, query)) == want
    after = cluster.stats("n1")
    assert after["sql"]["distributed_statements"] > 0
    again.close()
