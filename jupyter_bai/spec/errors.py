"""Errors a user can cause. Each maps to one readable line and one HTTP status.

The API turns them into ``{"error": code, "message": message}`` with ``status``;
the client raises them back as :class:`BaiError` so magics and CLI print one line.
"""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BaiError(Exception):
    """Base of every user-facing error; ``str(err)`` is the one line shown to people."""

    status: int = 400
    code: str = "invalid-request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidRequest(BaiError):
    status, code = 400, "invalid-request"


def as_value_error(check: Callable[[T], R], value: T) -> R:
    """``check(value)`` inside a pydantic validator: its InvalidRequest becomes the ValueError
    pydantic collects, with the same one-line message."""
    try:
        return check(value)
    except InvalidRequest as err:
        raise ValueError(err.message) from None


class InsufficientResources(BaiError):
    """The request can never fit this node (a request that fits later waits as PENDING)."""

    status, code = 400, "insufficient-resources"


class NotFound(BaiError):
    status, code = 404, "not-found"


class Conflict(BaiError):
    status, code = 409, "conflict"


class InvalidState(BaiError):
    """The object exists but cannot do that now (exec on a terminated session)."""

    status, code = 409, "invalid-state"


class QuotaExceeded(BaiError):
    status, code = 413, "quota-exceeded"


class RuntimeUnavailable(BaiError):
    status, code = 503, "runtime-unavailable"
