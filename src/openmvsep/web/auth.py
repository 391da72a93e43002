"""Log in, register, log out: forms over AccountService, the same rules as `/api/app/login` and `/register`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from openmvsep.service.errors import ServiceError, ValidationFailed
from openmvsep.web.context import web
from openmvsep.web.forms import CsrfRefused, checked_form, local_next, text

router = APIRouter(include_in_schema=False)


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _redirect(request: Request, to: str) -> Response:
    return web(request).render.finish(request, RedirectResponse(to, status_code=303))


@router.get("/login")
def login_page(request: Request) -> Response:
    w = web(request)
    return w.render.page(request, "login.html", {"next": local_next(request.query_params.get("next"))})


@router.post("/login")
async def login(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    email, after = "", "/"
    try:
        form = await checked_form(request, w.settings, visit)
        email, after = text(form, "email"), local_next(text(form, "next"))
        data = await run_in_threadpool(w.accounts.login, email, text(form, "password"), _address(request))
        user = await run_in_threadpool(w.accounts.require, data["api_token"])
    except ServiceError as e:
        return _refused(request, "login.html", e, {"email": email, "next": after})
    visit.log_in(user)
    return _redirect(request, after)


@router.get("/register")
def register_page(request: Request) -> Response:
    w = web(request)
    return w.render.page(request, "register.html", {"policy": w.settings.registration_policy})


@router.post("/register")
async def register(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    values = {"policy": w.settings.registration_policy, "email": "", "name": ""}
    try:
        form = await checked_form(request, w.settings, visit)
        values.update(email=text(form, "email").strip(), name=text(form, "name").strip())
        password = text(form, "password")
        message = await run_in_threadpool(
            lambda: w.accounts.register(
                email=values["email"],
                password=password,
                name=values["name"],
                confirmation=text(form, "password_confirmation"),
                address=_address(request),
            )
        )
        if w.settings.registration_policy == "verify":  # the account works once the mailed link is opened
            return w.render.page(request, "message.html", {"title": "Check your e-mail", "message": message})
        data = await run_in_threadpool(w.accounts.login, values["email"], password, _address(request))
        user = await run_in_threadpool(w.accounts.require, data["api_token"])
    except ServiceError as e:
        return _refused(request, "register.html", e, values)
    visit.log_in(user)
    return _redirect(request, "/")


@router.post("/logout")
async def logout(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    try:
        await checked_form(request, w.settings, visit)
    except CsrfRefused as e:
        return w.render.page(request, "message.html", {"title": "Not logged out", "message": e.message}, e.status)
    visit.log_out()
    return _redirect(request, "/")


def _refused(request: Request, template: str, e: ServiceError, values: dict) -> Response:
    """The form again, with the service's messages verbatim (per field where it gave fields)."""
    errors = e.fields if isinstance(e, ValidationFailed) else {}
    context = {**values, "errors": errors, "message": None if errors else e.message}
    response = web(request).render.page(request, template, context, e.status)
    for name, value in (e.headers or {}).items():  # Retry-After of a throttled login
        response.headers[name] = value
    return response
