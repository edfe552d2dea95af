"""Vendor JavaScript/CSS served from the installed xstatic packages (no CDN)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("assets", __name__)
