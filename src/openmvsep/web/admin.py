"""The admin pages under /admin: users, model weights, queue and workers. Only accounts with `is_admin` see them.

Every route asks `_admin` first: a visitor who is not logged in is sent to the login form, a logged-in account
that is not an admin gets a 403 page, and nothing else runs. Every change is a POST carrying the session's CSRF
token, and goes through the same services as the CLI (`openmvsep user …`, `openmvsep models …`) and the API.
The queue panel and the weight tasks refresh themselves with htmx polling (`hx-trigger="every Ns"`).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from openmvsep.service.errors import ServiceError, ValidationFailed
from openmvsep.store.models import User
from openmvsep.web.context import web
from openmvsep.web.forms import checked_form, text

router = APIRouter(include_in_schema=False)
NOT_ADMIN = "This page is for the server's administrators. Your account is not one."


def _admin(request: Request) -> User | Response:
    """The admin using the page, or the answer for anyone else (login redirect, or 403)."""
    w = web(request)
    visit = w.sessions.load(request)
    if visit.user is None:
        to = "/login?" + urlencode({"next": request.url.path})
        return w.render.finish(request, RedirectResponse(to, status_code=303))
    if not visit.user.is_admin:
        return w.render.page(request, "message.html", {"title": "Not allowed", "message": NOT_ADMIN}, 403)
    return visit.user


def _message(request: Request, e: ServiceError) -> Response:
    context = {"title": "Not done", "message": e.message, "back": "/admin"}
    return web(request).render.page(request, "message.html", context, e.status)


def _int(raw: str | None, default: int) -> int:
    raw = (raw or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else default


@router.get("/admin")
def admin_home(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    return web(request).render.finish(request, RedirectResponse("/admin/users", status_code=303))


# ------------------------------------------------------------------------------------------------ users


async def _users_page(
    request: Request, query: str, page: int, *, notice: str = "", errors: dict | None = None, status: int = 200
) -> Response:
    w = web(request)
    result = await run_in_threadpool(w.accounts.search, query, page, w.settings.admin_users_per_page)
    context = {
        "result": result,
        "q": query,
        "notice": notice,
        "errors": errors or {},
        "max_grant": w.settings.admin_max_credit_grant,
    }
    return w.render.page(request, "admin_users.html", context, status)


@router.get("/admin/users")
async def users(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    query = request.query_params.get("q", "")[:255]
    return await _users_page(request, query, _int(request.query_params.get("page"), 1))


def _credits(form: FormData) -> int:
    raw = text(form, "credits").strip()
    digits = raw[1:] if raw[:1] in "+-" else raw
    if not raw or not digits.isascii() or not digits.isdigit() or len(digits) > 12:
        raise ValidationFailed({"credits": ["The credits must be a whole number, such as 100 or -20."]})
    return int(raw)


def _change(user_id: int, action: str, form: FormData, admin: User, request: Request) -> tuple:
    """The service call for one user form, and what to say when it worked."""
    accounts = web(request).accounts
    if action == "credits":
        delta = _credits(form)
        return lambda: accounts.grant(user_id, delta), lambda u: f"{u.email} now has {u.credits} credits ({delta:+d})."
    on = text(form, "value") == "on"
    if action == "premium":
        return lambda: accounts.set_premium(user_id, on), lambda u: f"Premium is {'on' if on else 'off'} for {u.email}."
    if action == "token":
        return lambda: accounts.reset_token(user_id), lambda u: f"{u.email} has a new API token; the old one is void."
    if action == "disabled":
        return (
            lambda: accounts.set_disabled(user_id, on, by=admin.id),
            lambda u: f"{u.email} is {'disabled' if on else 'enabled'}.",
        )
    raise ServiceError(f"Unknown action {action!r}", status=404)


@router.post("/admin/users/{user_id}/{action}")
async def change_user(request: Request, user_id: str, action: str) -> Response:
    who = _admin(request)  # before the path is read: a visitor learns nothing from a malformed one
    if isinstance(who, Response):
        return who
    w = web(request)
    query, page = "", 1
    try:
        form = await checked_form(request, w.settings, w.sessions.load(request))
        query, page = text(form, "q")[:255], _int(text(form, "page"), 1)
        call, said = _change(_int(user_id, 0), action, form, who, request)  # no account 0: a clear 404
        user = await run_in_threadpool(call)
    except ValidationFailed as e:
        return await _users_page(request, query, page, errors=e.fields, status=e.status)
    except ServiceError as e:
        return _message(request, e)
    return await _users_page(request, query, page, notice=said(user))


# ------------------------------------------------------------------------------------------------ weights


def _tasks_context(request: Request) -> dict:
    w = web(request)
    return {"tasks": w.services.weights_admin.tasks(), "every": w.settings.admin_refresh_seconds}


@router.get("/admin/models")
async def models(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    w = web(request)
    rows = await run_in_threadpool(w.services.weights_admin.rows)
    return w.render.page(request, "admin_models.html", {"rows": rows, **_tasks_context(request)})


@router.get("/admin/models/tasks")
def model_tasks(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    return web(request).render.page(request, "_admin_tasks.html", _tasks_context(request))


@router.post("/admin/models/{action}")
async def model_action(request: Request, action: str) -> Response:
    """Start a download or a verification; htmx swaps in the task panel, a plain form post gets the page."""
    who = _admin(request)
    if isinstance(who, Response):
        return who
    w = web(request)
    try:
        form = await checked_form(request, w.settings, w.sessions.load(request))
        w.services.weights_admin.start(text(form, "name"), action)
    except ServiceError as e:
        if request.headers.get("hx-request"):  # said inside the panel, where the admin is looking
            context = {**_tasks_context(request), "refused": e.message}
            return w.render.page(request, "_admin_tasks.html", context)
        return _message(request, e)
    if request.headers.get("hx-request"):
        return w.render.page(request, "_admin_tasks.html", _tasks_context(request))
    return w.render.finish(request, RedirectResponse("/admin/models", status_code=303))


# ------------------------------------------------------------------------------------------------ queue


def _queue_context(request: Request) -> dict:
    w = web(request)
    readings = w.services.readings.read()
    plans = sorted(set(readings.waiting_by_plan) | set(readings.running_by_plan) | {"premium", "registered"})
    read_at = time.strftime("%H:%M:%S UTC", time.gmtime())
    return {"r": readings, "plans": plans, "read_at": read_at, "every": w.settings.admin_refresh_seconds}


@router.get("/admin/queue")
async def queue(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    w = web(request)
    return w.render.page(request, "admin_queue.html", await run_in_threadpool(_queue_context, request))


@router.get("/admin/queue/live")
async def queue_live(request: Request) -> Response:
    who = _admin(request)
    if isinstance(who, Response):
        return who
    w = web(request)
    return w.render.page(request, "_admin_queue.html", await run_in_threadpool(_queue_context, request))
