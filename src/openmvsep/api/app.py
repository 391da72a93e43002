"""The ASGI application: MVSep's routes over the services, started with the executor."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmvsep.api import quality, separation, site, storage
from openmvsep.api.context import AppContext
from openmvsep.api.limits import BodyLimit, RateLimit
from openmvsep.api.responses import error, ok, validation_error
from openmvsep.engine.recipes import runnable_map
from openmvsep.runner.executor import Executor, make_executor
from openmvsep.runner.worker import engine_runtime
from openmvsep.service.catalog import Catalog
from openmvsep.service.errors import ServiceError, ValidationFailed
from openmvsep.service.jobs import JobService
from openmvsep.service.quality import QualityService, ensure_default_dataset
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.migrate import upgrade
from openmvsep.store.storage import make_storage

log = logging.getLogger("openmvsep.api")


def build_context(settings: Settings, executor: Executor | None = None) -> AppContext:
    upgrade(settings.effective_database_url)
    db = Database(settings.effective_database_url)
    storage_ = make_storage(settings)
    storage_.sweep_dead_scratch()  # uploads a killed process was receiving
    runtime = engine_runtime(settings)
    catalog = Catalog.load(runnable_map(runtime))
    executor = executor or make_executor(settings)
    jobs = JobService(db, storage_, settings, catalog, notify=executor.notify, registry=runtime.registry)
    quality_ = QualityService(db, storage_, settings, notify=executor.notify)
    ensure_default_dataset(quality_)
    return AppContext(settings=settings, db=db, storage=storage_, catalog=catalog, jobs=jobs, quality=quality_,
                      executor=executor)


def create_app(settings: Settings | None = None, *, executor: Executor | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        context = build_context(settings, executor)
        app.state.ctx = context
        context.executor.start()
        try:
            yield
        finally:
            context.executor.stop()
            context.db.dispose()

    app = FastAPI(title="openmvsep", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    # A bare Starlette route: FastAPI's parameter machinery would cost more than the query itself.
    app.add_route("/api/separation/get", separation.get, methods=["GET"])
    app.include_router(separation.router)
    app.include_router(site.router)
    app.include_router(quality.router)
    app.include_router(storage.router)

    database_was_down = False

    @app.get("/health/live")
    async def live():
        """Liveness: the process answers (no database round trip; also the bare anchor of bench/api.py)."""
        return ok({"success": True, "status": "ok"})

    @app.get("/health")
    async def health(request: Request):
        # One `SELECT 1`, cheap enough for a load balancer's probe every second. It runs in a thread under a
        # deadline, so a database that swallows packets turns this process unhealthy instead of hanging probes.
        nonlocal database_was_down
        db = request.app.state.ctx.db

        def select_one() -> None:
            with db.read_engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, select_one), timeout=5.0)
        except Exception as e:  # noqa: BLE001 - whatever the cause, this process cannot serve
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
        return error(e.message, e.status)

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
        return error("Internal server error", 500)

    app.add_middleware(BodyLimit, upload_limits={"/api/separation/create": settings.max_upload_bytes,
                                                 "/api/quality_checker/add": settings.qc_max_upload_bytes})
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    return app
