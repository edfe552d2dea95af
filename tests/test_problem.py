"""The one error shape (RFC 9457 problem details) and the exception -> status table."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from gridmap.errors import (
    GridmapError,
    InputError,
    NotFoundError,
    RegionLayerError,
    RowError,
    SettingsError,
    TooLargeError,
    WeightsError,
)
from gridmap.problem import STATUS_BY_ERROR, ParameterError, problem, problem_for, status_for

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def test_problem_has_the_rfc9457_members_and_row_errors():
    body = problem(422, "2 rows are bad", errors=[RowError(3, "lat", "lat=95 is not a latitude")], instance="/x")
    assert set(body) == PROBLEM_KEYS | {"instance"}
    assert body["status"] == 422 and body["title"] == HTTPStatus(422).phrase
    assert body["detail"] == "2 rows are bad"
    assert body["errors"] == [{"row": 3, "field": "lat", "message": "lat=95 is not a latitude"}]
    assert body["type"] == "/api/v1/docs#problem-invalid-input"


def test_problem_without_row_errors_still_has_an_errors_list():
    body = problem(404, "no such region")
    assert set(body) == PROBLEM_KEYS
    assert body["errors"] == [] and body["title"] == "Not Found"


def test_unknown_status_type_is_about_blank_and_title_can_be_given():
    body = problem(409, "conflict", title="Busy")
    assert body["type"] == "about:blank" and body["title"] == "Busy" and body["status"] == 409


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ParameterError("bbox"), 400),
        (InputError("empty"), 422),
        (WeightsError("w"), 422),
        (NotFoundError("x"), 404),
        (TooLargeError("big"), 413),
        (RegionLayerError("broken"), 500),
        (SettingsError("bad"), 500),
        (GridmapError("other"), 400),
        (RuntimeError("not ours"), 500),
    ],
)
def test_status_table(exc, status):
    assert status_for(exc) == status


def test_every_domain_error_class_is_in_the_table():
    classes = [InputError, WeightsError, NotFoundError, TooLargeError, RegionLayerError, SettingsError, GridmapError]
    assert all(cls in STATUS_BY_ERROR for cls in classes)


def test_problem_for_carries_the_exception_row_errors():
    exc = InputError("none valid", [RowError(1, "it_load_mw", "missing"), RowError(2, "lon", "bad")])
    body = problem_for(exc, instance="/api/v1/score")
    assert body["status"] == 422 and body["detail"] == "none valid" and body["instance"] == "/api/v1/score"
    assert [e["row"] for e in body["errors"]] == [1, 2]
