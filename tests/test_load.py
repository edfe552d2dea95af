"""Load: 50 concurrent clients of mixed GET/POST traffic for 60 s against gunicorn on loopback.

wrk (``/usr/bin/wrk``) drives ``benchmarks/load_mix.lua``: GET /api/v1/score, GET
/api/v1/regions/<id> and POST /api/v1/score with five sites. The run is bounded in time (60 s)
and so in count. It must end with 0 errors: no non-2xx response and no socket error; gunicorn's
access log confirms every kind of request was served, all with status 200. The latency figures
are printed (``pytest -rP``), never asserted: the machine is shared.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections import Counter

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECONDS = 60
CONNECTIONS = 50


def bench_load():
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "benchmarks" / "bench_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk; .ci/run does)")
def test_fifty_clients_of_mixed_traffic_for_a_minute_have_no_errors(tmp_path):
    bench = bench_load()
    log = tmp_path / "access.log"
    with bench.gunicorn(2, access_log=log) as (url, proc):
        figures = bench.run_wrk(url, connections=CONNECTIONS, seconds=SECONDS, script=bench.MIX_SCRIPT)
        assert proc.poll() is None
    latency = ", ".join(f"{k[:3]} {figures[k]:.1f} ms" for k in ("p50_ms", "p90_ms", "p99_ms"))
    rate = f"{figures['requests']} requests, {figures['rps']:.1f} req/s"
    print(f"\nload: {CONNECTIONS} clients, {SECONDS} s, {rate}, {latency}")
    assert figures["non2xx"] == 0 and figures["socket_errors"] == 0, figures["report"]
    assert figures["requests"] >= 200, figures["report"]  # it really ran (~1,900 on the shared 2-core machine)
    lines = [line for line in log.read_text().splitlines() if "/api/v1/meta" not in line]
    kinds = Counter(re.search(r'"(GET|POST) (/api/v1/\w+)', line).groups() for line in lines)
    statuses = Counter(re.search(r'HTTP/1\.[01]" (\d{3})', line).group(1) for line in lines)
    assert set(kinds) == {("GET", "/api/v1/score"), ("GET", "/api/v1/regions"), ("POST", "/api/v1/score")}, kinds
    assert statuses == {"200": len(lines)}, statuses
    # wrk counts the requests it completed; the server may also have answered ones wrk cut off at the end
    assert len(lines) >= figures["requests"]
