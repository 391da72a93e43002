"""The ASGI application: MVSep's routes over the services, started with the executor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmvsep import __version__
from openmvsep.api import docs, metrics, openapi, quality, separation, site, storage, webhooks
from openmvsep.api.context import AppContext, AppServices
from openmvsep.api.forwarded import ForwardedHeaders
from openmvsep.api.limits import BodyLimit, Counter, RateLimit, StorageMissLimit
from openmvsep.api.request_id import RequestId, request_id_header
from openmvsep.api.responses import error, ok, validation_error
from openmvsep.service.errors import ServiceError, ValidationFailed

log = logging.getLogger("openmvsep.api")


class Pages(Protocol):
    """Routes served beside the API (the web page, openmvsep.web.WebPages), mounted by the composition root: the
    API does not import them. Their paths lie outside /api/, so MVSep's API is the same with or without them."""

    @property
    def upload_limits(self) -> Mapping[str, int]: ...  # path -> the largest body it takes

    def mount(self, app: FastAPI) -> None: ...


def create_app(services: AppServices, pages: Pages | None = None) -> FastAPI:
    """The app over a process's services (openmvsep.bootstrap.Services); they start with it and close after."""
    settings = services.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services.start()
        app.state.ctx = AppContext.of(services)
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="openmvsep", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    # A bare Starlette route: FastAPI's parameter machinery would cost more than the query itself.
    app.add_route("/api/separation/get", separation.get, methods=["GET"])
    app.add_route("/metrics", metrics.metrics, methods=["GET"], include_in_schema=False)
    app.state.metrics = metrics.Metrics(services)
    app.include_router(separation.router)
    app.include_router(site.router)
    app.include_router(quality.router)
    app.include_router(webhooks.router)  # ours: signed webhook endpoints (additive; MVSep's routes are unchanged)
    app.include_router(storage.router)
    app.include_router(docs.router)  # /docs from files shipped in the package, no CDN
    openapi.describe(app)  # the form fields each route reads, which FastAPI cannot see
    if pages is not None:
        pages.mount(app)

    database_was_down = False

    @app.get("/health/live")
    async def live():
        """Liveness: the process answers (no database round trip; also the bare anchor of bench/api.py)."""
        return ok({"success": True, "status": "ok"})

    @app.get("/health")
    async def health():
        # One `SELECT 1`, cheap enough for a load balancer's probe every second. It runs in a thread under a
        # deadline, so a database that swallows packets turns this process unhealthy instead of hanging probes.
        nonlocal database_was_down
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, services.database_answers), timeout=5.0
            )
        except Exception as e:
            why = "no answer within 5s" if isinstance(e, asyncio.TimeoutError) else f"unreachable ({type(e).__name__})"
            if not database_was_down:  # once per outage, not once per probe
                log.warning("health: the database is %s: %s", why, e)
            database_was_down = True
            return ok({"success": False, "status": "error", "database": why, "executor": settings.executor}, 503)
        if database_was_down:
            log.warning("health: the database answers again")
            database_was_down = False
        return ok({"success": True, "status": "ok", "database": "ok", "executor": settings.executor})

    @app.exception_handler(ValidationFailed)
    async def _validation(_: Request, e: ValidationFailed):
        return validation_error(e.fields, e.status)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, e: ServiceError):
        return error(e.message, e.status, e.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(f"Invalid {where}: {first.get('msg', 'bad value')}", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        message = {404: "Not found", 405: "Method not allowed"}.get(e.status_code, str(e.detail))
        return error(message, e.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception):
        log.exception("unhandled error")
        return error("Internal server error", 500, request_id_header())  # sent outside every middleware

    app.add_middleware(
        BodyLimit,
        upload_limits={
            "/api/separation/create": settings.max_upload_bytes,
            "/api/quality_checker/add": settings.qc_max_upload_bytes,
            **(pages.upload_limits if pages is not None else {}),
        },
    )
    counter = Counter(settings.rate_limit_storage_url, settings.rate_limit_key_prefix)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute, counter=counter)
    app.add_middleware(StorageMissLimit, per_minute=settings.storage_miss_limit_per_minute, counter=counter)
    app.add_middleware(metrics.CountLoginFailures, metrics=app.state.metrics)  # outside the limit: 429s count
    app.add_middleware(RequestId)  # last added is outermost: the limits' own answers carry the id too
    # Outermost of all: the rate limits count the client a trusted proxy names, and links follow what it asked for.
    app.add_middleware(ForwardedHeaders, trusted=settings.trusted_proxies)
    return app
