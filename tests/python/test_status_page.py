"""The admin status page in a real browser.

Two quiver-server processes form a cluster with reader and admin tokens;
reads through their owners make the hit ratios and the hottest objects
non-trivial and one bad read leaves an error behind. Headless Chromium
(Debian's chromium and chromium-driver, installed by
infra/install-browser.sh) driven by Selenium opens each node's page, is
refused with a wrong token, logs in with the admin token, and the test
checks the rendered DOM against /status.json and /metrics. A screenshot of
each page goes to $QUIVER_TEST_OUTPUT (else the test's tmp_path); its path
is printed.
"""

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.flight as fl
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Server

CHROMIUM = os.environ.get("QUIVER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("QUIVER_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"

READER_TOKEN = "reader-token-7f3a"
ADMIN_TOKEN = "admin-token-91c2"
NODES = ("alpha-node", "beta-node")
HALF = 8192
TABLES = ("lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region")
# A path that is also markup: the page must show it as text.
HOSTILE = "tpch/<img src=x id=injected>.parquet"
WAIT = 30


def http(url, token=None):
    """(status, headers, body) of a GET, without raising on 4xx."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def status_json(server):
    code, _, body = http(f"http://127.0.0.1:{server.admin_port}/status.json", ADMIN_TOKEN)
    assert code == 200, body
    return json.loads(body)


def metric(text, name, labels=""):
    """The value of one sample of the Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name + labels)} (\S+)$", re.MULTILINE)
    found = pattern.search(text)
    assert found, f"{name}{labels} missing from /metrics"
    return int(float(found.group(1)))


def expected_ratios(server):
    """Each tier's (hits, lookups) as /metrics counts them."""
    _, _, text = http(f"http://127.0.0.1:{server.admin_port}/metrics")
    memory = metric(text, "quiver_cache_hits_total", '{tier="memory"}')
    disk = metric(text, "quiver_cache_hits_total", '{tier="disk"}')
    misses = metric(text, "quiver_cache_misses_total")
    hot_hits = metric(text, "quiver_hot_hits_total")
    hot_misses = metric(text, "quiver_hot_misses_total")
    hot_partial = metric(text, "quiver_hot_partial_hits_total")
    return {
        "memory": (memory, memory + disk + misses),
        "disk": (disk, disk + misses),
        "chunks": (memory + disk, memory + disk + misses),
        "hot": (hot_hits, hot_hits + hot_partial + hot_misses),
    }


@pytest.fixture
def cluster(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{READER_TOKEN}\n")
    admin = tmp_path / "admin-token"
    admin.write_text(f"{ADMIN_TOKEN}\n")
    topology = tmp_path / "topology.json"
    common = ("--topology", str(topology), "--topology-reload", "300ms",
              "--tokens-file", str(tokens), "--admin-token-file", str(admin))
    started = []
    try:
        first = Server(tmp_path / "a", "--node-id", NODES[0], *common)
        started.append(first)
        # Both nodes serve the sample the first one wrote, as source `local`.
        data = first.data_dir.resolve().as_uri() + "/"
        started.append(Server(tmp_path / "b", "--node-id", NODES[1], "--source", f"local={data}", *common))
        topology.write_text(json.dumps({
            "epoch": 1,
            "replication": 1,
            "nodes": [{"id": n, "url": f"grpc://127.0.0.1:{s.port}"} for n, s in zip(NODES, started)],
            "slots": [
                {"start": 0, "end": HALF - 1, "owners": [NODES[0]]},
                {"start": HALF, "end": 16383, "owners": [NODES[1]]},
            ],
        }))
        deadline = time.time() + WAIT
        while not all(status_json(s)["cluster"]["epoch"] == 1 for s in started):
            assert time.time() < deadline, "the nodes did not adopt the topology"
            time.sleep(0.2)
        yield started
    finally:
        for s in started:
            s.stop()


def read_everything(servers):
    """Reads each table through its owner: whole, then one column twice
    (the hot tier answers the repeat), then another column (decoded from
    cached chunks), so every tier has both hits and misses; returns the
    objects each node served."""
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {READER_TOKEN}".encode())])
    by_port = {s.port: s for s in servers}
    served = {s.port: set() for s in servers}
    planner = fl.connect(f"grpc://127.0.0.1:{servers[0].port}")
    for table in TABLES:
        info = planner.get_flight_info(
            fl.FlightDescriptor.for_command(json.dumps({"source": "local", "path": f"tpch/{table}/"})),
            options,
        )
        for endpoint in info.endpoints:
            uri = endpoint.locations[0].uri.decode()
            port = int(uri.rsplit(":", 1)[1])
            owner = fl.connect(uri)
            ticket = json.loads(endpoint.ticket.ticket)
            first_column = info.schema.names[:1]
            for columns in (None, first_column, first_column, info.schema.names[1:2]):
                request = dict(ticket, columns=columns) if columns else ticket
                table_read = owner.do_get(fl.Ticket(json.dumps(request)), options).read_all()
                assert table_read.num_rows > 0
            served[port].add(f"local/{ticket['path']}")
            assert port in by_port
    return served


def make_error(server):
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {READER_TOKEN}".encode())])
    client = fl.connect(f"grpc://127.0.0.1:{server.port}")
    # pyarrow raises NotFound as a KeyError, not a FlightError.
    with pytest.raises(KeyError, match="does not exist"):
        client.do_get(fl.Ticket(json.dumps({"source": "local", "path": HOSTILE})), options).read_all()


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run infra/install-browser.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,2400",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def output_dir(tmp_path) -> Path:
    out = Path(os.environ.get("QUIVER_TEST_OUTPUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def visible(driver, element_id):
    return driver.find_element(By.ID, element_id).is_displayed()


def log_in(driver, token):
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-submit").click()


def shows_no_data(driver):
    assert not visible(driver, "content")
    assert driver.find_element(By.ID, "node-id").text == ""
    assert driver.find_elements(By.CSS_SELECTOR, "#cluster-nodes tbody tr") == []
    assert driver.find_elements(By.CSS_SELECTOR, "#tiers tbody tr") == []
    body = driver.find_element(By.TAG_NAME, "body").text
    assert not any(n in body for n in NODES), body


def test_status_page_in_a_browser(cluster, browser, tmp_path):
    first, second = cluster
    served = read_everything(cluster)
    assert all(served.values()), f"each node should serve reads: {served}"
    make_error(first)

    # The data needs the admin token; the page's own files are open and
    # hold none of it.
    base = f"http://127.0.0.1:{first.admin_port}"
    assert http(f"{base}/status.json")[0] == 401
    assert http(f"{base}/status.json", "wrong")[0] == 401
    assert http(f"{base}/status.json", READER_TOKEN)[0] == 403
    code, headers, html = http(f"{base}/")
    assert code == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert not any(n in html for n in NODES)
    for path in ("/metrics", "/health", "/ready"):
        assert http(f"{base}{path}")[0] == 200

    for server in cluster:
        url = f"http://127.0.0.1:{server.admin_port}/"
        browser.get(url)
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda d: visible(d, "login"))
        shows_no_data(browser)

        # A wrong token: an error, and still no data.
        log_in(browser, "not-the-token")
        wait.until(lambda d: "refused" in d.find_element(By.ID, "login-error").text)
        shows_no_data(browser)
        # A reader token is not the admin token.
        log_in(browser, READER_TOKEN)
        wait.until(lambda d: "admin token" in d.find_element(By.ID, "login-error").text)
        shows_no_data(browser)

        log_in(browser, ADMIN_TOKEN)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cluster-nodes tbody tr")) == 2)
        # Both nodes' health comes in with the same refresh; wait for
        # every node to be seen as ok by this one.
        wait.until(lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#cluster-nodes td.state-ok")]
                   == ["ok", "ok"])
        snapshot = status_json(server)
        me = snapshot["node"]["id"]
        assert browser.find_element(By.ID, "node-id").text == me

        rows = {r.get_attribute("data-node"): r for r in
                browser.find_elements(By.CSS_SELECTOR, "#cluster-nodes tbody tr")}
        assert set(rows) == set(NODES)
        assert rows[NODES[0]].find_element(By.CSS_SELECTOR, "td.primary").text == f"0\u2013{HALF - 1}"
        assert rows[NODES[1]].find_element(By.CSS_SELECTOR, "td.primary").text == f"{HALF}\u201316383"
        assert f"{me} (this node)" in rows[me].text
        assert [n["health"]["state"] for n in snapshot["cluster"]["nodes"]] == ["ok", "ok"]

        # Hit ratios: /metrics counts, /status.json's ratio and the page's
        # figure all agree; nothing reads meanwhile, so they hold still.
        want = expected_ratios(server)
        for tier, (hits, lookups) in want.items():
            json_tier = snapshot["tiers"][tier]
            assert (json_tier["hits"], json_tier["lookups"]) == (hits, lookups), tier
            ratio = hits / lookups if lookups else None
            assert json_tier["hit_ratio"] == ratio, tier
            row = browser.find_element(By.CSS_SELECTOR, f"#tiers tbody tr[data-tier='{tier}']")
            cells = row.find_elements(By.TAG_NAME, "td")
            assert (cells[4].text, cells[5].text) == (str(hits), str(lookups)), tier
            shown = row.find_element(By.CSS_SELECTOR, "td.ratio")
            if ratio is None:
                assert shown.text == "\u2013"
            else:
                assert float(shown.get_attribute("data-ratio")) == ratio, tier
                assert abs(float(shown.text.rstrip("%")) - 100 * ratio) <= 0.05 + 1e-9, (tier, shown.text)
        # The reads made the chunk ratio non-trivial: misses, then hits.
        assert 0 < want["chunks"][0] < want["chunks"][1], want
        assert 0 < want["hot"][0] < want["hot"][1], want

        # The hottest objects are the ones this node served.
        hot = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#hot-objects td.object")]
        assert set(hot) == served[server.port], hot
        assert [o["object"] for o in snapshot["hot_objects"]["top"]] == hot

        if server is first:
            # The failed read is listed, its markup shown as text.
            errors = browser.find_elements(By.CSS_SELECTOR, "#errors tbody tr")
            assert errors, "no recent errors shown"
            cells = errors[0].find_elements(By.TAG_NAME, "td")
            assert cells[2].text == snapshot["errors"][0]["code"]
            assert cells[1].text == snapshot["errors"][0]["request_id"] != ""
            assert "<img src=x id=injected>" in cells[3].text
            assert browser.find_elements(By.ID, "injected") == []

        shot = output_dir(tmp_path) / f"status-page-{me}.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 0
        print(f"status page screenshot: {shot}")
