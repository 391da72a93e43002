"""The other pages of the navigation: algorithms, news, demo, Quality Checker, API, history.

Algorithms, news, demo and history read what the API's own endpoints read; the Quality Checker and API pages are
first versions that point at what exists (the JSON endpoints and `/docs`) until their own pages are built.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from openmvsep.web import picker
from openmvsep.web.context import web

router = APIRouter(include_in_schema=False)


@router.get("/algorithms")
def algorithms(request: Request) -> Response:
    w = web(request)
    return w.render.page(request, "algorithms.html", {"groups": picker.groups(w.catalog)})


@router.get("/news")
async def news(request: Request) -> Response:
    w = web(request)
    items = await run_in_threadpool(w.services.news.list, "en", 0, 20)
    return w.render.page(request, "news.html", {"items": items})


@router.get("/demo")
async def demo(request: Request) -> Response:
    w = web(request)
    raw = request.query_params.get("algorithm_id", "").strip()
    sep_type = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else None
    jobs = await run_in_threadpool(w.jobs.queries.demo, 0, 20, sep_type)
    names = {j.sep_type: (a.name if (a := w.catalog.get(j.sep_type)) else str(j.sep_type)) for j in jobs}
    return w.render.page(request, "demo.html", {"jobs": jobs, "names": names, "algorithm_id": sep_type})


@router.get("/quality_checker/")
def quality_checker(request: Request) -> Response:
    return web(request).render.page(request, "quality_checker.html")


@router.get("/quality_checker")
def quality_checker_slash(request: Request) -> Response:
    return RedirectResponse("/quality_checker/", status_code=308)


@router.get("/api")
def api_page(request: Request) -> Response:
    w = web(request)
    return w.render.page(request, "api.html", {"base": w.settings.effective_public_url})


@router.get("/history")
async def history(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    if visit.user is None:
        return w.render.finish(request, RedirectResponse("/login?next=/history", status_code=303))
    jobs = await run_in_threadpool(w.jobs.queries.history, visit.token, 0, 50)
    names = {j.sep_type: (a.name if (a := w.catalog.get(j.sep_type)) else str(j.sep_type)) for j in jobs}
    return w.render.page(request, "history.html", {"jobs": jobs, "names": names})


@router.get("/account")
def account(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    if visit.user is None:
        return w.render.finish(request, RedirectResponse("/login?next=/account", status_code=303))
    return w.render.page(request, "account.html")
