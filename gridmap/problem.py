"""RFC 9457 problem details: the one error shape of the API, and the exception -> status table.

Every error body the API and the OGC endpoints send is built by :func:`problem`. Domain
exceptions (``gridmap.errors``) know nothing of HTTP; :data:`STATUS_BY_ERROR` maps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from .errors import (
    GridmapError,
    InputError,
    NotFoundError,
    RegionLayerError,
    RowError,
    SettingsError,
    TooLargeError,
    WeightsError,
)

MEDIA_TYPE = "application/problem+json"
DOCS_URL = "/api/v1/docs"


class ParameterError(GridmapError):
    """A query parameter or the request body cannot be read at all (syntax, not content)."""


# The most specific class wins (looked up along the exception's MRO).
STATUS_BY_ERROR: dict[type[Exception], int] = {
    ParameterError: 400,
    InputError: 422,
    WeightsError: 422,
    NotFoundError: 404,
    TooLargeError: 413,
    RegionLayerError: 500,
    SettingsError: 500,
    GridmapError: 400,
}

# status -> problem type slug; the slugs are anchors on the API docs page
TYPE_SLUGS = {400: "bad-request", 404: "not-found", 413: "too-large", 415: "unsupported-media-type",
              422: "invalid-input", 500: "server-error"}  # fmt: skip


def status_for(exc: BaseException) -> int:
    """The HTTP status of a domain exception (500 for anything not in the table)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def problem_type(status: int) -> str:
    """The ``type`` URI of a status: an anchor on the API docs page, or ``about:blank``."""
    slug = TYPE_SLUGS.get(status)
    return f"{DOCS_URL}#problem-{slug}" if slug else "about:blank"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: Iterable[RowError] = (),
    instance: str | None = None,
) -> dict:
    """Build an ``application/problem+json`` body.

    Parameters
    ----------
    status
        HTTP status code; also picks ``type`` and the default ``title``.
    detail
        What went wrong in this request, safe to show to the client.
    title
        Short summary of the problem type; the HTTP reason phrase by default.
    errors
        Row-level problems; always present in the body (empty list when none).
    instance
        The request path the problem occurred at.
    """
    body = {
        "type": problem_type(status),
        "title": title or _reason(status),
        "status": int(status),
        "detail": str(detail),
        "errors": [e.as_dict() for e in errors],
    }
    if instance:
        body["instance"] = instance
    return body


def problem_for(exc: GridmapError, *, instance: str | None = None) -> dict:
    """The problem body of a domain exception, with its row errors if it has any."""
    status = status_for(exc)
    return problem(status, str(exc), errors=getattr(exc, "errors", ()), instance=instance)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
