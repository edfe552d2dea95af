"""The dask engine on a real dask.distributed LocalCluster (2 worker processes) equals the in-memory engine."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_batch import assert_same_parquet, site_table

from gridmap import outputs
from gridmap.cli import main
from gridmap.regions import load_regions
from gridmap.scoring import score_sites
from gridmap.sites import read_sites

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 2 processes, 1 thread each (GEOS prepared geometries are not thread-safe)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        assert len(cluster.workers) == 2
        yield cluster.scheduler_address


def reference(sites: Path, layer, folder: Path, ext: str, settings=None) -> tuple[Path, Path]:
    result = score_sites(read_sites(sites, settings=settings), layer, settings=settings)
    return (outputs.write_scored(result.frame, folder / f"ref.{ext}", result.provenance),
            outputs.write_errors(result.errors, folder / "ref.errors.csv"))  # fmt: skip


def test_cli_csv_on_cluster_equals_memory(scheduler, us_layer, tmp_path):
    sites = tmp_path / "sites.csv"
    site_table(3000, seed=1).to_csv(sites, index=False)
    ref, ref_errors = reference(sites, us_layer, tmp_path, "csv")
    out = tmp_path / "scored.csv"
    res = CliRunner().invoke(main, ["score", str(sites), "-o", str(out), "--engine", "dask", "--scheduler", scheduler,
                                    "--partitions", "3", "--quiet"])  # fmt: skip
    assert res.exit_code == 3, res.output
    assert filecmp.cmp(ref, out, shallow=False)
    assert filecmp.cmp(ref_errors, tmp_path / "scored.errors.csv", shallow=False)
    assert "duplicate site_id" in res.stderr


def test_partitioned_geoparquet_on_cluster_equals_memory(scheduler, us_layer, tmp_path):
    rng = np.random.default_rng(5)
    n = 2500
    gdf = gpd.GeoDataFrame(
        {"site_id": [f"p{i % 2400}" for i in range(n)], "it_load_mw": rng.choice([50.0, 120.0, -1.0], n),
         "pue": rng.choice([1.2, 1.5, np.nan], n)},
        geometry=gpd.points_from_xy(rng.uniform(-128, -62, n), rng.uniform(22, 50, n)), crs="EPSG:4326",
    )  # fmt: skip
    gdf.to_parquet(tmp_path / "all.parquet")
    (tmp_path / "parts").mkdir()
    for k in range(5):
        gdf.iloc[k * 500 : (k + 1) * 500].to_parquet(tmp_path / "parts" / f"part-{k}.parquet")
    ref, ref_errors = reference(tmp_path / "all.parquet", us_layer, tmp_path, "parquet")
    out = tmp_path / "scored.parquet"
    res = CliRunner().invoke(main, ["score", str(tmp_path / "parts"), "-o", str(out), "--scheduler", scheduler, "-q"])
    assert res.exit_code == 3, res.output
    assert_same_parquet(ref, out)
    assert filecmp.cmp(ref_errors, tmp_path / "scored.errors.csv", shallow=False)


def test_local_cluster_when_no_scheduler(squares_path, settings, tmp_path):
    """Without --scheduler a LocalCluster is started; workers load the layer from its path."""
    layer = load_regions(squares_path)
    settings = replace(settings, regions_path=squares_path, display_regions_path=None)
    rng = np.random.default_rng(2)
    n = 1200
    sites = tmp_path / "sites.csv"
    pd.DataFrame({"lon": rng.uniform(-0.5, 2.5, n).round(3), "lat": rng.uniform(-0.5, 3.5, n).round(3),
                  "it_load_mw": rng.choice(["10", "x", "30"], n)}).to_csv(sites, index=False)  # fmt: skip
    ref, ref_errors = reference(sites, layer, tmp_path, "geojson", settings)
    out = tmp_path / "scored.geojson"
    cmd = [sys.executable, "-m", "gridmap.cli", "--regions", str(squares_path), "score", str(sites), "-o", str(out),
           "--engine", "dask", "--workers", "2", "--partitions", "4", "-q"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert filecmp.cmp(ref, out, shallow=False)
    assert filecmp.cmp(ref_errors, tmp_path / "scored.errors.csv", shallow=False)


def test_importing_scoring_does_not_import_dask():
    code = "import sys, gridmap.scoring, gridmap.batch, gridmap.cli; print([m for m in sys.modules if 'dask' in m])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_stage_c_recomputes_a_partition_whose_worker_left(scheduler, us_layer, tmp_path):
    """A spill on a worker that is gone is not waited for: the partition is scored from the input again."""
    from dask.distributed import Client

    from gridmap import engines_dask as ed
    from gridmap.batch import ChunkWriter, ErrorSink, Ranking, Tally
    from gridmap.config import Settings, normalise_weights
    from gridmap.scoring import provenance

    sites = tmp_path / "sites.csv"
    site_table(1500, seed=4).to_csv(sites, index=False)
    ref, _ = reference(sites, us_layer, tmp_path, "csv")
    settings = Settings()
    weights = normalise_weights(settings.weights)
    spec = ed._settings_spec(settings)
    with Client(scheduler) as client:
        parts, id_parts = ed.input_partitions(sites, partitions=3)
        firsts, dups = ed._stage_ids(client, id_parts, False, None)
        sink = ErrorSink(tmp_path / "errors.csv")
        records, spills = ed._stage_assign(client, parts, firsts, dups, spec, sink, "gridmap-spill-test-", False)
        ranking = Ranking.build(records, us_layer, weights)
        gone = [("tcp://127.0.0.1:9", path, len(r.region)) for (_, path), r in zip(spills, records, strict=True)]
        writer = ChunkWriter(tmp_path / "out.csv", "csv", provenance(us_layer, weights, settings), ranking.bounds)
        ed._stage_score(client, parts, firsts, dups, spec, weights, ranking, gone, writer, Tally(5), False)
        writer.close()
        sink.close()
        left = client.run(lambda dask_worker: len(list(Path(dask_worker.local_directory).glob("gridmap-spill-test-*"))))
        client.run(ed._remove_spills, "gridmap-spill-test-")
        cleaned = client.run(lambda dask_worker: len(list(Path(dask_worker.local_directory).glob("gridmap-spill-*"))))
    assert filecmp.cmp(ref, tmp_path / "out.csv", shallow=False)
    assert sum(left.values()) == 3 and sum(cleaned.values()) == 0  # the unused spills were there, then removed
