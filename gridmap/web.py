"""HTML pages: the map (``/``), the upload form and its result (``/upload``) and ``/methodology``.

Thin routes: they parse the request, call the core (:mod:`gridmap.sites`, :mod:`gridmap.scoring`)
and :mod:`gridmap.maps`, and render Jinja templates (autoescaped). An upload's result is kept for
download as a GeoParquet file under a random token in a temporary folder that is pruned by age and
total size, so no result lives in process memory and any worker of the server can serve it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from flask import Blueprint, Response, abort, current_app, render_template, request, send_file
from markupsafe import Markup
from werkzeug.exceptions import RequestEntityTooLarge

from . import maps, outputs
from .config import WEIGHT_NAMES, parse_weights
from .errors import GridmapError, InputError, TooLargeError
from .scoring import ScoreResult, score_sites
from .sites import SiteBatch, parse_csv_text, parse_geojson

bp = Blueprint("web", __name__, template_folder="templates")

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
UPLOAD_DIR_NAME = "gridmap-uploads"
UPLOAD_TTL_SECONDS = 3600
UPLOAD_STORE_BYTES = 512 * 1024 * 1024
TABLE_ROWS = 100
ERRORS_SHOWN = 500
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
DOWNLOADS = {"geojson": "application/geo+json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def state():
    return current_app.extensions["gridmap"]


@bp.get("/")
def home():
    """Show the region map with the scored sample sites."""
    st = state()
    parts = st.cache.get("web:home")
    if parts is None:
        m = maps.build_map(st.layer, st.sample, max_sites=st.settings.map_max_sites)
        parts = st.cache["web:home"] = maps.render_parts(m)
    return render_template("map.html", map=parts, result=st.sample, ranked=_ranked(st.sample), page="home")


@bp.get("/upload")
def upload_form():
    """Show the upload form beside the region map."""
    st = state()
    parts = st.cache.get("web:regions")
    if parts is None:
        parts = st.cache["web:regions"] = maps.render_parts(maps.build_map(st.layer))
    return render_template("upload.html", map=parts, weights=st.settings.weights, names=WEIGHT_NAMES)


@bp.post("/upload")
def upload():
    """Score an uploaded CSV or GeoJSON of sites; show them on the map with a ranked table."""
    st = state()
    try:
        _check_length(st.settings)
        upload, weights = _read_form()
        batch = _parse_upload(upload, st.settings)
        result = score_sites(batch, st.layer, weights=weights, settings=st.settings)
        if result.frame.empty:  # a page with nothing to show would look like success
            raise InputError(f"none of the {batch.total_rows:,} sites could be scored; see below", result.errors)
    except (TooLargeError, RequestEntityTooLarge) as exc:
        return _form_error(_too_large_message(exc, st.settings), status=413)
    except InputError as exc:
        return _form_error(str(exc), errors=exc.errors, status=400)
    except GridmapError as exc:
        return _form_error(str(exc), status=400)
    token = _store(result)
    m = maps.build_map(st.layer, result, max_sites=st.settings.map_max_sites)
    return render_template(
        "upload.html", map=maps.render_parts(m), result=result, ranked=_ranked(result), token=token,
        summary=_summary(batch, result), errors=result.errors[:ERRORS_SHOWN], filename=upload.filename,
        weights=result.provenance["weights"], names=WEIGHT_NAMES, map_max_sites=st.settings.map_max_sites,
    )  # fmt: skip


@bp.get("/upload/<token>/<fmt>")
def download(token: str, fmt: str):
    """Send an upload's scored sites as GeoJSON, CSV or GeoParquet, or its row errors (``errors``)."""
    path = _stored(token)
    if fmt == "errors":
        return send_file(path.with_suffix(".errors.csv"), mimetype="text/csv", as_attachment=True,
                         download_name="gridmap-errors.csv")  # fmt: skip
    if fmt not in DOWNLOADS:
        abort(404)
    if fmt == "parquet":
        return send_file(path, mimetype=DOWNLOADS[fmt], as_attachment=True, download_name="gridmap-scored.parquet")
    table = pq.read_table(path)
    provenance = json.loads(table.schema.metadata[b"gridmap"])
    frame = table.drop_columns(["geometry"]).to_pandas()
    text = outputs.geojson_text(frame, provenance) if fmt == "geojson" else outputs.csv_text(frame, provenance)
    disposition = f'attachment; filename="gridmap-scored.{fmt}"'
    return Response(text, mimetype=DOWNLOADS[fmt], headers={"Content-Disposition": disposition})


@bp.get("/methodology")
def methodology():
    """Show docs/methodology.md as an HTML page."""
    import markdown

    path = DOCS_DIR / "methodology.md"
    if not path.is_file():
        abort(404, description="docs/methodology.md is not part of this installation")
    # the document is the project's own file, not user input, so its HTML is trusted
    body = Markup(markdown.markdown(path.read_text(encoding="utf-8"), extensions=["tables", "fenced_code", "toc"]))
    return render_template("methodology.html", body=body, page="methodology")


# ---- upload helpers ----------------------------------------------------------------------------


def _check_length(settings) -> None:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise TooLargeError(f"the upload is {length:,} bytes; the limit is {settings.max_body_bytes:,} bytes")


def _too_large_message(exc: Exception, settings) -> str:
    if isinstance(exc, TooLargeError):
        return str(exc)
    return f"the upload is larger than the limit of {settings.max_body_bytes:,} bytes"


def _read_form():
    """Return the uploaded file and the weights of the form (RequestEntityTooLarge if the body is too big)."""
    upload = request.files.get("sites")
    if upload is None or not upload.filename:
        raise InputError("choose a CSV or GeoJSON file of sites to upload")
    given = {name: request.form.get(f"w_{name}", "").strip() for name in WEIGHT_NAMES}
    weights = parse_weights({k: v for k, v in given.items() if v != ""}) if any(given.values()) else None
    return upload, weights


def _parse_upload(upload, settings) -> SiteBatch:
    """Check the site count against ``max_sites`` before parsing, then parse CSV or GeoJSON."""
    data = upload.read()
    kind = Path(upload.filename).suffix.lower()
    if kind in (".csv", ".txt"):
        rows = sum(1 for line in data.splitlines() if line.strip()) - 1
        _check_count(rows, settings)
        return parse_csv_text(data, settings=settings)
    if kind in (".geojson", ".json"):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{upload.filename}: not valid JSON: {exc}") from None
        except RecursionError:
            raise InputError(f"{upload.filename}: not valid JSON: nested too deeply") from None
        features = doc.get("features") if isinstance(doc, dict) else None
        _check_count(len(features) if isinstance(features, list) else 1, settings)
        return parse_geojson(doc, settings=settings)
    raise InputError(f"{upload.filename}: unknown file type {kind or '(none)'!r}; upload a .csv or .geojson file")


def _check_count(rows: int, settings) -> None:
    if rows > settings.max_sites:
        raise TooLargeError(f"the file has {rows:,} sites; one upload may score at most {settings.max_sites:,} "
                            "(use the gridmap score command for larger batches)")  # fmt: skip


def _form_error(message: str, *, errors=(), status: int):
    st = state()
    parts = st.cache.get("web:regions") or maps.render_parts(maps.build_map(st.layer))
    page = render_template("upload.html", map=parts, message=message, errors=list(errors)[:ERRORS_SHOWN],
                           error_count=len(errors), weights=st.settings.weights, names=WEIGHT_NAMES)  # fmt: skip
    return page, status


def _summary(batch: SiteBatch, result: ScoreResult) -> dict:
    summary = result.summary()
    summary["rows"] = batch.total_rows
    summary["scored"] = int(result.frame["score"].notna().sum())
    return summary


def _ranked(result: ScoreResult) -> list[dict]:
    """Return the first table rows in map order (``index`` is the site's position in the map's data)."""
    frame = maps.ranked_sites(result.frame).head(TABLE_ROWS)
    cols = ["rank", "score", "name", "site_id", "region_id", "assignment", "load_stress"]
    table = frame[cols].astype(object)
    table = table.where(frame[cols].notna(), None)  # NaN/NA -> None: the template shows "n/a"
    return [{"index": i, **row} for i, row in enumerate(table.to_dict("records"))]


# ---- result store ------------------------------------------------------------------------------


def _upload_dir() -> Path:
    path = Path(tempfile.gettempdir()) / UPLOAD_DIR_NAME
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _store(result: ScoreResult) -> str:
    """Write the result under a new random token, after pruning old and excess stored results."""
    folder = _upload_dir()
    _prune(folder)
    token = secrets.token_urlsafe(16)
    outputs.write_scored(result.frame, folder / f"{token}.parquet", result.provenance, fmt="parquet")
    outputs.write_errors(result.errors, folder / f"{token}.errors.csv")
    return token


def _prune(folder: Path) -> None:
    """Drop results older than the TTL, then the oldest until the folder is under its size cap."""
    stats = []
    for p in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            stats.append((p.stat(), p))
    stats.sort(key=lambda item: item[0].st_mtime)
    now, total = time.time(), sum(s.st_size for s, _ in stats)
    for s, p in stats:
        if now - s.st_mtime > UPLOAD_TTL_SECONDS or total > UPLOAD_STORE_BYTES:
            total -= s.st_size
            # another worker may have removed it first
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def _stored(token: str) -> Path:
    if not TOKEN.fullmatch(token):
        abort(404)
    path = _upload_dir() / f"{token}.parquet"
    if not path.is_file():
        abort(404, description="this result has expired; upload the file again")
    return path
