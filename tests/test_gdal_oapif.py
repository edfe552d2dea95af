"""GDAL's OAPIF driver (ogrinfo from gdal-bin) lists the OGC collections and reads their features."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_gunicorn import gunicorn

pytestmark = [pytest.mark.server, pytest.mark.slow]
OGRINFO = shutil.which("ogrinfo") or "/usr/bin/ogrinfo"


@pytest.fixture(scope="module")
def ogc_url():
    with gunicorn(workers=2) as (url, _):
        yield f"OAPIF:{url}/ogc"


def ogrinfo(*args: str) -> str:
    done = subprocess.run([OGRINFO, "-ro", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ogrinfo_lists_both_collections(ogc_url):
    out = ogrinfo("-so", ogc_url)
    assert "1: regions (title: Grid regions)" in out
    assert "2: sites (title: Sample data-center sites, scored) (Point)" in out


def test_ogrinfo_reads_a_region_with_its_figures(ogc_url):
    out = ogrinfo(ogc_url, "regions", "-fid", "1", "-geom=SUMMARY")
    assert "OGRFeature(regions):1" in out
    assert "region_id (String) = AK" in out and "co2_kg_per_mwh (Real) = " in out
    assert "MULTIPOLYGON" in out


def test_ogrinfo_counts_and_reads_every_site(ogc_url):
    summary = ogrinfo("-so", ogc_url, "sites")
    assert "Feature Count: 12" in summary and "Geometry: Point" in summary
    out = ogrinfo("-q", ogc_url, "sites", "-geom=NO")
    assert out.count("OGRFeature(sites):") == 12
    assert "site_id (String) = meta_hyperion" in out and "region_id (String) = LA" in out


def test_ogrinfo_spatial_filter_uses_bbox(ogc_url):
    out = ogrinfo("-q", ogc_url, "regions", "-spat", "-100", "30", "-99", "31", "-geom=NO")
    assert out.count("OGRFeature(regions):") == 1 and "region_id (String) = TX" in out
