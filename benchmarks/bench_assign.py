"""Assign 1,000,000 uniformly random points in the conterminous-US bounding box to the default layer.

Baseline, in the same run: ``geopandas.sjoin(points, regions, predicate="within")`` (with the
``points_from_xy`` it needs, and without, reported separately). gridmap: ``GridIndex.assign`` on the
lon/lat arrays (no Point objects), single-threaded, and ``assign_parallel`` with one thread per core.
Both are checked to give identical regions for every point the baseline finds inside a region.

Run: ``python benchmarks/bench_assign.py [--points 1000000] [--repeats 5]``; prints a table and writes
``benchmarks/out/assign.json``. Medians of ``--repeats`` runs (the baseline runs ``max(3, repeats//2)``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import geopandas as gpd
import numpy as np

from gridmap.assign import assign_parallel
from gridmap.config import Settings
from gridmap.regions import default_layer

CONUS = (-125.0, 24.0, -66.0, 50.0)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = Settings()
    layer = default_layer(settings)
    rng = np.random.default_rng(args.seed)
    lon = rng.uniform(CONUS[0], CONUS[2], args.points)
    lat = rng.uniform(CONUS[1], CONUS[3], args.points)
    polys = layer.frame[["geometry"]]

    start = time.perf_counter()
    index = layer.assignment_index(settings)
    build_s = time.perf_counter() - start

    def baseline_with_points():
        pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
        return gpd.sjoin(pts, polys, predicate="within", how="left")

    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    base_n = max(3, args.repeats // 2)
    sjoin_s, joined = timed(lambda: gpd.sjoin(pts, polys, predicate="within", how="left"), base_n)
    sjoin_pts_s, _ = timed(baseline_with_points, base_n)
    ours_s, found = timed(lambda: index.assign(lon, lat), args.repeats)
    par_s, found_par = timed(lambda: assign_parallel(lambda: layer.assignment_index(settings), lon, lat), args.repeats)

    ref = joined[~joined.index.duplicated()]["index_right"].fillna(-1).astype(int).to_numpy()
    inside = found.names == "inside"
    assert np.array_equal(inside, ref >= 0) and np.array_equal(found.region[inside], ref[inside])
    assert np.array_equal(found.region, found_par.region) and np.array_equal(found.kind, found_par.kind)

    n = args.points
    rows = {
        "sjoin(within), Points prebuilt": sjoin_s,
        "points_from_xy + sjoin(within)": sjoin_pts_s,
        "gridmap GridIndex.assign, 1 thread": ours_s,
        f"gridmap assign_parallel, {os.cpu_count()} threads": par_s,
    }
    print(f"{n:,} points, CONUS bbox, layer '{layer.name}' ({len(layer.frame)} regions)")
    print(
        f"index build (once per process): {build_s:.2f} s; assignment kinds: "
        + ", ".join(f"{k} {int((found.names == k).sum())}" for k in ("inside", "boundary", "nearest", "outside"))
    )
    print(f"{'method':44} {'median s':>9} {'M pts/s':>8} {'vs sjoin':>9}")
    for name, secs in rows.items():
        print(f"{name:44} {secs:9.3f} {n / secs / 1e6:8.2f} {sjoin_s / secs:8.1f}x")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    record = {"points": n, "repeats": args.repeats, "build_s": build_s, "median_s": rows,
              "speedup_vs_sjoin": {k: sjoin_s / v for k, v in rows.items()},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}  # fmt: skip
    (out / "assign.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
