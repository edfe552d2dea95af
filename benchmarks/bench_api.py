"""API speed on loopback: GET /score latency and throughput (wrk), POST /score with 10,000 sites.

Usage: ``python benchmarks/bench_api.py [--workers 2] [--seconds 8]``

Starts ``gunicorn -c gunicorn.conf.py`` (sync workers, preloaded) on 127.0.0.1 and measures, in
the same run, against named baselines:

* GET /api/v1/score (single-site fast path) vs GET /api/v1/meta (the server floor: gunicorn +
  Flask + a small JSON body) vs POST /api/v1/score with the same one site (the score_sites core
  path), with 1 client (median latency) and with 50 concurrent clients (req/s, p50, p99);
* the gunicorn workers' CPU time per request during the 50-client run (what limits throughput);
* POST /api/v1/score with 10,000 sites (JSON list, GeoJSON, CSV) vs the same work in-process
  (parse + score_sites + serialise, no HTTP).

Targets (issue 3): GET /score median < 10 ms with one client, >= 500 req/s with 50 clients;
POST of 10,000 sites < 1 s. Numbers on a shared 2-core machine are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
SITE = {"lon": -99.0, "lat": 31.0, "it_load_mw": 100}
GET_SCORE = "/api/v1/score?lon=-99&lat=31&it_load_mw=100"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(workers: int):
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", str(workers),
           "-b", f"127.0.0.1:{port}", "--backlog", "2048", "wsgi:app"]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | {"GRIDMAP_ACCESS_LOG": ""}, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(url + "/api/v1/meta", timeout=5).ok:
                        break
                time.sleep(0.1)
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def wrk(url: str, *, connections: int, seconds: int, script: str | None = None) -> dict:
    """Run wrk; return req/s and latency percentiles in ms."""
    threads = min(2, connections)
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", script] if script else []
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    pct = {int(p): _ms(v, u) for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": pct.get(50), "p90": pct.get(90), "p99": pct.get(99),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}  # fmt: skip


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def post_script(body: str, content_type: str) -> str:
    path = Path(tempfile.mkstemp(suffix=".lua")[1])
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "{content_type}"\n'
    )
    return str(path)


def worker_cpu(proc: subprocess.Popen) -> float:
    return sum(sum(c.cpu_times()[:2]) for c in psutil.Process(proc.pid).children())


def latency_and_throughput(url: str, proc, seconds: int) -> None:
    one_site = post_script(json.dumps([SITE]), "application/json")
    cases = [("GET /score (fast path)", url + GET_SCORE, None),
             ("GET /meta (server floor)", url + "/api/v1/meta", None),
             ("POST /score, 1 site (core path)", url + "/api/v1/score", one_site)]  # fmt: skip
    print(f"\n{'case':34} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}  errors")
    results = {}
    for name, target, script in cases:
        for clients in (1, 50):
            cpu0, n0 = worker_cpu(proc), time.perf_counter()
            r = wrk(target, connections=clients, seconds=seconds, script=script)
            cpu = worker_cpu(proc) - cpu0
            r["cpu_ms_per_req"] = 1000 * cpu / max(1.0, r["rps"] * (time.perf_counter() - n0))
            results[(name, clients)] = r
            print(
                f"{name:34} {clients:>7} {r['rps']:>8.0f} {r['p50']:>7.2f} {r['p90']:>7.2f} {r['p99']:>7.2f}  "
                f"{r['non2xx']} {r['socket_errors']}  (worker CPU {r['cpu_ms_per_req']:.2f} ms/req)"
            )
    fast, floor, core = (results[(n, 1)]["p50"] for n, _, _ in cases)
    print(
        f"\n1 client median: GET /score {fast:.2f} ms (target < 10); core path {core:.2f} ms "
        f"= {core / fast:.1f}x slower; server floor {floor:.2f} ms"
    )
    r50 = results[(cases[0][0], 50)]
    print(
        f"50 clients: GET /score {r50['rps']:.0f} req/s (target >= 500), "
        f"p50 {r50['p50']:.1f} ms, p99 {r50['p99']:.1f} ms; "
        f"worker CPU {r50['cpu_ms_per_req']:.2f} ms/req, so 2 cores cap at ~{2000 / r50['cpu_ms_per_req']:.0f} req/s "
        f"before wrk's own CPU; Little's law 50 / rps = {1000 * 50 / r50['rps']:.0f} ms"
    )


def sites_10k(n: int = 10_000) -> list[dict]:
    rng = np.random.default_rng(7)
    return [{"site_id": f"s{i}", "lon": round(float(x), 5), "lat": round(float(y), 5), "it_load_mw": round(float(m), 1)}
            for i, (x, y, m) in enumerate(zip(rng.uniform(-124, -67, n), rng.uniform(25, 49, n),
                                              rng.uniform(5, 500, n), strict=True))]  # fmt: skip


def post_10k(url: str, repeats: int) -> None:
    sites = sites_10k()
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [s["lon"], s["lat"]]},
         "properties": {"site_id": s["site_id"], "it_load_mw": s["it_load_mw"]}} for s in sites]}  # fmt: skip
    csv = "site_id,lon,lat,it_load_mw\n" + "".join(
        f"{s['site_id']},{s['lon']},{s['lat']},{s['it_load_mw']}\n" for s in sites
    )
    bodies = {"JSON list": (json.dumps(sites), "application/json"),
              "GeoJSON": (json.dumps(fc), "application/geo+json"), "CSV": (csv, "text/csv")}  # fmt: skip
    session = requests.Session()
    print(
        f"\nPOST /api/v1/score with {len(sites)} sites, median of {repeats} (answer as GeoJSON; CSV body also as CSV)"
    )
    base = in_process(sites, repeats)
    print(f"  baseline in-process parse_records + score_sites + serialise: {base * 1000:.0f} ms")
    for name, (body, ctype) in bodies.items():
        for fmt in ("geojson", "csv") if name == "CSV" else ("geojson",):
            times, size = [], 0
            for _ in range(repeats):
                t = time.perf_counter()
                r = session.post(
                    f"{url}/api/v1/score?format={fmt}", data=body.encode(), headers={"Content-Type": ctype}
                )
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text[:300]
                size = len(r.content)
            med = statistics.median(times)
            print(
                f"  {name:9} -> {fmt:7}: {med * 1000:6.0f} ms (target < 1000; {med / base:.1f}x in-process), "
                f"body {len(body) / 1e6:.1f} MB in, {size / 1e6:.1f} MB out"
            )


def in_process(sites: list[dict], repeats: int) -> float:
    from gridmap.api import site_features
    from gridmap.config import Settings
    from gridmap.regions import default_layer
    from gridmap.scoring import score_sites
    from gridmap.sites import parse_records

    settings = Settings()
    layer = default_layer(settings)
    score_sites(parse_records(sites[:10], settings=settings), layer, settings=settings)  # build the index first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = score_sites(parse_records(json.loads(json.dumps(sites)), settings=settings), layer, settings=settings)
        ",".join(site_features(result.frame))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each wrk run.")
    parser.add_argument("--repeats", type=int, default=5, help="POST 10k repetitions.")
    args = parser.parse_args()
    print(f"gunicorn sync workers: {args.workers}; cores: {os.cpu_count()}; load average {os.getloadavg()}")
    with gunicorn(args.workers) as (url, proc):
        latency_and_throughput(url, proc, args.seconds)
        post_10k(url, args.repeats)


if __name__ == "__main__":
    main()
