"""Request limits as ASGI middleware: body size and per-client rate, refused in MVSep's error shape."""

from __future__ import annotations

import threading
import time

from openmvsep.api.responses import error
from openmvsep.service.errors import ServiceError

SMALL_BODY_BYTES = 1024 * 1024  # any other route takes a form of a few fields


class BodyTooLarge(ServiceError):
    status = 413


class BodyLimit:
    """Refuses a body larger than the route allows, by Content-Length up front or by counting as it arrives."""

    def __init__(self, app, upload_limits: dict[str, int]):
        self.app = app
        self.upload_limits = upload_limits  # path -> bytes, for the routes that take files

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.upload_limits.get(scope["path"].rstrip("/"), SMALL_BODY_BYTES)
        message = f"The request is too large; the limit is {limit / (1024 * 1024):.0f} MB"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return await error(message, 413, {"Connection": "close"})(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(message)
            return msg

        await self.app(scope, counted, send)


class RateLimit:
    """A fixed one-minute window per client address and route, with Laravel's X-RateLimit headers."""

    def __init__(self, app, per_minute: int):
        self.app = app
        self.per_minute = per_minute
        self.windows: dict[tuple[str, str], tuple[int, int]] = {}
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.per_minute or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        minute = int(time.time() // 60)
        key = (client, scope["path"])
        with self.lock:
            if len(self.windows) > 100_000:  # old windows of many clients: start over rather than grow
                self.windows.clear()
            window, count = self.windows.get(key, (minute, 0))
            if window != minute:
                window, count = minute, 0
            count += 1
            self.windows[key] = (window, count)
        remaining = max(0, self.per_minute - count)
        headers = [
            (b"x-ratelimit-limit", str(self.per_minute).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
        ]
        if count > self.per_minute:
            retry = str(60 - int(time.time()) % 60)
            resp = error(
                "Too Many Attempts.",
                429,
                {"Retry-After": retry, "X-RateLimit-Limit": str(self.per_minute), "X-RateLimit-Remaining": "0"},
            )
            return await resp(scope, receive, send)

        async def send_with_headers(msg):
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": list(msg.get("headers", [])) + headers}
            await send(msg)

        await self.app(scope, receive, send_with_headers)
