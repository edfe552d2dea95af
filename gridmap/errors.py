"""Domain exceptions. They know nothing of HTTP; ``api.py`` maps them to status codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowError:
    """One problem with one input row: ``row`` is 1-based (first data row = 1), or 0 for the file."""

    row: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}


class GridmapError(ValueError):
    """Base class of every error gridmap reports to a user."""


class InputError(GridmapError):
    """The input as a whole cannot be read (empty, wrong format, missing columns)."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.errors = errors or []


class RegionLayerError(GridmapError):
    """A region layer is missing, unreadable or lacks required columns."""


class WeightsError(GridmapError):
    """Scoring weights are malformed (unknown name, negative, all zero)."""


class SettingsError(GridmapError):
    """A setting or GRIDMAP_* environment variable has a bad value."""


class NotFoundError(GridmapError):
    """A requested region, collection or item does not exist."""


class TooLargeError(GridmapError):
    """A request or input exceeds a configured limit."""
