"""The production server: gunicorn (2 sync workers, preloaded app) on 127.0.0.1, over real HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.server, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(workers: int = 2, timeout: float = 90.0):
    """Start ``gunicorn -c gunicorn.conf.py wsgi:app`` on a free loopback port; yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", str(workers),
           "-b", f"127.0.0.1:{port}", "wsgi:app"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | {"GRIDMAP_ACCESS_LOG": ""}, stdout=log, stderr=log)
        try:
            wait_until_up(proc, url, timeout, log)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_up(proc: subprocess.Popen, url: str, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited: {log.read().decode(errors='replace')}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url + "/api/v1/meta", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


@pytest.fixture(scope="module")
def server():
    with gunicorn() as started:
        yield started


def test_gunicorn_runs_two_sync_worker_processes(server):
    _, proc = server
    # the master forks the workers one after the other; the first may answer before the second exists
    deadline = time.monotonic() + 30
    while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2, [w.cmdline() for w in workers]
    assert all(w.ppid() == proc.pid for w in workers)


def test_endpoints_over_http(server):
    url, _ = server
    score = requests.get(url + "/api/v1/score", params={"lon": -77.5, "lat": 39.0, "it_load_mw": 300}, timeout=10)
    assert score.status_code == 200 and score.headers["Content-Type"] == "application/geo+json"
    assert score.json()["properties"]["region_id"] == "VA"
    assert score.headers["X-Gridmap-Data-Year"] == "2023" and score.headers["X-Gridmap-Method"]
    csv = "site_id,lon,lat,it_load_mw\na,-99,31,100\nb,-77.5,39,50\nc,-99,31,-1\n"
    post = requests.post(url + "/api/v1/score?format=csv", data=csv, headers={"Content-Type": "text/csv"}, timeout=10)
    assert post.status_code == 200 and post.headers["X-Gridmap-Row-Errors"] == "1"
    assert len(post.text.splitlines()) == 3
    missing = requests.get(url + "/api/v1/regions/XX", timeout=10)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/problem+json"
    assert missing.headers["X-Gridmap-Layer"] == score.headers["X-Gridmap-Layer"]
    items = requests.get(url + "/ogc/collections/sites/items?limit=5", timeout=10).json()
    assert items["numberReturned"] == 5 and items["links"][1]["href"].startswith(url)


def test_concurrent_clients_are_all_answered(server):
    url, _ = server
    params = [{"lon": -120 + i * 0.5, "lat": 38.0, "it_load_mw": 100} for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: requests.get(url + "/api/v1/score", params=p, timeout=30), params))
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["properties"]["region_id"] for a in answers} >= {"CA", "NV", "UT", "CO"}
