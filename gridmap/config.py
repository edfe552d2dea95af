"""Typed settings and scoring assumptions, with documented defaults and GRIDMAP_* variables.

Every field's ``doc`` is the documentation; ``docs/settings.md`` lists them all and a test keeps
the two in step.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import SettingsError, WeightsError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
METHOD_VERSION = "gridmap-score/1.0"
WEIGHT_NAMES = ("renewable", "carbon", "stress", "price")
DEFAULT_WEIGHTS = MappingProxyType({"renewable": 0.3, "carbon": 0.3, "stress": 0.2, "price": 0.2})
ENV_PREFIX = "GRIDMAP_"
MAX_WEIGHT = 1e6  # weights are relative; larger ones only risk overflow


def _setting(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, Mapping):
        return field(default_factory=lambda: dict(default), metadata={"doc": doc, **kw})
    return field(default=default, metadata={"doc": doc, **kw})


@dataclass(frozen=True)
class Settings:
    """All settings of one gridmap process. Override with keyword arguments or GRIDMAP_* variables."""

    regions_path: Path = _setting(
        DATA_DIR / "regions.parquet",
        "Region layer used for assignment (GeoParquet, GeoPackage, GeoJSON or Shapefile).",
    )
    display_regions_path: Path | None = _setting(
        DATA_DIR / "regions_display.parquet",
        "Simplified copy of the layer for maps and /regions; empty = simplify regions_path on load.",
    )
    sample_sites_path: Path = _setting(
        DATA_DIR / "sample_sites.csv", "Sites shown on the home map and in the OGC 'sites' collection."
    )
    default_pue: float = _setting(1.3, "PUE used when a site gives none (facility load / IT load).", low=1.0, high=5.0)
    default_load_factor: float = _setting(
        0.8, "Load factor used when a site gives none (average / facility load).", low=0.0, high=1.0
    )
    nearest_km: float = _setting(
        5.0, "A site outside every region but within this distance gets the nearest one.", low=0.0, high=500.0
    )
    boundary_m: float = _setting(
        1.0, "A site this close to a region edge and in no region is 'boundary'.", low=0.0, high=1000.0
    )
    weights: Mapping[str, float] = _setting(
        DEFAULT_WEIGHTS, "Default score weights, 'renewable=0.3,carbon=0.3,stress=0.2,price=0.2'."
    )
    max_body_bytes: int = _setting(20_000_000, "Largest request body the API accepts, in bytes.", low=1)
    max_sites: int = _setting(100_000, "Most sites one API request or upload may score.", low=1)
    map_max_sites: int = _setting(100_000, "Most sites drawn on one web map.", low=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            low, high = f.metadata.get("low"), f.metadata.get("high")
            value = getattr(self, f.name)
            if low is not None and not (low <= value <= (high if high is not None else math.inf)):
                raise SettingsError(f"setting {f.name}={value!r} is outside [{low}, {high}]")
        object.__setattr__(self, "weights", MappingProxyType(normalise_weights(self.weights)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from GRIDMAP_<NAME> variables, then apply keyword overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse_env(f.name, f.type, raw)
        return replace(cls(**values), **overrides) if overrides else cls(**values)

    def assumptions(self) -> dict:
        """The scoring assumptions a response reports."""
        return {
            "default_pue": self.default_pue,
            "default_load_factor": self.default_load_factor,
            "nearest_km": self.nearest_km,
            "boundary_m": self.boundary_m,
        }


def settings_docs() -> dict[str, dict]:
    """Name -> {env, default, doc} for every setting (used by docs and the settings test)."""
    out = {}
    for f in fields(Settings):
        default = f.default if f.default_factory is MISSING else dict(f.default_factory())
        if isinstance(default, Path):
            default = (
                str(default.relative_to(DATA_DIR.parent)) if default.is_relative_to(DATA_DIR.parent) else str(default)
            )
        out[f.name] = {"env": ENV_PREFIX + f.name.upper(), "default": default, "doc": f.metadata["doc"]}
    return out


def _parse_env(name: str, kind: Any, raw: str) -> Any:
    kind = str(kind)
    try:
        if "Mapping" in kind:
            return parse_weights(raw)
        if "Path" in kind:
            return Path(raw) if raw else None
        if kind == "int":
            return int(raw)
        return float(raw)
    except (ValueError, WeightsError) as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from exc


def parse_weights(text: str | Mapping[str, Any] | None) -> dict[str, float]:
    """Parse ``renewable=0.4,carbon=0.2`` (or a mapping) into weights; unnamed ones become 0.

    Raises
    ------
    WeightsError
        On an unknown name, a value that is not a finite number >= 0, or all weights zero.
    """
    if text is None or text == "":
        return dict(DEFAULT_WEIGHTS)
    if isinstance(text, Mapping):
        pairs = list(text.items())
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise WeightsError(f"weight {part!r} is not name=value; names are {', '.join(WEIGHT_NAMES)}")
            pairs.append((name.strip(), value.strip()))
    return normalise_weights(dict.fromkeys(WEIGHT_NAMES, 0.0) | _typed_weights(pairs))


def _typed_weights(pairs: list[tuple[str, Any]]) -> dict[str, float]:
    out = {}
    for name, value in pairs:
        if name not in WEIGHT_NAMES:
            raise WeightsError(f"unknown weight {name!r}; allowed: {', '.join(WEIGHT_NAMES)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise WeightsError(f"weight {name}={value!r} is not a number") from None
        out[name] = number
    return out


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check weights and return them in canonical order (they are not rescaled)."""
    unknown = set(weights) - set(WEIGHT_NAMES)
    if unknown:
        raise WeightsError(f"unknown weight {sorted(unknown)[0]!r}; allowed: {', '.join(WEIGHT_NAMES)}")
    out = {name: float(weights.get(name, 0.0)) for name in WEIGHT_NAMES}
    bad = [n for n, v in out.items() if not math.isfinite(v) or v < 0 or v > MAX_WEIGHT]
    if bad:
        raise WeightsError(
            f"weight {bad[0]}={out[bad[0]]!r} must be a number >= 0 and <= {MAX_WEIGHT:g} (weights are relative)"
        )
    if sum(out.values()) <= 0:
        raise WeightsError("at least one weight must be > 0")
    return out


def load_weights_file(path: str | Path) -> dict[str, float]:
    """Read weights from a TOML or JSON file: a table ``[weights]`` or top-level names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    data = data.get("weights", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise WeightsError(f"weights file {path} must hold a table of name = number")
    return parse_weights(data)
