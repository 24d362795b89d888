"""Checks that a benchmark run wrote well-formed results.

Used by infra/test.sh after `quiver-bench --quick` and the other workloads.
It checks shapes and invariants that hold on any machine (every case ran in
every mode, percentiles are ordered, a warm cache reads nothing from S3,
pushdown sends fewer bytes than the baselines download), never timings.
"""

import json
import pathlib
import struct
import sys

MODES = ["direct", "datafusion", "quiver-cold", "quiver-warm"]
KEYS = [
    "workload", "case", "mode", "requests", "concurrency", "latency_ms", "latencies_ms",
    "wall_s", "requests_per_s", "throughput_mb_s", "rows", "arrow_bytes", "hit_ratio",
    "origin_bytes", "s3_requests", "bytes_to_client", "peak_rss_bytes", "speedup_vs_datafusion",
]
PLOTS = ["trace-latency.png", "pushdown-latency.png", "pushdown-bytes.png"]


def check_png(path: pathlib.Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name} has no IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 400, f"{path.name} is {width}x{height}"
    assert len(data) > 5000, f"{path.name} looks empty ({len(data)} bytes)"


def check_counted_bytes(measurements: list, command: str) -> None:
    """The Arrow bytes the benchmark's client counted for a Quiver mode
    are the bytes the node sent as IPC, less framing: each buffer counted
    once. Counting `get_array_memory_size()` of Flight-decoded batches,
    whose columns share one message buffer, gave each column the whole
    message (16 columns, 16 times the bytes). Only for uncompressed
    streams (compressed, the Arrow bytes exceed what was sent) and answers
    of at least 1 MiB (below, the schema and batch headers weigh)."""
    compressed = "--ipc-compression" in command and "--ipc-compression none" not in command
    # Running nodes named by URL may be off loopback, where the default
    # compression compresses.
    if compressed or "--nodes grpc" in command:
        return
    checked = 0
    for m in measurements:
        sent = m["bytes_to_client"]
        if not m["mode"].startswith("quiver") or sent < (1 << 20):
            continue
        ratio = m["arrow_bytes"] / sent
        assert 0.8 <= ratio <= 1.0, (
            f"{m['workload']} {m['case']} {m['mode']}: the client counted {m['arrow_bytes']} B "
            f"of Arrow for {sent} B the node sent")
        checked += 1
    assert checked > 0, "no Quiver answer of at least 1 MiB to check the byte counts on"


def check_suite(out: pathlib.Path) -> None:
    suite = json.loads((out / "results.json").read_text())
    assert suite["command"].startswith("cargo build --release"), suite["command"]
    ms = suite["measurements"]
    assert {m["workload"] for m in ms} == {"trace", "pushdown"}
    cases = {}
    for m in ms:
        for k in KEYS:
            assert k in m, f"measurement lacks {k}: {m['workload']} {m['case']}"
        cases.setdefault((m["workload"], m["case"]), {})[m["mode"]] = m
        lat = m["latency_ms"]
        # The spread is reported with the median and p95.
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
        assert len(m["latencies_ms"]) == m["requests"] > 0
        assert min(m["latencies_ms"]) == lat["min"] and max(m["latencies_ms"]) == lat["max"], lat
        assert m["rows"] > 0 or m["workload"] == "pushdown"
        if m["mode"].startswith("quiver"):
            assert m["hit_ratio"] is not None and m["peak_rss_bytes"] > 0
        else:
            assert m["hit_ratio"] is None and m["s3_requests"] > 0
        assert m["speedup_vs_datafusion"] > 0
    check_counted_bytes(ms, suite["command"])
    traces = [c for (w, c) in cases if w == "trace"]
    assert traces == ["zipf-small", "zipf-large", "parallel", "serial"], traces
    assert len([c for (w, c) in cases if w == "pushdown"]) == 8
    for (workload, case), modes in cases.items():
        assert sorted(modes) == sorted(MODES), (workload, case, sorted(modes))
        rows = {m["rows"] for m in modes.values()}
        assert len(rows) == 1, f"{workload} {case}: modes disagree on rows {rows}"
        warm = modes["quiver-warm"]
        assert warm["origin_bytes"] == 0, f"{workload} {case}: warm run read {warm['origin_bytes']} B from S3"
        assert warm["hit_ratio"] == 1.0, f"{workload} {case}: warm hit ratio {warm['hit_ratio']}"
        assert modes["quiver-cold"]["origin_bytes"] > 0, f"{workload} {case}: cold run read nothing"
    for sel in ["0.1%", "1%"]:
        for cols in ["2 cols", "all cols"]:
            modes = cases[("pushdown", f"{sel} of rows, {cols}")]
            sent = modes["quiver-warm"]["bytes_to_client"]
            fetched = modes["direct"]["bytes_to_client"]
            assert sent < fetched, f"pushdown {sel} {cols}: Quiver sent {sent} B, direct fetched {fetched} B"
    md = (out / "results.md").read_text()
    for needle in ["### trace", "### pushdown", "x DataFusion", "median ms", "min–max ms", "Reproduce:"] + PLOTS:
        assert needle in md, f"results.md lacks {needle!r}"
    for plot in PLOTS:
        check_png(out / plot)


def check_node(out: pathlib.Path) -> None:
    report = json.loads((out / "node.json").read_text())
    for key in ("sweep", "quiver_warm_ms", "speedup_warm_vs_datafusion",
                "bytes_to_client_fraction", "peak_rss_bytes"):
        assert key in report, key
    assert report["rows_matched"] > 0 and report["peak_rss_bytes"] > 0
    # The headline link first, then the sweep's: 30 ms, then 5 and 15.
    latencies = [p["link_latency_ms"] for p in report["sweep"]]
    assert latencies == [30, 5, 15], latencies
    runs = len(report["quiver_warm_ms"])
    for point in report["sweep"]:
        assert len(point["datafusion_direct_ms"]) == runs > 0, point
        assert point["datafusion_best"] in [c for c, _ in point["datafusion_trials"]], point
        assert len(point["datafusion_trials"]) == 8, point
        assert point["speedup_warm_vs_datafusion"] > 0, point
    md = (out / "node.md").read_text()
    assert "warm speed-up" in md and "Latency sweep" in md, md


def check_hot(out: pathlib.Path) -> None:
    report = json.loads((out / "hot.json").read_text())
    for key in ("datafusion_query_ms", "quiver_query_ms", "speedup_query",
                "quiver_scan_1_client_gb_s", "quiver_scan_2_clients_gb_s", "datafusion_scan_gb_s"):
        assert key in report, key
    assert report["rows_matched"] > 0 and report["scan_arrow_bytes"] > 0, report
    for measure in ("query", "scan"):
        trials = report[f"datafusion_{measure}_trials"]
        assert len(trials) == 8, trials
        assert report[f"datafusion_{measure}_best"] in [c for c, _ in trials], report
    assert len(report["quiver_query_ms"]) == len(report["datafusion_query_ms"]) > 0, report
    # The node's CPU per query is read from /proc, which CI has.
    assert report["quiver_query_node_cpu_ms"] is not None, report
    # Every timed Quiver scan was a hot-tier hit.
    assert report["hot"]["hits"] >= 4 * len(report["quiver_query_ms"]), report["hot"]
    assert report["hot"]["usage"] > 0, report["hot"]
    assert "Warm hits" in (out / "hot.md").read_text()


def check_cluster(out: pathlib.Path) -> None:
    report = json.loads((out / "cluster.json").read_text())
    runs = {r["nodes"]: r["pass"] for r in report["runs"]}
    assert sorted(runs) == [1, 3], sorted(runs)
    for nodes, m in runs.items():
        assert m["requests"] > 0 and m["requests_per_s"] > 0, (nodes, m)
        assert m["hit_ratio"] is not None and m["peak_rss_bytes"] > 0, (nodes, m)
    # The data is sized to exceed one node's memory and fit in three.
    assert runs[3]["origin_bytes"] < runs[1]["origin_bytes"], (
        f"3 nodes read {runs[3]['origin_bytes']} B from S3, 1 node {runs[1]['origin_bytes']} B")
    assert "One node against three" in (out / "cluster.md").read_text()


def check_tpch(out: pathlib.Path) -> None:
    report = json.loads((out / "tpch.json").read_text())
    queries = {q["query"]: q for q in report["queries"]}
    assert sorted(queries) == ["Q1", "Q14", "Q6"], sorted(queries)
    for name, q in queries.items():
        assert q["rows"] > 0, name
        assert len(q["datafusion_s3_ms"]) == report["runs"] == len(q["quiver_warm_ms"]), name
        assert len(q["flight_sql_ms"]) == report["runs"], name
        assert q["speedup_warm"] > 0 and q["speedup_flight_sql"] > 0, (name, q)
    assert "warm speedup" in (out / "tpch.md").read_text()
    assert report["nodes"] == 1 and report["distributed"] == [], report["distributed"]


def check_tpch_cluster(out: pathlib.Path) -> None:
    """`tpch --nodes 3`: each query also ran distributed on node 1 and alone
    on node 2; the distributed coordinator received less than the single
    one's scans streamed to it, from tasks of which some read their own
    node's slots."""
    report = json.loads((out / "tpch.json").read_text())
    assert report["nodes"] == 3 and report["lineitem_files"] == 12, report
    runs = report["runs"]
    assert sorted(d["query"] for d in report["distributed"]) == ["Q1", "Q14", "Q6"], report["distributed"]
    for d in report["distributed"]:
        assert len(d["single_ms"]) == runs == len(d["distributed_ms"]), d
        assert 0 < d["distributed_coordinator_bytes"] < d["single_coordinator_bytes"], d
        assert d["tasks"] >= d["local_leaf_tasks"] > 0, d
        assert d["speedup"] > 0, d
    assert "Distributed stages against one coordinator" in (out / "tpch.md").read_text()


def check_presign(out: pathlib.Path) -> None:
    report = json.loads((out / "presign.json").read_text())
    runs = report["runs"]
    for key in ("direct_ms", "direct_cached_ms", "read_through_ms", "presigned_ms", "warming_ms", "warm_ms", "warm_origin_bytes"):
        assert len(report[key]) == runs > 0, key
    assert report["rows"] > 0
    assert all(b == 0 for b in report["warm_origin_bytes"]), (
        f"scans after background warming read {report['warm_origin_bytes']} B from S3")
    for key in ("direct_vs_tuned", "read_through_vs_tuned", "presigned_vs_tuned", "warm_vs_tuned"):
        assert report[key] > 0, (key, report[key])
    assert "Quiver pre-signed (cold)" in (out / "presign.md").read_text()


def check_delta(out: pathlib.Path) -> None:
    report = json.loads((out / "delta.json").read_text())
    runs = report["runs"]
    assert report["files"] > 0 and report["table_bytes"] > 0 and runs > 0
    series = lambda s: len(s["ms"]) == runs and 0 < s["min_ms"] <= s["median_ms"] <= s["max_ms"]
    assert len(report["queries"]) == 2
    for q in report["queries"]:
        for mode in ("datafusion", "quiver_cold", "quiver_warm", "quiver_warm_after_validate"):
            assert series(q[mode]), (q["name"], mode, q[mode])
        # A Delta file is never revalidated: a warm query past `validate`
        # asks the origin nothing.
        assert q["heads_after_validate"] == [0] * runs, (q["name"], q["heads_after_validate"])
    assert series(report["scans_revalidated"]) and series(report["scans_immutable"])
    assert report["heads_revalidated"] == [report["files"]] * runs, report["heads_revalidated"]
    assert report["heads_immutable"] == [0] * runs, report["heads_immutable"]
    assert "### Skipping revalidation" in (out / "delta.md").read_text()


def check_load(out: pathlib.Path) -> None:
    report = json.loads((out / "load.json").read_text())
    levels = {l["clients"]: l for l in report["levels"]}
    assert sorted(levels) == [64, 256], sorted(levels)
    for clients, l in levels.items():
        assert l["requests"] > 0 and l["answered"] > 0, (clients, l)
        assert l["answered"] + sum(l["errors"].values()) == l["requests"], (clients, l)
        # Past the node's limits the only acceptable answer is to back off.
        bad = {code: n for code, n in l["errors"].items() if code != "ResourceExhausted"}
        assert not bad, f"{clients} clients: errors other than ResourceExhausted: {bad}"
        lat = l["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
        assert l["peak_rss_bytes"] and l["peak_rss_bytes"] > 0, l
        assert l["within_memory_target"] is not None, l
    assert "Load: many clients on one node" in (out / "load.md").read_text()


def check_policies(out: pathlib.Path) -> None:
    report = json.loads((out / "policies.json").read_text())
    policies = {"lru", "lfu", "s3fifo", "fifo", "sieve"}
    assert report["best"] in policies, report["best"]
    assert {t["trace"] for t in report["traces"]} == {"zipf", "istziio"}
    for t in report["traces"]:
        sizes = sorted({p["size_pct"] for p in t["points"]})
        assert len(sizes) >= 2, sizes
        for policy in policies:
            curve = sorted((p["size_pct"], p["outcome"]) for p in t["points"] if p["policy"] == policy)
            assert [s for s, _ in curve] == sizes, (t["trace"], policy)
            for _, o in curve:
                assert o["requests"] == t["reads"], (t["trace"], policy, o)
                assert 0 < o["origin_bytes"] and o["hits"] + o["misses"] > 0, o
            # A bigger cache never costs more origin bytes by much (the
            # policies are not stack algorithms, so allow a little).
            first, last = curve[0][1]["origin_bytes"], curve[-1][1]["origin_bytes"]
            assert last <= first * 1.05, (t["trace"], policy, first, last)
        cohorts = t["ab"]
        assert len(cohorts) == 2, cohorts
        assert sum(c["outcome"]["requests"] for c in cohorts) == t["reads"]
        name = "".join(c if c.isalnum() else "-" for c in t["trace"])
        check_png(out / f"policies-{name}.png")
    md = (out / "policies.md").read_text()
    assert "# Eviction policies" in md
    live = report["live"]
    assert live is not None, "the live A/B did not run"
    assert "## Live A/B" in md
    ab, swapped = live["ab"], live["swapped"]
    assert len(ab) == len(swapped) == 2, live
    # The second pass runs each cohort under the other cohort's policy.
    assert [c["policy"] for c in swapped] == [c["policy"] for c in reversed(ab)], live
    for cohorts in (ab, swapped):
        assert sum(c["requests"] for c in cohorts) == live["requests"], cohorts
        assert [c["clients_pct"] for c in cohorts] == [80, 20], cohorts
        for c in cohorts:
            lat = c["latency_ms"]
            assert c["requests"] > 0 and 0 < lat["p50"] <= lat["p99"] <= lat["max"], c
            assert 0 <= c["hit_ratio"] <= 1 and c["origin_mib"] > 0, c
            assert c["capacity_mib"] > 0, c
    # Over both passes each policy served every request once.
    totals = live["totals"]
    assert sorted(t["policy"] for t in totals) == sorted(c["policy"] for c in ab), totals
    for t in totals:
        assert t["requests"] == live["requests"] and t["origin_mib"] > 0 and t["mean_ms"] > 0, t
    assert "Fewest origin bytes: **" in md


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    # Every report infra/test.sh asks for must be there: a workload that
    # silently wrote nothing is a failure, not a skip.
    for report in ("results.json", "node.json", "cluster.json", "tpch.json", "presign.json", "load.json", "policies.json", "delta.json"):
        assert (out / report).exists(), f"{report} is missing from {out}"
    check_suite(out)
    check_node(out)
    check_cluster(out)
    check_tpch(out)
    check_tpch_cluster(out / "tpch-cluster")
    check_presign(out)
    check_delta(out)
    check_load(out)
    check_policies(out)
    check_hot(out)
    print("benchmark results are well-formed")
