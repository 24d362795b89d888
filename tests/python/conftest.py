"""Starts the built quiver-server binary as a separate process for the tests.

The binary comes from QUIVER_SERVER_BIN (infra/test.sh builds it). Each server
gets free loopback ports, its own data and cache directories, and is stopped
with SIGTERM so that graceful shutdown is exercised too.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, *extra: str, port: int | None = None):
        """`port`: the Flight port, when a topology must name it first."""
        self.binary = os.environ.get("QUIVER_SERVER_BIN", "target/debug/quiver-server")
        self.port = port or free_port()
        self.admin_port = free_port()
        self.data_dir = tmp / "data"
        self.cache_dir = tmp / "cache"
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--listen", f"127.0.0.1:{self.port}",
                "--admin-listen", f"127.0.0.1:{self.admin_port}",
                "--data-dir", str(self.data_dir),
                "--cache-disk-dir", str(self.cache_dir),
                "--cache-disk", "256MiB",
                "--cache-memory", "128MiB",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"quiver-server exited with {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"quiver-server was not ready in {timeout}s: {self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("quiver"))
    yield s
    assert s.stop() == 0, s.logs()


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(*extra):
        s = Server(tmp_path / f"s{len(started)}", *extra)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


# --- an S3 server (the testkit's s3s-fs, which checks SigV4) -------------------

S3_ACCESS_KEY = "quiver-test-key"
S3_SECRET_KEY = "quiver-test-secret-0123456789"


def s3_binary() -> str:
    if "QUIVER_TEST_S3_BIN" in os.environ:
        return os.environ["QUIVER_TEST_S3_BIN"]
    server = Path(os.environ.get("QUIVER_SERVER_BIN", "target/debug/quiver-server"))
    return str(server.parent / "quiver-test-s3")


@contextmanager
def s3_serving(root: Path, bucket: str = "lake"):
    """Serves `root/<bucket>` as S3 bucket `bucket`; yields the `[[source]]`
    TOML of a source `lake` reading it with the test's keys."""
    s3 = subprocess.Popen([s3_binary(), str(root), bucket], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = s3.stdout.readline().strip()
        assert endpoint.startswith("http://"), endpoint
        yield f"""
[[source]]
name = "lake"
url = "s3://{bucket}/"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "{S3_ACCESS_KEY}"
secret_access_key = "{S3_SECRET_KEY}"
"""
    finally:
        s3.kill()
        s3.wait()
