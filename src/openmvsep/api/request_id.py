"""The request id: the client's `X-Request-ID` when it is sane, else a new one; on every response and log line.

The middleware is the outermost of ours, so the answers the limits give themselves (413, 429) carry it too.
While the request runs, the id sits in `logs.REQUEST_ID`, which the log handler's filter stamps on each record.
"""

from __future__ import annotations

import itertools
import os
import re

from openmvsep.logs import REQUEST_ID

HEADER = "X-Request-ID"
# It goes into response headers and log lines as given: short, and nothing that could break either.
SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")


# A fresh id is this process's random half and a count (32 hex digits, a uuid4's length): unique across processes
# and restarts like a random one, without a system call on every request.
_PROCESS_HALF = os.urandom(8).hex()
_COUNT = itertools.count()


def _new_process_half() -> None:
    global _PROCESS_HALF
    _PROCESS_HALF = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_process_half)


def request_id_from(given: str | None) -> str:
    """The client's id when it is sane, else a fresh one."""
    if given is not None and SANE.fullmatch(given):
        return given
    return f"{_PROCESS_HALF}{next(_COUNT) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_id_header() -> dict[str, str]:
    """The header for a response sent outside this middleware (Starlette's outermost 500 handler)."""
    return {HEADER: REQUEST_ID.get()}


class RequestId:
    """Pure ASGI (no BaseHTTPMiddleware): the request's body and response stream pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = None
        for name, value in scope["headers"]:  # ASGI header names are lower-case
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = request_id_from(given)
        raw = rid.encode()

        async def send_with_id(msg):
            if msg["type"] == "http.response.start":  # no route sets the header itself: it is added, not replaced
                msg = {**msg, "headers": [*msg.get("headers", ()), (b"x-request-id", raw)]}
            await send(msg)

        token = REQUEST_ID.set(rid)
        await self.app(scope, receive, send_with_id)
        # Not in a `finally`: when the app raised, Starlette's error handler (outside every middleware) logs
        # and answers after we return, in this same task, and should still see the id. The task ends with
        # the request, and its context with it.
        REQUEST_ID.reset(token)
