"""Errors that carry their HTTP status and a one-line human message.

Imports nothing from iiifsrv; every layer may raise these, only web/ renders them.
"""

from __future__ import annotations


class IIIFError(Exception):
    """Base error: ``status`` is the HTTP status, ``message`` one line for a person."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message.splitlines()[0] if message else self.__class__.__name__
        self.headers = headers or {}


class BadRequest(IIIFError):
    status = 400


class Unauthorized(IIIFError):
    status = 401


class Forbidden(IIIFError):
    status = 403


class NotFound(IIIFError):
    status = 404


class MethodNotAllowed(IIIFError):
    status = 405


class Conflict(IIIFError):
    status = 409


class PreconditionFailed(IIIFError):
    status = 412


class PayloadTooLarge(IIIFError):
    status = 413


class RangeNotSatisfiable(IIIFError):
    status = 416


class NotImplementedFeature(IIIFError):
    status = 501


class Unavailable(IIIFError):
    status = 503
