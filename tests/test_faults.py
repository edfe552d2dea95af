"""Faults: a killed batch run, a killed gunicorn worker, a corrupt region layer at start-up.

The streaming engine's interrupted runs (SIGTERM, SIGINT, SIGKILL) are tested in
``tests/test_batch.py::test_interrupted_run_leaves_previous_output``; here the same guarantee is
checked for the in-memory engine, whose output is written in one go at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import requests
from conftest import ROOT
from test_gunicorn import gunicorn

from gridmap.app import create_app
from gridmap.config import Settings
from gridmap.errors import RegionLayerError

pytestmark = [pytest.mark.slow]


# ---- the batch scorer killed mid-run -------------------------------------------------------------


@pytest.fixture(scope="module")
def sites_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "sites.csv"
    n = 60_000
    rng = np.random.default_rng(11)
    pd.DataFrame({"site_id": [f"s{i}" for i in range(n)], "lon": rng.uniform(-125, -67, n).round(4),
                  "lat": rng.uniform(25, 49, n).round(4), "it_load_mw": 100}).to_csv(path, index=False)  # fmt: skip
    return path


def wait_for_partial(folder: Path, proc: subprocess.Popen, name: str) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        for p in folder.glob(f".{name}.*.partial"):
            if p.stat().st_size > 100_000:  # the writer is well into the file
                return p
        time.sleep(0.01)
    raise AssertionError("the run never started writing its output")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_memory_engine_killed_while_writing_leaves_previous_output(sites_csv, tmp_path, sig):
    out = tmp_path / "scored.geojson"  # GeoJSON: the slowest writer, so the kill lands mid-file
    out.write_text("previous output")
    (tmp_path / "scored.errors.csv").write_text("previous errors\n")
    cmd = [sys.executable, "-m", "gridmap.cli", "score", str(sites_csv), "-o", str(out), "--engine", "memory", "-q"]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            partial = wait_for_partial(tmp_path, proc, out.name)
            proc.send_signal(sig)
            proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode != 0
    assert out.read_text() == "previous output"
    assert (tmp_path / "scored.errors.csv").read_text() == "previous errors\n"
    if sig == signal.SIGTERM:  # cleaned up on the way out
        assert not partial.exists() and sorted(os.listdir(tmp_path)) == ["scored.errors.csv", "scored.geojson"]
    else:  # a killed process cannot clean up, but its temporary file never takes the target's name
        assert {p.name for p in tmp_path.iterdir()} - {partial.name} == {"scored.errors.csv", "scored.geojson"}


# ---- a gunicorn worker killed under load -------------------------------------------------------


class Traffic:
    """Clients that keep sending GET and POST requests until stopped; they count what happened."""

    def __init__(self, url: str, clients: int = 4):
        self.url, self.stop = url, threading.Event()
        self.ok, self.failed, self.lock = 0, [], threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(clients)]

    def run(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if n % 3:
                    r = requests.get(self.url + "/api/v1/score", params={"lon": -120 + (n % 50), "lat": 38,
                                     "it_load_mw": 100}, timeout=30)  # fmt: skip
                else:
                    body = "site_id,lon,lat,it_load_mw\n" + "".join(f"s{k},{-100 + k},35,50\n" for k in range(20))
                    r = requests.post(self.url + "/api/v1/score", data=body, headers={"Content-Type": "text/csv"},
                                      timeout=30)  # fmt: skip
                outcome = None if r.status_code == 200 else f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self.lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failed.append((time.monotonic(), outcome))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children()


def wait_for_workers(proc: subprocess.Popen, count: int, *, not_in: set[int], timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {w.pid for w in workers_of(proc) if w.is_running() and w.status() != psutil.STATUS_ZOMBIE}
        if len(pids) == count and not (pids & not_in):
            return pids
        time.sleep(0.1)
    raise AssertionError(f"the master did not restore {count} workers")


def test_killing_a_worker_loses_at_most_its_request_in_flight():
    with gunicorn(workers=2) as (url, proc):
        before = wait_for_workers(proc, 2, not_in=set())
        with Traffic(url) as traffic:
            time.sleep(2.0)
            ok_before = traffic.ok
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGKILL)
            after = wait_for_workers(proc, 2, not_in={victim})
            time.sleep(3.0)  # the new worker serves too
        print(f"worker killed: {traffic.ok} requests answered, lost: {traffic.failed}")
        assert ok_before > 10, "the traffic never got going"
        # a sync worker holds one request at a time: only that one may be lost
        assert len(traffic.failed) <= 1, traffic.failed
        assert traffic.ok > ok_before + 10
        assert len(after & before) == 1 and proc.poll() is None
        new_worker = (after - before).pop()
        assert psutil.Process(new_worker).ppid() == proc.pid
        # every worker answers afterwards
        answers = [requests.get(url + "/api/v1/meta", timeout=10).status_code for _ in range(20)]
        assert answers == [200] * 20


# ---- a corrupt region layer at start-up -------------------------------------------------------


@pytest.fixture
def corrupt_layer(tmp_path) -> Path:
    path = tmp_path / "corrupt.gpkg"
    path.write_bytes(b"this is not a GeoPackage " * 200)
    return path


MESSAGE = "cannot read region layer"


def test_create_app_raises_naming_the_file(corrupt_layer):
    with pytest.raises(RegionLayerError, match=MESSAGE) as caught:
        create_app(Settings(regions_path=corrupt_layer, display_regions_path=None))
    assert str(corrupt_layer) in str(caught.value)


def test_gunicorn_with_a_corrupt_layer_exits_at_once_with_the_message(corrupt_layer):
    env = os.environ | {"GRIDMAP_REGIONS_PATH": str(corrupt_layer), "GRIDMAP_DISPLAY_REGIONS_PATH": ""}
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "2", "-b", "127.0.0.1:0", "wsgi:app"]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 60  # bounded by the timeout above; it takes ~2 s here
    last = done.stderr.strip().splitlines()[-1]
    assert "RegionLayerError" in last and MESSAGE in last and str(corrupt_layer) in last


@pytest.mark.parametrize("where", ["command", "group"])
def test_cli_with_a_corrupt_layer_exits_2_with_the_message(corrupt_layer, tmp_path, where):
    sites = tmp_path / "sites.csv"
    sites.write_text("lon,lat,it_load_mw\n-99,31,1\n")
    score = ["score", str(sites), "-o", str(tmp_path / "out.csv")]
    args = (
        [*score, "--regions", str(corrupt_layer)] if where == "command" else ["--regions", str(corrupt_layer), *score]
    )
    done = subprocess.run([sys.executable, "-m", "gridmap.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("Error: ") and MESSAGE in done.stderr and str(corrupt_layer) in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.csv").exists()
