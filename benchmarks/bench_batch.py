"""Batch scoring at 1e6 and 1e7 sites: time, sites/s and peak memory of each engine, against plain geopandas.

Reproducible: random sites (seeded) over the contiguous-US bounding box (about a third fall outside
every state: ocean, Canada, Mexico) are written as GeoParquet into a temporary folder. Each engine
runs end to end in its own process (read GeoParquet, score, write GeoParquet); the peak resident
memory of that process and all its children (dask scheduler, nanny and worker processes) is
sampled with psutil every 50 ms.

Engines
-------
baseline  the plain-geopandas pipeline: read_parquet, sjoin(within), merge the region figures,
          compute energy, write GeoParquet -- no validation, no cumulative impact, no ranks
memory    ``gridmap score --engine memory`` (read everything, score, write)
stream    ``gridmap score --engine stream`` (two passes over chunks of 200,000 rows)
dask      ``gridmap score --engine dask --workers 2`` (LocalCluster, 2 processes x 1 thread)

Usage::

    python benchmarks/bench_batch.py                         # 1e6 and 1e7, all engines
    python benchmarks/bench_batch.py --sizes 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENGINES = ["baseline", "memory", "stream", "dask"]
ROW_GROUP = 1_000_000
BBOX = (-125.0, 24.0, -66.0, 50.0)


def make_sites(path: Path, n: int, seed: int = 42) -> Path:
    """Write ``n`` random sites as GeoParquet (WKB points, EPSG:4326), a row group per million."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    rng = np.random.default_rng(seed)
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}  # fmt: skip
    schema = pa.schema([("site_id", pa.string()), ("it_load_mw", pa.float64()), ("geometry", pa.binary())],
                       metadata={"geo": json.dumps(geo)})  # fmt: skip
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, n, ROW_GROUP):
            m = min(ROW_GROUP, n - start)
            lon, lat = rng.uniform(BBOX[0], BBOX[2], m), rng.uniform(BBOX[1], BBOX[3], m)
            ids = np.char.add("site-", np.arange(start, start + m).astype(str))
            table = pa.table({"site_id": ids, "it_load_mw": rng.uniform(5, 500, m).round(1),
                              "geometry": shapely.to_wkb(shapely.points(lon, lat))}, schema=schema)  # fmt: skip
            writer.write_table(table)
    return path


def baseline(source: str, target: str) -> None:
    """The plain-geopandas pipeline everyone writes first."""
    import geopandas as gpd

    from gridmap.config import Settings
    from gridmap.regions import default_layer

    layer = default_layer(Settings())
    sites = gpd.read_parquet(source)
    joined = gpd.sjoin(sites, layer.frame[["region_id", "geometry"]], how="left", predicate="within")
    joined = joined.drop(columns="index_right").merge(layer.figures, on="region_id", how="left")
    joined["annual_energy_mwh"] = joined["it_load_mw"] * 1.3 * 0.8 * 8760
    joined["annual_co2_tonnes"] = joined["annual_energy_mwh"] * joined["co2_kg_per_mwh"] / 1000
    gpd.GeoDataFrame(joined, geometry="geometry", crs=sites.crs).to_parquet(target)


def command(engine: str, source: Path, target: Path) -> list[str]:
    if engine == "baseline":
        return [sys.executable, __file__, "--baseline-run", str(source), str(target)]
    cmd = [sys.executable, "-m", "gridmap.cli", "score", str(source), "-o", str(target), "--engine", engine, "-q"]
    return cmd + (["--workers", "2"] if engine == "dask" else [])


def run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (bytes) of the process tree, exit code."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(root))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode not in (0, 3):
        print(stderr[-2000:], file=sys.stderr)
    return seconds, peak, proc.returncode


def _tree_rss(root) -> int:
    import psutil

    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated site counts")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine and size (median reported)")
    parser.add_argument("--memory-max", type=float, default=1e6, help="largest size run with --engine memory")
    parser.add_argument("--baseline-run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_run:
        return baseline(*args.baseline_run)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gridmap-bench-") as tmp:
        for n in (int(float(s)) for s in args.sizes.split(",")):
            source = make_sites(Path(tmp) / f"sites_{n}.parquet", n)
            for engine in args.engines.split(","):
                if engine == "memory" and n > args.memory_max:
                    continue
                runs = [run_measured(command(engine, source, Path(tmp) / f"out_{engine}.parquet"))
                        for _ in range(args.repeat)]  # fmt: skip
                seconds = statistics.median(r[0] for r in runs)
                peak = max(r[1] for r in runs)
                ok = all(r[2] in (0, 3) for r in runs)
                rows.append({"sites": n, "engine": engine, "seconds": round(seconds, 1), "ok": ok,
                             "sites_per_s": round(n / seconds), "peak_gb": round(peak / 1e9, 2)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    _report(rows)


def _report(rows: list[dict]) -> None:
    print(f"\n{'sites':>10} {'engine':<9} {'seconds':>8} {'sites/s':>10} {'peak GB':>8} {'vs baseline':>12}")
    for r in rows:
        base = next((b for b in rows if b["sites"] == r["sites"] and b["engine"] == "baseline"), None)
        ratio = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
        flag = "" if r["ok"] else "  FAILED"
        print(f"{r['sites']:>10} {r['engine']:<9} {r['seconds']:>8} {r['sites_per_s']:>10} {r['peak_gb']:>8} "
              f"{ratio:>12}{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
