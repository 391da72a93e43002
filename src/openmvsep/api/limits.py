"""Request limits as ASGI middleware: body size, per-client rate, and misses on /storage, refused in MVSep's
error shape.

The per-minute counts live in a `limits` storage: this process's memory by default, or a store every API process
shares (Redis), so that N replicas enforce one limit rather than N. A shared store that does not answer lets
requests through (logged once per outage): a limiter outage must not take the API down with it.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import Storage as CountStorage
from limits.errors import StorageError
from limits.storage import storage_from_string

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


log = logging.getLogger("openmvsep.api")

STORE_TIMEOUT_SECONDS = 0.5  # a shared store slower than this counts as down: requests must not wait on it


class Counter:
    """Fixed one-minute windows of hits per key, in memory or in a shared store (`limits`' storages)."""

    def __init__(self, storage_url: str = "", key_prefix: str = "openmvsep"):
        self.storage_url, self.key_prefix = storage_url, key_prefix
        self._storage: CountStorage | None = None
        self._down = False

    def _store(self) -> CountStorage:
        # Built on first use, inside the server's event loop: an asyncio Redis pool belongs to the loop it runs in.
        if self._storage is None:
            if self.storage_url:
                store = storage_from_string(
                    f"async+{self.storage_url}",
                    implementation="redispy",
                    key_prefix=self.key_prefix,
                    wrap_exceptions=True,
                    socket_timeout=STORE_TIMEOUT_SECONDS,
                    socket_connect_timeout=STORE_TIMEOUT_SECONDS,
                )
            else:
                store = storage_from_string("async+memory://")
            assert isinstance(store, CountStorage)  # an async+ scheme gives an asyncio storage
            self._storage = store
        return self._storage

    @staticmethod
    def _key(per_minute: int, *identifiers: str) -> str:
        return RateLimitItemPerMinute(per_minute).key_for(*identifiers)

    async def hit(self, per_minute: int, *identifiers: str) -> int | None:
        """Count one hit; the hits of this window so far, or None when the store does not answer."""
        return await self._guarded(self._store().incr(self._key(per_minute, *identifiers), 60))

    async def hits(self, per_minute: int, *identifiers: str) -> int | None:
        """The hits of this window so far, without counting one."""
        return await self._guarded(self._store().get(self._key(per_minute, *identifiers)))

    async def retry_after(self, per_minute: int, *identifiers: str) -> int:
        """Whole seconds until the window ends (at least 1)."""
        expiry = await self._guarded(self._store().get_expiry(self._key(per_minute, *identifiers)))
        return max(1, math.ceil(expiry - time.time())) if expiry else 60

    async def _guarded(self, call):
        try:
            value = await call
        except (StorageError, OSError, TimeoutError) as e:
            if not self._down:
                log.warning("rate limits: the shared store does not answer, requests pass unlimited: %s", e)
            self._down = True
            return None
        if self._down:
            log.warning("rate limits: the shared store answers again")
            self._down = False
        return value


def too_many(per_minute: int, retry_after: int):
    return error(
        "Too Many Attempts.",
        429,
        {"Retry-After": str(retry_after), "X-RateLimit-Limit": str(per_minute), "X-RateLimit-Remaining": "0"},
    )


class RateLimit:
    """A one-minute window per client address and route, with Laravel's X-RateLimit headers."""

    def __init__(self, app, per_minute: int, counter: Counter):
        self.app = app
        self.per_minute = per_minute
        self.counter = counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.per_minute or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        count = await self.counter.hit(self.per_minute, "route", client, scope["path"])
        if count is None:  # the store is down: no limit, and no headers that would claim one
            return await self.app(scope, receive, send)
        if count > self.per_minute:
            retry = await self.counter.retry_after(self.per_minute, "route", client, scope["path"])
            return await too_many(self.per_minute, retry)(scope, receive, send)
        headers = [
            (b"x-ratelimit-limit", str(self.per_minute).encode()),
            (b"x-ratelimit-remaining", str(max(0, self.per_minute - count)).encode()),
        ]

        async def send_with_headers(msg):
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": list(msg.get("headers", [])) + headers}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


class StorageMissLimit:
    """`/storage` answers that found no file, counted per client address: past the limit the address gets 429
    for the rest of the minute, so download links cannot be found by trying names."""

    def __init__(self, app, per_minute: int, counter: Counter):
        self.app = app
        self.per_minute = per_minute
        self.counter = counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.per_minute or not scope["path"].startswith("/storage/"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        misses = await self.counter.hits(self.per_minute, "storage-miss", client)
        if misses is not None and misses >= self.per_minute:
            retry = await self.counter.retry_after(self.per_minute, "storage-miss", client)
            return await too_many(self.per_minute, retry)(scope, receive, send)

        async def count_misses(msg):
            if msg["type"] == "http.response.start" and msg["status"] == 404:
                await self.counter.hit(self.per_minute, "storage-miss", client)
            await send(msg)

        await self.app(scope, receive, count_misses)
