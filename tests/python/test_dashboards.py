"""The Grafana dashboard and the Prometheus rules name only what a node exports.

deploy/grafana/quiver.json and deploy/prometheus/alerts.yml are text that no
compiler reads: a renamed or misspelled metric would leave a panel empty or
an alert that can never fire. This test starts the real quiver-server, has it
serve some reads (and fail one, and run a SQL statement) so that lazily
created series exist, scrapes its /metrics, and checks every metric name
either file uses against what the node exported, and that counters and
histograms are read through rate()/increase() and gauges are not.

`promtool check rules` / `promtool test rules` (infra/check-rules.sh) check
the rules' syntax and when each alert fires; this test checks their names.
"""

import json
import re
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "quiver.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"

# Series Prometheus makes itself for every target rather than scraping them.
FROM_PROMETHEUS = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                   "scrape_samples_post_metric_relabeling", "scrape_series_added"}

# Words of PromQL that look like names but are not series.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}

# Functions whose argument is a range of a counter (or of a histogram's
# _bucket, _sum or _count series, which are counters too).
COUNTER_FUNCTIONS = ("rate", "irate", "increase", "resets")

TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?"
)


def _blank_strings(expr: str) -> str:
    """`expr` with every string literal (label values, regexes) emptied, so
    nothing inside one is read as a name, a brace or a bracket."""
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)


def _strip_non_names(expr: str) -> str:
    """`expr` without what holds label names, durations or Grafana
    variables: label matchers, ranges and subqueries, grouping clauses,
    offsets and @ modifiers."""
    s = _blank_strings(expr)
    if "__name__" in s:
        raise ValueError(f"a metric named through __name__ cannot be checked: {expr}")
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b(?:group_left|group_right)\b", " ", s)
    s = re.sub(r"\boffset\s+-?(?:\$\{?\w+\}?|\w+)", " ", s)
    s = re.sub(r"@\s*(?:start\(\s*\)|end\(\s*\)|[\d.]+)", " ", s)
    return re.sub(r"\$\{?\w+\}?", " ", s)


def metric_names(expr: str) -> set:
    """The series names a PromQL expression reads."""
    names = set()
    for m in TOKEN.finditer(_strip_non_names(expr)):
        name = m.group("name")
        if name is None or m.group("call") or name in KEYWORDS:
            continue
        names.add(name)
    return names


def _calls(expr: str, function: str) -> list:
    """The argument text of every call of `function` in `expr`."""
    s = _blank_strings(expr)
    out = []
    for m in re.finditer(rf"\b{function}\s*\(", s):
        depth, start = 1, m.end()
        for i in range(start, len(s)):
            depth += {"(": 1, ")": -1}.get(s[i], 0)
            if depth == 0:
                out.append(s[start:i])
                break
        else:
            raise ValueError(f"unbalanced parentheses in {expr}")
    return out


def _outside_calls(expr: str, functions) -> str:
    """`expr` with the arguments of every call of `functions` removed."""
    s = _blank_strings(expr)
    for f in functions:
        for arg in _calls(s, f):
            s = s.replace(arg, " ", 1)
    return s


# --- what the files ask for --------------------------------------------------


def dashboard_queries(dashboard: dict) -> list:
    """(where, PromQL) for every panel target and query variable."""
    queries = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            queries.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        # label_values(series, label): only its first argument is PromQL.
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        queries.append((f"variable {v['name']}", m.group(1) if m else q))
    return queries


def rule_queries(rules: dict):
    """(where, PromQL) for every rule, and the names recording rules define."""
    queries, recorded = [], set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule["alert"]
            queries.append((f"rule {name}", rule["expr"]))
            if "record" in rule:
                recorded.add(rule["record"])
    return queries, recorded


# --- what the node exports ---------------------------------------------------


def exported_types(text: str) -> dict:
    """Sample name -> its family's type (counter, gauge, histogram...), from
    a Prometheus text exposition. A histogram's samples are its _bucket,
    _sum and _count series; its family name itself is no series."""
    types = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            types[sample.name] = family.type
    return types


def problems(queries, types: dict, defined=frozenset()) -> list:
    """Every name the queries use that the node does not export, and every
    exported name read the wrong way for its type."""
    found = []
    for where, expr in queries:
        for name in sorted(metric_names(expr) - FROM_PROMETHEUS - set(defined)):
            if name not in types:
                found.append(f"{where}: {name} is not exported")
        in_counter_calls = set()
        for f in COUNTER_FUNCTIONS:
            for arg in _calls(expr, f):
                in_counter_calls |= metric_names(arg)
        for name in sorted(in_counter_calls & types.keys()):
            if types[name] not in ("counter", "histogram", "summary"):
                found.append(f"{where}: {name} is a {types[name]}, not a counter: no rate() of it")
        outside = metric_names(_outside_calls(expr, COUNTER_FUNCTIONS))
        for name in sorted(outside & types.keys()):
            if types[name] in ("counter", "histogram", "summary"):
                found.append(f"{where}: {name} only ever grows: read it through rate() or increase()")
        for arg in _calls(expr, "histogram_quantile"):
            for clause in re.findall(r"\b(by|without)\s*\(([^)]*)\)", arg):
                labels = {label.strip() for label in clause[1].split(",")}
                if (clause[0] == "by") != ("le" in labels):
                    found.append(f"{where}: histogram_quantile needs the le label kept")
            if not any(n.endswith("_bucket") for n in metric_names(arg)):
                found.append(f"{where}: histogram_quantile of no _bucket series")
    return found


# --- a live node -------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(server) -> dict:
    """The node's /metrics after it served reads, a miss and a hit of each
    object, an error, and a Flight SQL statement."""
    client = fl.connect(f"grpc://127.0.0.1:{server.port}")
    for path in ("tpch/region/part-0.parquet", "tpch/nation/part-0.parquet"):
        ticket = fl.Ticket(json.dumps({"source": "local", "path": path}))
        for _ in range(2):
            assert client.do_get(ticket).read_all().num_rows > 0
    with pytest.raises(pa.ArrowKeyError):
        client.do_get(fl.Ticket(json.dumps({"source": "local", "path": "tpch/missing.parquet"}))).read_all()
    with flight_sql.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM tpch.region")
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 5}]
    url = f"http://127.0.0.1:{server.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        return exported_types(r.read().decode())


def test_the_node_exports_what_the_files_read(exported):
    """The premise: the scrape is a real node's, with its lazily created
    series in it and the series the SQL statement moved."""
    assert exported["quiver_scans_total"] == "counter"
    assert exported["quiver_scan_seconds_bucket"] == "histogram"
    assert exported["quiver_errors_total"] == "counter"
    assert "quiver_scan_seconds" not in exported


def test_dashboard_names_only_exported_metrics(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    found = problems(dashboard_queries(dashboard), exported)
    assert not found, "\n".join(found)


def test_rules_name_only_exported_metrics(exported):
    queries, recorded = rule_queries(yaml.safe_load(RULES.read_text()))
    assert not recorded & exported.keys(), "a recording rule shadows an exported metric"
    found = problems(queries, exported, defined=recorded)
    assert not found, "\n".join(found)


def test_a_misspelled_or_misread_metric_is_caught(exported):
    """The check itself can fail: the real dashboard and rules with one
    name misspelled, a gauge put through rate(), a counter shown raw, or a
    histogram's family name instead of its _bucket series."""
    text = DASHBOARD.read_text()
    assert "quiver_queued_scans{" in text
    misspelled = json.loads(text.replace("quiver_queued_scans{", "quiver_queued_scan{"))
    found = problems(dashboard_queries(misspelled), exported)
    assert any("quiver_queued_scan is not exported" in f for f in found), found

    rules = RULES.read_text()
    assert "quiver_cache_disk_healthy ==" in rules
    queries, recorded = rule_queries(yaml.safe_load(
        rules.replace("quiver_cache_disk_healthy ==", "quiver_cache_disk_health ==")))
    found = problems(queries, exported, defined=recorded)
    assert found == ["rule QuiverDiskDegraded: quiver_cache_disk_health is not exported"], found

    wrong = [
        ("gauge rate", 'rate(quiver_active_scans{instance=~"$instance"}[$__rate_interval])'),
        ("raw counter", "quiver_origin_bytes_total"),
        ("family name", "histogram_quantile(0.9, sum by (le) (rate(quiver_scan_seconds[5m])))"),
        ("le dropped", "histogram_quantile(0.9, sum by (instance) (rate(quiver_scan_seconds_bucket[5m])))"),
    ]
    found = problems(wrong, exported)
    assert found == [
        "gauge rate: quiver_active_scans is a gauge, not a counter: no rate() of it",
        "raw counter: quiver_origin_bytes_total only ever grows: read it through rate() or increase()",
        "family name: quiver_scan_seconds is not exported",
        "family name: histogram_quantile of no _bucket series",
        "le dropped: histogram_quantile needs the le label kept",
    ], found


@pytest.mark.parametrize("expr,names", [
    ('sum by (instance, tier) (rate(quiver_cache_hits_total{instance=~"$instance", tier="memory"}[$__rate_interval]))'
     ' / on (instance) group_left () (sum by (instance) (rate(quiver_cache_misses_total[5m])))',
     {"quiver_cache_hits_total", "quiver_cache_misses_total"}),
    ('histogram_quantile(0.99, sum by (le) (rate(quiver_scan_seconds_bucket{job="a:b"}[5m:1m])))',
     {"quiver_scan_seconds_bucket"}),
    ("x:ratio:rate10m < 0.5 * (x:ratio:rate10m offset 1h) and lookups > 1e3 unless on () absent(y)",
     {"x:ratio:rate10m", "lookups", "y"}),
    ('sum without (tier) (increase(a_total[$__range])) > bool 0x1F or label_replace(b, "dst", "$1", "src", "(.*)")',
     {"a_total", "b"}),
    ('count(up{job="quiver"} == 0) by (job) + ignoring(code) c @ end() - d offset -5m', {"up", "c", "d"}),
])
def test_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def test_dashboard_imports_into_grafana():
    """What Grafana needs to import the file and what the operator needs to
    use it: a data source variable every panel uses, a node variable every
    query filters on, unique panel ids, and a grid without overlaps."""
    d = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    assert variables["instance"]["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert 'instance=~"$instance"' in t["expr"], f"{p['title']}: {t['expr']}"
            if re.search(r"\b(?:rate|irate|increase)\(", t["expr"]):
                assert "[$__rate_interval]" in t["expr"], f"{p['title']}: {t['expr']}"


def test_dashboard_and_rules_cover_what_operators_watch():
    """The panels and alerts docs/operations.md promises."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(q) for _, q in dashboard_queries(dashboard)))
    for name in ("quiver_cache_hits_total", "quiver_cache_misses_total", "quiver_hot_hits_total",
                 "quiver_origin_bytes_total", "quiver_origin_requests_total",
                 "quiver_scan_seconds_bucket", "quiver_origin_request_seconds_bucket",
                 "quiver_sql_statement_seconds_bucket", "quiver_active_scans", "quiver_queued_scans",
                 "quiver_handoff_objects_done", "quiver_handoff_state", "quiver_origin_circuit_open",
                 "quiver_cache_disk_healthy", "quiver_sql_statements_total"):
        assert name in used, name
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for name in ("QuiverNodeDown", "QuiverOriginCircuitOpen", "QuiverDiskDegraded",
                 "QuiverHitRatioCollapse", "QuiverScanQueueSaturated"):
        assert name in alerts, name
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
