"""Errors a service raises for the API user. The API turns them into MVSep's error shape."""

from __future__ import annotations

from openmvsep.errors import TransientError, UserError

__all__ = ["InvalidToken", "NotFound", "ServiceError", "TransientError", "UserError", "ValidationFailed"]


class ServiceError(UserError):
    """A refusal with a human message; `status` is the HTTP code MVSep uses for it."""

    status = 400
    headers: dict[str, str] = {}  # extra response headers (Retry-After of a 429)

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidToken(ServiceError):
    status = 401


class ValidationFailed(ServiceError):
    """Laravel-style form validation: `fields` maps a field name to its messages."""

    def __init__(self, fields: dict[str, list[str]]):
        first = next(iter(fields.values()))[0]
        super().__init__(first)
        self.fields = fields


class NotFound(ServiceError):
    status = 404
