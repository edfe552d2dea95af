"""HTML pages of the gridmap service: the map, the upload form and the methodology page."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__, template_folder="templates")
