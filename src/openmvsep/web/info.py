"""The other pages of the navigation: algorithms, news, demo (History, Account and API: web/account.py; the
Quality Checker: web/quality.py).

They read what the API's own endpoints read.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

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
