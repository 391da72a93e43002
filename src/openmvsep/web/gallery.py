"""News (`/news`, `/news/<id>`) and the demo gallery (`/demo?algorithm_id=`), MVSep's addresses for both.

News reads what `app/news` reads, by language, and shows the stored HTML cleaned to a safe set of tags (nh3): an
entry written with `openmvsep news add` may hold links and emphasis but never script or style. The demo gallery
reads what `app/demo` reads (published, finished, unexpired separations) and plays the input and every stem.
"""

from __future__ import annotations

import nh3
from fastapi import APIRouter
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from openmvsep.service.errors import NotFound
from openmvsep.web.context import WebContext, web
from openmvsep.web.jobs import _page_url

router = APIRouter(include_in_schema=False)


def _number(raw: str | None, default: int | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 9 else default


def _lang(raw: str | None) -> str:
    raw = (raw or "en").strip().lower()
    return raw if raw.isascii() and raw.isalpha() and len(raw) <= 8 else "en"


def clean_html(text: str) -> Markup:
    """A news entry's HTML with only harmless tags and attributes left (links get rel=noopener noreferrer)."""
    return Markup(nh3.clean(text))


@router.get("/news")
async def news(request: Request) -> Response:
    w = web(request)
    size = w.settings.web_news_page_size
    page = _number(request.query_params.get("page"), 1) or 1
    lang = _lang(request.query_params.get("lang"))
    items = await run_in_threadpool(w.services.news.list, lang, (page - 1) * size, size + 1)
    more, items = len(items) > size, items[:size]
    for item in items:
        item["html"] = clean_html(item["text"])
    return w.render.page(request, "news.html", {"news_items": items, "page": page, "more": more, "lang": lang})


@router.get("/news/{news_id}")
async def news_item(request: Request, news_id: str) -> Response:
    w = web(request)
    number = _number(news_id, None)
    try:
        if number is None:
            raise NotFound("News entry not found")
        item = await run_in_threadpool(w.services.news.get, number)
    except NotFound as e:
        return w.render.page(request, "message.html", {"title": "Not found", "message": e.message}, 404)
    item["html"] = clean_html(item["text"])
    return w.render.page(request, "news_item.html", {"item": item})


def demo_cards(w: WebContext, sep_type: int | None, page: int) -> tuple[list[dict], bool]:
    size = w.settings.web_demo_page_size
    jobs = w.jobs.queries.demo((page - 1) * size, size + 1, sep_type)
    more, jobs = len(jobs) > size, jobs[:size]
    cards = []
    for job in jobs:
        main = next(iter(job.inputs.values()))
        algorithm = w.catalog.get(job.sep_type)
        cards.append(
            {
                "hash": job.hash,
                "date": job.created_at.strftime("%Y-%m-%d %H:%M"),
                "algorithm": algorithm.name if algorithm else f"sep_type {job.sep_type}",
                "sep_type": job.sep_type,
                "input": {
                    "name": main.get("name") or job.hash,
                    "url": _page_url(w, main["key"], main.get("name") or ""),
                },
                "stems": [
                    {"label": f["type"], "url": _page_url(w, f["key"], f["download"])} for f in (job.files or [])
                ],
            }
        )
    return cards, more


@router.get("/demo")
async def demo(request: Request) -> Response:
    w = web(request)
    sep_type = _number(request.query_params.get("algorithm_id"), None)
    page = _number(request.query_params.get("page"), 1) or 1
    cards, more = await run_in_threadpool(demo_cards, w, sep_type, page)
    algorithms = sorted(((a.render_id, a.name) for a in w.catalog.algorithms()), key=lambda pair: pair[1].lower())
    context = {"cards": cards, "more": more, "page": page, "algorithm_id": sep_type, "algorithms": algorithms}
    return w.render.page(request, "demo.html", context)
