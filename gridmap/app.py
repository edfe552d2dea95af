"""The Flask application factory: load the data once, register the blueprints and error handlers.

``create_app(settings)`` reads the region layer and scores the sample sites once per process;
under gunicorn with ``--preload`` that happens once in the master, before the workers fork.
A broken region layer raises :class:`~gridmap.errors.RegionLayerError` here, so a misconfigured
server fails at start, not on the first request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from .config import Settings
from .errors import GridmapError
from .problem import MEDIA_TYPE, problem, problem_for, status_for
from .regions import RegionLayer, default_layer
from .scoring import ScoreResult, score_sites
from .sites import read_sites

PROBLEM_PREFIXES = ("/api/", "/ogc")
GENERIC_500 = "The server could not answer this request; the error has been logged."


@dataclass(eq=False)
class GridmapState:
    """What one process serves: its settings, the region layer and the scored sample sites."""

    settings: Settings
    layer: RegionLayer
    sample: ScoreResult
    cache: dict = field(default_factory=dict, repr=False)

    def provenance_headers(self) -> dict[str, str]:
        """Layer, data year and method version as ASCII-safe response headers."""
        prov = self.layer.provenance()
        values = {"X-Gridmap-Layer": prov["layer"], "X-Gridmap-Data-Year": prov["data_year"],
                  "X-Gridmap-Method": prov["method_version"]}  # fmt: skip
        return {k: _header_text(v) for k, v in values.items()}


def create_app(settings: Settings | None = None) -> Flask:
    """Build the gridmap WSGI application.

    Parameters
    ----------
    settings
        Settings of this process; ``Settings.from_env()`` (GRIDMAP_* variables) if omitted.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["gridmap"] = load_state(settings)
    _register_blueprints(app)
    _register_error_handlers(app)
    headers = app.extensions["gridmap"].provenance_headers()
    app.after_request(lambda response: _add_headers(response, headers))
    return app


def load_state(settings: Settings) -> GridmapState:
    """Load the layer, build its assignment index and score the sample sites (once per process)."""
    layer = default_layer(settings)
    sample = score_sites(read_sites(settings.sample_sites_path, settings=settings), layer, settings=settings)
    return GridmapState(settings=settings, layer=layer, sample=sample)


def _register_blueprints(app: Flask) -> None:
    from . import api, assets, ogc, web

    app.register_blueprint(api.bp)
    app.register_blueprint(ogc.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(assets.bp, url_prefix=assets.bp.url_prefix or "/assets")


def _register_error_handlers(app: Flask) -> None:
    app.register_error_handler(GridmapError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _wants_problem() -> bool:
    return request.path.startswith(PROBLEM_PREFIXES)


def problem_response(body: dict, *, headers: dict | None = None) -> Response:
    """A problem body as an ``application/problem+json`` response."""
    text = json.dumps(body, ensure_ascii=False)
    return Response(text, status=body["status"], mimetype=MEDIA_TYPE, headers=headers)


def _domain_error(exc: GridmapError):
    status = status_for(exc)
    if status >= 500:
        current_app.logger.error("gridmap error on %s %s", request.method, request.path, exc_info=exc)
    if _wants_problem():
        return problem_response(problem_for(exc, instance=request.path))
    page = default_exceptions.get(status, InternalServerError)
    return page(description=str(exc)).get_response()


def _http_error(exc: HTTPException):
    if not _wants_problem() or exc.code is None:
        return exc
    body = problem(exc.code, exc.description or exc.name, title=exc.name, instance=request.path)
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
    return problem_response(body, headers=headers)


def _unexpected_error(exc: Exception):
    # the traceback goes to the log only; the client gets a generic message
    current_app.logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    if _wants_problem():
        return problem_response(problem(500, GENERIC_500, instance=request.path))
    return InternalServerError(description=GENERIC_500).get_response()


def _add_headers(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response


def _header_text(value) -> str:
    # header values must be latin-1; a user layer's name may not be
    return str(value).encode("ascii", "replace").decode("ascii") if value is not None else ""
