"""What the client raises: always the server's own words, never a KeyError on an unexpected body."""

from __future__ import annotations

from typing import Any


class MVSepError(Exception):
    """The server refused or failed a call. `message` is the server's text (or a description of the bad answer)."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class RateLimited(MVSepError):
    """429 answers kept coming after every retry."""


class NotFound(MVSepError):
    """The hash (or entry) is unknown, deleted or expired."""


class JobFailed(MVSepError):
    """The separation ended as `failed`; `message` is the reason the server gave."""


class DownloadError(MVSepError):
    """A download ended with a size other than the one the server announced."""


def server_message(body: Any) -> str | None:
    """The human text of an MVSep error body, wherever this server put it.

    MVSep uses `message` (a string, or Laravel's {field: [texts]} map), `errors` (a list of strings) or
    `data.message`, depending on the route and the era.
    """
    if not isinstance(body, dict):
        return None
    candidates: list[Any] = []
    data = body.get("data")
    if isinstance(data, dict):
        candidates.append(data.get("message"))
    candidates += [body.get("message"), body.get("errors"), body.get("error")]
    for value in candidates:
        text = _text(value)
        if text:
            return text
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        parts = [t for t in (_text(v) for v in value) if t]
        return "; ".join(parts) or None
    if isinstance(value, dict):  # Laravel validation map: {"email": ["The email field is required."]}
        parts = [t for t in (_text(v) for v in value.values()) if t]
        return "; ".join(parts) or None
    return None
