"""The streaming engine equals the in-memory engine, across chunk boundaries, and never leaves partial output."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gridmap import outputs
from gridmap.batch import SeenIds, score_stream
from gridmap.cli import main
from gridmap.errors import InputError
from gridmap.scoring import score_sites
from gridmap.sites import read_sites


def site_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Sites over the US and beyond (outside sites), with bad rows and duplicate ids spread through."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "site_id": [f"s{i}" for i in range(n)],
        "name": [f"Site {i}" for i in range(n)],
        "lon": rng.uniform(-128, -62, n).round(5).astype(str),
        "lat": rng.uniform(22, 50, n).round(5).astype(str),
        "it_load_mw": rng.choice(["50", "100", "250.5"], n),
        "owner": rng.choice(["a", "=HYPERLINK()", "b"], n),
    })  # fmt: skip
    frame.loc[rng.choice(n, 25, replace=False), "lon"] = "abc"
    frame.loc[rng.choice(n, 15, replace=False), "it_load_mw"] = "-5"
    frame.loc[rng.choice(n, 15, replace=False), "site_id"] = ""
    later = rng.choice(np.arange(n // 2, n), 30, replace=False)
    frame.loc[later, "site_id"] = frame.loc[rng.choice(n // 2, 30), "site_id"].to_numpy()  # across chunks
    frame.loc[7, "site_id"] = "row-11"  # an explicit id equal to a generated one
    frame.loc[n - 400 : n - 301, ["lon", "lat"]] = ["10.0", "10.0"]  # a block of outside sites
    frame.loc[n - 300 : n - 201, "it_load_mw"] = "0"  # a block of bad rows: a chunk may have no site
    return frame


@pytest.fixture(scope="module")
def sites_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "sites.csv"
    site_table(3000).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def in_memory(sites_csv, us_layer, tmp_path_factory) -> dict[str, Path]:
    """The in-memory engine's outputs, the reference."""
    folder = tmp_path_factory.mktemp("memory")
    result = score_sites(read_sites(sites_csv), us_layer)
    paths = {"errors": outputs.write_errors(result.errors, folder / "errors.csv")}
    for ext in ("csv", "geojson", "parquet"):
        paths[ext] = outputs.write_scored(result.frame, folder / f"scored.{ext}", result.provenance)
    paths["summary"] = result.summary()
    return paths


def assert_same_parquet(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
    meta_a, meta_b = pq.read_schema(a).metadata, pq.read_schema(b).metadata
    assert meta_a[b"geo"] == meta_b[b"geo"] and meta_a[b"gridmap"] == meta_b[b"gridmap"]
    assert gpd.read_parquet(b).crs.equals(gpd.read_parquet(a).crs)


@pytest.mark.parametrize("chunk_size", [97, 1000])
@pytest.mark.parametrize("ext", ["csv", "geojson", "parquet"])
def test_stream_equals_memory(sites_csv, in_memory, us_layer, tmp_path, chunk_size, ext):
    out, errors = tmp_path / f"scored.{ext}", tmp_path / "errors.csv"
    result = score_stream(sites_csv, out, us_layer, errors_path=errors, chunk_size=chunk_size)
    if ext == "parquet":
        assert_same_parquet(in_memory[ext], out)
    else:
        assert filecmp.cmp(in_memory[ext], out, shallow=False)
    assert filecmp.cmp(in_memory["errors"], errors, shallow=False)
    assert result.summary == in_memory["summary"]
    assert sorted(os.listdir(tmp_path)) == ["errors.csv", f"scored.{ext}"]  # no temporary file left


def test_reference_covers_the_hard_cases(in_memory):
    """The reference run has what the equality tests must carry across chunks."""
    errors = pd.read_csv(in_memory["errors"])
    scored = pd.read_parquet(in_memory["parquet"])
    dup = errors[errors["message"].str.startswith("duplicate site_id")]
    assert len(dup) >= 25 and (dup["row"] - dup["message"].str.extract(r"row (\d+)")[0].astype(int) > 97).any()
    assert {"outside", "inside", "nearest"} <= set(scored["assignment"])
    assert scored["rank"].isna().sum() == (scored["assignment"] == "outside").sum()
    assert scored.groupby("region_id")["cumulative_demand_growth_share"].nunique().eq(1).all()
    assert (scored["rank"] == 1).sum() > 1  # tied ranks


def test_geoparquet_file_and_folder(us_layer, tmp_path):
    rng = np.random.default_rng(3)
    n = 2000
    gdf = gpd.GeoDataFrame(
        {"site_id": [f"p{i % 1900}" for i in range(n)], "it_load_mw": rng.choice([50.0, 120.0, -1.0], n),
         "zone": rng.integers(0, 5, n)},
        geometry=gpd.points_from_xy(rng.uniform(-128, -62, n), rng.uniform(22, 50, n)), crs="EPSG:4326",
    )  # fmt: skip
    gdf.to_parquet(tmp_path / "sites.parquet", row_group_size=300)
    (tmp_path / "parts").mkdir()
    for k in range(4):
        gdf.iloc[k * 500 : (k + 1) * 500].to_parquet(tmp_path / "parts" / f"part-{k}.parquet")
    ref = score_sites(read_sites(tmp_path / "sites.parquet"), us_layer)
    outputs.write_scored(ref.frame, tmp_path / "ref.parquet", ref.provenance)
    outputs.write_errors(ref.errors, tmp_path / "ref.errors.csv")
    for source in (tmp_path / "sites.parquet", tmp_path / "parts"):
        score_stream(source, tmp_path / "out.parquet", us_layer, errors_path=tmp_path / "out.errors.csv", chunk_size=99)
        assert_same_parquet(tmp_path / "ref.parquet", tmp_path / "out.parquet")
        assert filecmp.cmp(tmp_path / "ref.errors.csv", tmp_path / "out.errors.csv", shallow=False)


def test_seen_ids_compares_both_hashes():
    """Two ids sharing the first 64-bit hash but not the second are different ids."""
    seen = SeenIds()
    h1 = np.array([5, 5, 9], dtype="uint64")
    seen.add_chunk(h1, np.array([1, 2, 3], dtype="uint64"), np.array([1, 2, 3]))
    assert len(seen.duplicates.rows) == 0
    seen.add_chunk(np.array([5, 5, 9, 7], dtype="uint64"), np.array([2, 4, 3, 1], dtype="uint64"), np.arange(4, 8))
    assert list(seen.duplicates.rows) == [4, 6] and list(seen.duplicates.first) == [2, 3]
    seen.add_chunk(np.array([5], dtype="uint64"), np.array([4], dtype="uint64"), np.array([8]))
    assert list(seen.duplicates.rows) == [4, 6, 8] and list(seen.duplicates.first) == [2, 3, 5]


def test_whole_input_problems_write_nothing(us_layer, tmp_path):
    (tmp_path / "header.csv").write_text("lon,lat,it_load_mw\n")
    (tmp_path / "nolat.csv").write_text("lon,it_load_mw\n1,2\n")
    for name, message in (("header.csv", "no data rows"), ("nolat.csv", "missing required column")):
        with pytest.raises(InputError, match=message):
            score_stream(tmp_path / name, tmp_path / "out.csv", us_layer, errors_path=tmp_path / "e.csv")
    assert sorted(os.listdir(tmp_path)) == ["header.csv", "nolat.csv"]


def test_cli_stream_engine(sites_csv, in_memory, tmp_path):
    runner = CliRunner()
    out = tmp_path / "scored.csv"
    res = runner.invoke(main, ["score", str(sites_csv), "-o", str(out), "--engine", "stream", "--chunk-size", "500",
                               "--quiet"])  # fmt: skip
    assert res.exit_code == 3, res.output
    assert filecmp.cmp(in_memory["csv"], out, shallow=False)
    assert filecmp.cmp(in_memory["errors"], tmp_path / "scored.errors.csv", shallow=False)
    assert "duplicate site_id" in res.stderr and "top 5:" in res.stdout
    bad = runner.invoke(main, ["score", str(sites_csv), "-o", str(out), "--engine", "stream", "--scheduler",
                               "tcp://127.0.0.1:1"])  # fmt: skip
    assert bad.exit_code == 2 and "--scheduler is for --engine dask" in bad.stderr


def test_cli_progress_bar_on_stderr(sites_csv, tmp_path):
    res = CliRunner().invoke(main, ["score", str(sites_csv), "-o", str(tmp_path / "s.parquet"), "--engine", "stream"])
    assert res.exit_code == 3
    assert "pass 2/2 score" in res.stderr and "sites/s" in res.stderr and "sites/s" not in res.stdout


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    n = 400_000
    rng = np.random.default_rng(7)
    pd.DataFrame({"lon": rng.uniform(-125, -67, n).round(4), "lat": rng.uniform(25, 49, n).round(4),
                  "it_load_mw": 100}).to_csv(path, index=False)  # fmt: skip
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_previous_output(big_csv, tmp_path, sig):
    out = tmp_path / "scored.parquet"
    out.write_bytes(b"previous output")
    (tmp_path / "scored.errors.csv").write_text("previous errors\n")
    cmd = [sys.executable, "-m", "gridmap.cli", "score", str(big_csv), "-o", str(out), "--engine", "stream",
           "--chunk-size", "10000", "--quiet"]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            partial = _wait_for_partial_output(tmp_path, proc)  # pass 2 has written chunks
            proc.send_signal(sig)
            proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode != 0
    assert out.read_bytes() == b"previous output"
    assert (tmp_path / "scored.errors.csv").read_text() == "previous errors\n"
    if sig != signal.SIGKILL:  # a killed process cannot clean up; its temporary file never takes the target name
        assert not partial.exists() and sorted(os.listdir(tmp_path)) == ["scored.errors.csv", "scored.parquet"]


def _wait_for_partial_output(folder: Path, proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        for p in folder.glob(".scored.parquet.*.partial"):
            if p.stat().st_size > 0:
                return p
        time.sleep(0.02)
    raise AssertionError("the run never started writing its output")
