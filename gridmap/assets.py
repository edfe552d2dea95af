"""Vendor JavaScript/CSS served from the installed xstatic packages (no CDN, works offline).

The route ``/assets/<package>/<path>`` serves files of a whitelisted package folder only; the
project's own ``static/`` folder is the package ``gridmap``. :func:`asset_urls` and
:func:`asset_files` give the map builder the same list without needing a request or an app.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from flask import Blueprint, abort, send_from_directory

bp = Blueprint("assets", __name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# package name in the URL -> xstatic module (None: the project's own static/ folder)
PACKAGES = {
    "leaflet": "xstatic.pkg.leaflet",
    "markercluster": "xstatic.pkg.leaflet_markercluster",
    "jquery": "xstatic.pkg.jquery",
    "font-awesome": "xstatic.pkg.font_awesome",
    "gridmap": None,
}
# what a map page loads, in order: (package, file)
MAP_JS = [("leaflet", "leaflet.js"), ("markercluster", "leaflet.markercluster.js"), ("gridmap", "gridmap.js")]
MAP_CSS = [
    ("leaflet", "leaflet.css"),
    ("markercluster", "MarkerCluster.css"),
    ("markercluster", "MarkerCluster.Default.css"),
    ("gridmap", "gridmap.css"),
]
CACHE_SECONDS = 3600


@cache
def package_dir(package: str) -> Path:
    """Return the folder a whitelisted package's files are served from.

    Raises
    ------
    KeyError
        If ``package`` is not in :data:`PACKAGES`.
    """
    module = PACKAGES[package]
    if module is None:
        return STATIC_DIR
    return Path(importlib.import_module(module).BASE_DIR).resolve()


def asset_urls(base: str = "/assets") -> dict[str, list[tuple[str, str]]]:
    """Return ``{"js": [(name, url)], "css": [(name, url)]}`` of a map page, under the URL prefix ``base``."""
    base = base.rstrip("/")
    return {
        "js": [(f"{pkg}/{name}", f"{base}/{pkg}/{name}") for pkg, name in MAP_JS],
        "css": [(f"{pkg}/{name}", f"{base}/{pkg}/{name}") for pkg, name in MAP_CSS],
    }


def asset_files() -> dict[str, list[Path]]:
    """Return the local files of a map page (``{"js": [...], "css": [...]}``), for inlining."""
    return {
        "js": [package_dir(pkg) / name for pkg, name in MAP_JS],
        "css": [package_dir(pkg) / name for pkg, name in MAP_CSS],
    }


@bp.get("/<package>/<path:filename>")
def serve(package: str, filename: str):
    """Serve one file of a whitelisted package; 404 for anything else (send_from_directory joins safely)."""
    if package not in PACKAGES:
        abort(404)
    return send_from_directory(package_dir(package), filename, max_age=CACHE_SECONDS)
