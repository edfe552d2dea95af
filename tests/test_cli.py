"""`gridmap score` and `gridmap regions` through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner

from gridmap.cli import EXIT_FATAL, EXIT_ROW_ERRORS, main
from tests.conftest import ROOT

SAMPLE = ROOT / "data" / "sample_sites.csv"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("ext", ["geojson", "csv", "parquet"])
def test_score_sample_every_format(tmp_path, ext):
    out = tmp_path / f"scored.{ext}"
    result = run("score", SAMPLE, "-o", out)
    assert result.exit_code == 0, result.output
    assert "data year 2023" in result.output and "TX 2" in result.output and "top 5" in result.output
    if ext == "geojson":
        doc = json.loads(out.read_text())
        assert len(doc["features"]) == 12 and doc["gridmap"]["data_year"] == 2023
        frame = pd.DataFrame([f["properties"] for f in doc["features"]])
    elif ext == "csv":
        frame = pd.read_csv(out)
        assert set(frame["method_version"]) == {"gridmap-score/1.0"}
    else:
        frame = gpd.read_parquet(out)
        assert frame.crs.equals("OGC:CRS84") or frame.crs.to_epsg() == 4326
    assert sorted(frame["site_id"]) == sorted(pd.read_csv(SAMPLE)["site_id"])
    assert (tmp_path / "scored.errors.csv").exists()


def test_geoparquet_carries_provenance(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "s.parquet"
    run("score", SAMPLE, "-o", out, "--weights", "renewable=1")
    prov = json.loads(pq.read_schema(out).metadata[b"gridmap"])
    assert prov["weights"] == {"renewable": 1.0, "carbon": 0.0, "stress": 0.0, "price": 0.0}


def test_bad_rows_exit_3_and_are_written(tmp_path):
    src = tmp_path / "sites.csv"
    src.write_text("site_id,lon,lat,it_load_mw\na,-97,30,100\nb,-97,30,abc\nc,-40,35,10\n")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(out)])
    assert result.exit_code == EXIT_ROW_ERRORS
    assert "row 2, field it_load_mw" in result.output
    errors = pd.read_csv(tmp_path / "out.errors.csv")
    assert errors[["row", "field"]].values.tolist() == [[2, "it_load_mw"]]
    scored = pd.read_csv(out).set_index("site_id")
    assert scored.loc["c", "assignment"] == "outside" and "b" not in scored.index


def test_weights_file_toml_and_json(tmp_path):
    toml = tmp_path / "w.toml"
    toml.write_text("[weights]\nrenewable = 1\ncarbon = 1\n")
    jsn = tmp_path / "w.json"
    jsn.write_text('{"renewable": 1, "carbon": 1}')
    outs = []
    for i, w in enumerate((toml, jsn)):
        out = tmp_path / f"o{i}.csv"
        assert run("score", SAMPLE, "-o", out, "--weights", w).exit_code == 0
        outs.append(pd.read_csv(out)["score"])
    pd.testing.assert_series_equal(*outs)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--weights", "wind=1"], "unknown weight 'wind'"),
        (["--weights", "renewable=-1"], "must be a number >= 0"),
        (["-o", "OUT.xlsx"], "unknown format '.xlsx'"),
        (["--regions", "missing.gpkg"], "does not exist"),
    ],
)
def test_fatal_errors_exit_2_and_write_nothing(tmp_path, args, needle):
    args = [a.replace("OUT", str(tmp_path / "o")) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "o.csv")]
    result = CliRunner().invoke(main, ["score", str(SAMPLE), *args])
    assert result.exit_code == EXIT_FATAL, result.output
    assert needle in result.output
    assert not list(tmp_path.glob("o*"))


def test_empty_file_is_fatal(tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text("")
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == EXIT_FATAL and "empty" in result.output


def test_never_writes_over_the_input(tmp_path):
    src = tmp_path / "sites.csv"
    src.write_bytes(SAMPLE.read_bytes())
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(src)])
    assert result.exit_code == EXIT_FATAL and "is the input" in result.output
    assert src.read_bytes() == SAMPLE.read_bytes()


def test_custom_region_layer(tmp_path, squares_path):
    src = tmp_path / "s.csv"
    src.write_text("site_id,lon,lat,it_load_mw\na,0.5,0.5,10\nb,1.5,0.5,10\n")
    out = tmp_path / "o.csv"
    result = run("score", src, "-o", out, "--regions", squares_path)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["region_id"].tolist() == ["A", "B"]


def test_regions_command(squares_path):
    result = run("regions")
    assert result.exit_code == 0 and "data year: 2023" in result.output and "regions: 51" in result.output


def test_console_script_runs_as_a_process(tmp_path):
    out = tmp_path / "o.geojson"
    proc = subprocess.run([sys.executable, "-m", "gridmap.cli", "score", str(SAMPLE), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and not list(tmp_path.glob("*.partial"))


def test_outputs_get_the_usual_file_permissions(tmp_path):
    out = tmp_path / "o.csv"
    run("score", SAMPLE, "-o", out)
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
