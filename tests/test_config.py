"""Settings: documented, typed, overridable by GRIDMAP_* variables; weights parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridmap.config import Settings, parse_weights, settings_docs
from gridmap.errors import SettingsError, WeightsError
from tests.conftest import ROOT


def test_every_setting_is_documented_in_docs():
    text = (ROOT / "docs" / "settings.md").read_text()
    for info in settings_docs().values():
        assert info["env"] in text, f"{info['env']} missing from docs/settings.md"


def test_env_overrides():
    s = Settings.from_env({"GRIDMAP_NEAREST_KM": "2.5", "GRIDMAP_WEIGHTS": "renewable=1", "GRIDMAP_MAX_SITES": "7",
                           "GRIDMAP_REGIONS_PATH": "/x/y.gpkg"})  # fmt: skip
    assert s.nearest_km == 2.5 and s.max_sites == 7 and s.regions_path == Path("/x/y.gpkg")
    assert s.weights["renewable"] == 1 and s.weights["price"] == 0


@pytest.mark.parametrize("env", [{"GRIDMAP_NEAREST_KM": "far"}, {"GRIDMAP_DEFAULT_PUE": "0.5"},
                                 {"GRIDMAP_WEIGHTS": "sun=1"}, {"GRIDMAP_MAX_SITES": "1.5"}])  # fmt: skip
def test_bad_env_is_named(env):
    with pytest.raises(SettingsError, match="GRIDMAP_|setting"):
        Settings.from_env(env)


def test_parse_weights_text():
    assert parse_weights("renewable=0.4, carbon=0.2,stress=0.3,price=0.1") == {
        "renewable": 0.4, "carbon": 0.2, "stress": 0.3, "price": 0.1}  # fmt: skip
    for bad in ("renewable", "renewable=x", "renewable=0,carbon=0"):
        with pytest.raises(WeightsError):
            parse_weights(bad)


def test_layering_core_imports_no_web_stack():
    import subprocess
    import sys

    code = "import sys, gridmap.scoring, gridmap.sites, gridmap.regions, gridmap.outputs; " \
           "print(sorted(m for m in ('flask', 'folium', 'dask') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
