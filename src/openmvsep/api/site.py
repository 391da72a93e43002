"""`/api/app/*` and the account endpoints: catalog, news, queue, demo, login, register, profile."""

from __future__ import annotations

import gzip
from functools import lru_cache

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openmvsep.api.context import ctx
from openmvsep.api.forms import close_uploads, read_form, token_of
from openmvsep.api.responses import ok
from openmvsep.service.accounts import user_payload
from openmvsep.service.errors import ServiceError
from openmvsep.service.numbers import in_range, is_integer_text

router = APIRouter(prefix="/api")


def _int(name: str, value: str | None, default: int, *, lo: int = 0, hi: int | None = None) -> int:
    """Lenient as MVSep's pages are (text that is no number means the default), but a number the database cannot
    hold is a clear 400."""
    text = str(value).strip() if value is not None else ""
    n = in_range(name, int(text)) if is_integer_text(text) else default
    n = max(lo, n)
    return min(n, hi) if hi is not None else n


@lru_cache(maxsize=16)
def _gzipped(body: bytes) -> bytes:
    """The catalog's bytes compressed once (bytes cache their hash, so a hit costs next to nothing)."""
    return gzip.compress(body, compresslevel=6)


@router.get("/app/algorithms")
async def algorithms(request: Request, scopes: str = "single_upload"):
    wanted = [s.strip() for s in scopes.split(",") if s.strip()] or ["single_upload"]
    body = ctx(request).catalog.list_json(wanted)  # built once per scope set: about 1 MB of JSON
    if "gzip" in request.headers.get("accept-encoding", ""):
        return ok(_gzipped(body), headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return ok(body, headers={"Vary": "Accept-Encoding"})


@router.get("/app/news")
def news_list(request: Request, lang: str = "en", start: str = "0", limit: str = "10"):
    return ok(ctx(request).services.news.list(lang, _int("start", start, 0), _int("limit", limit, 10, lo=1, hi=20)))


@router.get("/app/queue")
def queue(request: Request):
    c = ctx(request)
    return ok(c.present.queue(c.jobs.queries.queue(token_of(request))))


@router.get("/app/queue/summary")
def queue_summary(request: Request):
    c = ctx(request)
    c.accounts.require(token_of(request), status=400)
    return ok(c.present.queue(c.jobs.queries.queue(token_of(request))))


@router.get("/app/demo")
def demo(request: Request, start: str = "0", limit: str = "10", algorithm_id: str = ""):
    c = ctx(request)
    sep_type = _int("algorithm_id", algorithm_id, -1, lo=-1) if algorithm_id else None
    rows = c.jobs.queries.demo(
        _int("start", start, 0),
        _int("limit", limit, 10, lo=1, hi=20),
        sep_type if sep_type is not None and sep_type >= 0 else None,
    )
    return ok(c.presenter(request).demo(rows))


async def _form(request: Request):
    c = ctx(request)
    form = await read_form(
        request, max_fields=c.settings.max_form_fields, max_field_bytes=c.settings.max_form_field_bytes
    )
    await close_uploads(form)
    return c, form


def _address(request: Request) -> str | None:
    """The client address login throttling and registration limits count by (the one the rate limit uses)."""
    return request.client.host if request.client else None


@router.post("/app/login")
async def login(request: Request):
    c, form = await _form(request)
    data = await run_in_threadpool(
        c.accounts.login, form.get("email") or "", form.get("password") or "", _address(request)
    )
    return ok({"success": True, "data": data})


@router.post("/app/register")
async def register(request: Request):
    c, form = await _form(request)
    message = await run_in_threadpool(
        lambda: c.accounts.register(
            email=(form.get("email") or "").strip(),
            password=form.get("password") or "",
            name=(form.get("name") or "").strip(),
            confirmation=form.get("password_confirmation"),
            address=_address(request),
        )
    )
    return ok({"success": True, "message": message})


@router.get("/app/verify_email")
def verify_email(request: Request, token: str = ""):
    """The link of the verification mail (registration=verify)."""
    ctx(request).accounts.verify_email(token)
    return ok({"success": True, "message": "Your e-mail address is verified; you can log in now"})


@router.get("/app/user")
def user(request: Request):
    c = ctx(request)
    u = c.accounts.require(token_of(request), status=400)
    data = user_payload(u)
    data["current_queue"] = c.present.current_queue(c.jobs.queries.active_jobs(u.id))
    data["copy_metadata"] = 0
    return ok({"success": True, "data": data})


@router.get("/app/separation_history")
def history(request: Request, start: str = "0", limit: str = "10"):
    c = ctx(request)
    jobs = c.jobs.queries.history(token_of(request), _int("start", start, 0), _int("limit", limit, 10, lo=1, hi=20))
    return ok({"success": True, "data": c.present.history(jobs)})


def _toggle(flag: str, value: bool):
    async def route(request: Request):
        c, form = await _form(request)
        await run_in_threadpool(c.accounts.set_flag, token_of(request, form), flag, value)
        return ok({"success": True, "message": "successfully enabled" if value else "successfully disabled"})

    return route


for _path, _flag, _value in (
    ("enable_premium", "premium_enabled", True),
    ("disable_premium", "premium_enabled", False),
    ("enable_long_filenames", "long_filenames_enabled", True),
    ("disable_long_filenames", "long_filenames_enabled", False),
):
    router.add_api_route(f"/app/{_path}", _toggle(_flag, _value), methods=["POST"], name=_path)


@router.get("/purchases")
def purchases(request: Request):
    """Self-hosted servers sell nothing: the list is always empty, in the shape MVSep clients read."""
    ctx(request).accounts.require(token_of(request), status=400)
    return ok({"success": True, "data": []})


@router.get("/credit_alert")
def credit_alert(request: Request):
    u = ctx(request).accounts.require(token_of(request), status=400)
    return ok({"success": True, "data": {"credit_threshold": u.credit_alert_threshold}})


@router.post("/credit_alert")
async def set_credit_alert(request: Request):
    c, form = await _form(request)
    raw = (form.get("credit_threshold") or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise ServiceError("credit_threshold must be a whole number (0 disables the alert)")
    in_range("credit_threshold", int(raw))
    await run_in_threadpool(c.accounts.set_credit_alert, token_of(request, form), int(raw))
    return ok({"success": True, "data": {"credit_threshold": int(raw)}})
