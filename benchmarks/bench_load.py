"""Mixed load on gunicorn over loopback: latency percentiles, throughput and errors under wrk.

Usage: ``python benchmarks/bench_load.py [--workers 2] [--connections 50] [--seconds 30] [--repeats 3]``

Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` (sync workers, preloaded app) on 127.0.0.1 and,
in the same run, alternates two wrk runs of the same length and concurrency ``--repeats`` times:

* **mix** (``benchmarks/load_mix.lua``): GET /api/v1/score (one site, 1/2 of requests), GET
  /api/v1/regions/<id> (1/4), POST /api/v1/score with five sites as CSV (1/4);
* **baseline**: GET /api/v1/meta only: gunicorn + Flask + a small JSON body, the server floor.

It reports per run req/s, p50/p90/p99 latency, non-2xx responses and socket errors, then the
medians and the ratio mix/baseline, and writes them to ``benchmarks/out/load.json``. The machine
is shared and has 2 cores, which wrk shares with the server: read the ratios, not the absolutes.
``tests/test_load.py`` runs the mix once for 60 s at 50 clients and requires 0 errors.
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
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
MIX_SCRIPT = Path(__file__).resolve().parent / "load_mix.lua"
OUT = Path(__file__).resolve().parent / "out" / "load.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(workers: int, *, access_log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start gunicorn with the project's config on a free loopback port; yield its URL and process."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", str(workers),
           "-b", f"127.0.0.1:{port}", "wsgi:app"]  # fmt: skip
    env = os.environ | {"GRIDMAP_ACCESS_LOG": str(access_log) if access_log else ""}
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            _wait_until_up(proc, url, log)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(proc: subprocess.Popen, url: str, log, timeout: float = 120) -> None:
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


def run_wrk(url: str, *, connections: int, seconds: int, script: Path | None = None, threads: int = 2) -> dict:
    """Run wrk for ``seconds`` at ``connections`` concurrent connections; return its figures."""
    cmd = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    cmd += ["-s", str(script)] if script else []
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 120, check=True)
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> dict:
    """Requests, req/s, latency p50/p90/p99 (ms), non-2xx responses and socket errors from wrk's report."""
    pct = {int(p): _ms(v, u) for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(total.group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": pct.get(50), "p90_ms": pct.get(90), "p99_ms": pct.get(99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sockets.groups()) if sockets else 0,
        "report": out,
    }  # fmt: skip


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"mix": [], "baseline": []}
    with gunicorn(args.workers) as (url, _):
        run_wrk(url, connections=args.connections, seconds=3, script=MIX_SCRIPT)  # warm-up
        for i in range(args.repeats):
            for name, script, target in (("mix", MIX_SCRIPT, url), ("baseline", None, url + "/api/v1/meta")):
                figures = run_wrk(target, connections=args.connections, seconds=args.seconds, script=script)
                figures.pop("report")
                runs[name].append(figures)
                print(f"run {i + 1} {name:8s} {figures['requests']:7d} req {figures['rps']:8.1f} req/s  p50 "
                      f"{figures['p50_ms']:7.2f} ms  p90 {figures['p90_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
                      f"non-2xx {figures['non2xx']}  socket errors {figures['socket_errors']}")  # fmt: skip
    medians = {name: {k: _median(rs, k) for k in ("rps", "p50_ms", "p90_ms", "p99_ms")} for name, rs in runs.items()}
    ratio = {k: medians["mix"][k] / medians["baseline"][k] for k in medians["mix"]}
    errors = sum(r["non2xx"] + r["socket_errors"] for rs in runs.values() for r in rs)
    print(f"median mix:      {medians['mix']}\nmedian baseline: {medians['baseline']}")
    print(f"mix / baseline:  {ratio}\nerrors (non-2xx + socket), all runs: {errors}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"args": vars(args), "runs": runs, "medians": medians, "ratio_mix_to_baseline": ratio,
                               "errors": errors}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
