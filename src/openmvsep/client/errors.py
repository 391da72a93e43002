"""What the client raises: always the server's own words, never a KeyError on an unexpected body.

    MVSepError              the server refused or failed a call; `message` is its text
     ├── NotFound           the hash (or entry) is unknown, deleted or expired
     ├── JobFailed          the separation ended as `failed`
     ├── TooManyJobs        a create refused because the account runs as many jobs as its plan allows
     ├── DownloadError      a download's size is not the one the server announced
     └── Unavailable        transient: no answer, or 5xx / 429 after every retry; a later try may pass
          └── RateLimited   429 answers kept coming

Callers catch by meaning: `Unavailable` is worth trying again later, the others are the server's last word on
that request.
"""

from __future__ import annotations

import re
from typing import Any


class MVSepError(Exception):
    """The server refused or failed a call. `message` is the server's text (or a description of the bad answer)."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class Unavailable(MVSepError):
    """The server could not be reached, or kept failing (5xx, 429) after every retry: another try later may pass."""


class RateLimited(Unavailable):
    """429 answers kept coming after every retry."""


class TooManyJobs(MVSepError):
    """A create refused because the account already runs as many jobs as its plan allows (MVSep: one for a free
    account). Nothing was created; the same create passes once one of those jobs has ended."""


class NotFound(MVSepError):
    """The hash (or entry) is unknown, deleted or expired."""


class JobFailed(MVSepError):
    """The separation ended as `failed`; `message` is the reason the server gave."""


class DownloadError(MVSepError):
    """A download ended with a size other than the one the server announced."""


# How servers word the refusal of one job too many. openmvsep: "You already have 1 separation(s) in progress; your
# plan allows 1 at a time." MVSep's own wording is unpublished; the clients that handle it look for "too many".
_TOO_MANY_JOBS = re.compile(r"too many|at a time|concurrent|already have .*(in progress|running|processing)", re.I)


def says_too_many_jobs(message: str) -> bool:
    """Whether a create's refusal says the account runs as many jobs as it may."""
    return bool(_TOO_MANY_JOBS.search(message))


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
