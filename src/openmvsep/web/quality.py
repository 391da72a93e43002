"""The Quality Checker pages, on MVSep's URL scheme: the datasets index (`/quality_checker/`), a leaderboard per
dataset (`/quality_checker/leaderboard/<slug>/`, and MVSep's `/quality_checker/multisong_leaderboard` for dataset
0), an entry (`/quality_checker/entry/<id>`) with its per-track plot, the submit form and delete.

Everything goes through QualityService, as `/api/quality_checker/*` does: the same validation (its messages are
shown verbatim), the same ranking, the same password check.
"""

from __future__ import annotations

import shutil
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from openmvsep.service.errors import NotFound, ServiceError
from openmvsep.service.jobs import Upload
from openmvsep.service.naming import human_size
from openmvsep.service.quality import RANKING_METRICS, EntryRequest
from openmvsep.web.context import WebContext, web
from openmvsep.web.forms import checked_form, text
from openmvsep.web.quality_plot import per_track_plot

router = APIRouter(include_in_schema=False)

PREFIX = "/quality_checker"
SUBMIT_PATH = f"{PREFIX}/add"
STATES = {0: "waiting", 1: "scoring", 2: "scored", 3: "failed"}  # `proc` in words


def _local(w: WebContext, url: str) -> str:
    """A link the service made absolute, as a path on this site (the page works whatever host the browser used)."""
    base = w.settings.effective_public_url
    return url[len(base) :] if url.startswith(base + "/") else url


def _datasets(w: WebContext) -> list[dict]:
    rows = w.services.quality.datasets()
    for d in rows:
        d["mixtures"] = _local(w, d["mixtures"])
        d["board"] = f"{PREFIX}/leaderboard/{d['slug']}/"
    return rows


def _not_found(request: Request, message: str) -> Response:
    return web(request).render.page(request, "message.html", {"title": "Not found", "message": message}, 404)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.get(f"{PREFIX}/")
async def index(request: Request) -> Response:
    w = web(request)
    datasets = await run_in_threadpool(_datasets, w)
    queue = await run_in_threadpool(w.services.quality.queue, None, None)
    return w.render.page(request, "quality_checker.html", {"datasets": datasets, "queue": queue, "states": STATES})


@router.get(PREFIX)
def index_slash(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=308)


# ---------------------------------------------------------------- leaderboard


def _page_number(raw: str | None) -> int:
    raw = (raw or "1").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 7 and int(raw) > 0 else 1


def board_context(w: WebContext, dataset: dict, query) -> dict:
    """One page of a dataset's leaderboard as the service ranks it (sort stem, metric, name filter)."""
    size = min(w.settings.web_leaderboard_page_size, w.settings.qc_leaderboard_page_limit - 1)
    page = _page_number(query.get("page"))
    name_filter = (query.get("algo_name_filter") or "").strip()
    board = w.services.quality.leaderboard(
        str(dataset["dataset_type"]),
        str((page - 1) * size),
        str(size + 1),  # one more than shown: whether a next page exists
        name_filter,
        query.get("sort"),
        query.get("ranking_metrics"),
    )
    rows, more = board["data"][:size], len(board["data"]) > size
    metric, sort = board["ranking_metrics"], board["sort"]
    stems = board["sortables"]
    cells = {r["id"]: {s: (r["metrics"].get(s) or {}).get(metric) for s in stems} for r in rows}
    best = {
        s: max((v for c in cells.values() if (v := c[s]) is not None), default=None) for s in stems
    }  # higher ranks first in the service's order, for every metric

    def link(**changes) -> str:
        params = {"sort": sort, "ranking_metrics": metric, "algo_name_filter": name_filter, "page": page, **changes}
        return "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

    return {
        "dataset": dataset,
        "rows": rows,
        "cells": cells,
        "best": best,
        "stems": stems,
        "sort": sort,
        "metric": metric,
        "metrics": RANKING_METRICS,
        "name_filter": name_filter,
        "page": page,
        "more": more,
        "link": link,
    }


async def _board(request: Request, dataset: dict | None) -> Response:
    w = web(request)
    if dataset is None:
        return _not_found(request, "No such dataset on this server.")
    try:
        context = await run_in_threadpool(board_context, w, dataset, request.query_params)
    except ServiceError as e:  # an unknown stem or metric in the query: the service's message
        return w.render.page(request, "message.html", {"title": "Leaderboard", "message": e.message}, e.status)
    return w.render.page(request, "qc_leaderboard.html", context)


@router.get(f"{PREFIX}/leaderboard/{{slug}}/")
async def leaderboard(request: Request, slug: str) -> Response:
    datasets = await run_in_threadpool(_datasets, web(request))
    return await _board(request, next((d for d in datasets if d["slug"] == slug), None))


@router.get(f"{PREFIX}/leaderboard/{{slug}}")
def leaderboard_slash(request: Request, slug: str) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{PREFIX}/leaderboard/{slug}/{query}", status_code=308)


@router.get(f"{PREFIX}/multisong_leaderboard")
async def multisong_leaderboard(request: Request) -> Response:
    """MVSep's address of its main leaderboard: here, dataset_type 0's."""
    datasets = await run_in_threadpool(_datasets, web(request))
    return await _board(request, next((d for d in datasets if d["dataset_type"] == 0), None))


# ---------------------------------------------------------------- entry


def entry_context(w: WebContext, entry_id: str) -> dict | None:
    try:
        entry = w.services.quality.entry(entry_id)
    except NotFound:
        return None
    dataset = next((d for d in _datasets(w) if d["dataset_type"] == entry["dataset_type"]), None)
    metrics = entry.get("metrics") or {}
    stems = [s for s in (dataset["stems"] if dataset else list(metrics)) if s in metrics] or list(metrics)
    names = sorted({m for s in stems for m in metrics.get(s, {})}, key=_metric_order)
    tracks = entry.get("tracks") or {}
    songs = sorted(tracks)
    per_track = {song: {s: (tracks[song].get(s) or {}).get("sdr") for s in stems} for song in songs}
    plot = per_track_plot(songs, {s: [per_track[song][s] for song in songs] for s in stems}, "SDR (dB)")
    return {
        "entry": entry,
        "dataset": dataset,
        "stems": stems,
        "metric_names": names,
        "metrics": metrics,
        "songs": songs,
        "per_track": per_track,
        "plot": plot if songs and stems else None,
        "state": STATES.get(entry["proc"], entry["status"]),
        "pending": entry["proc"] in (0, 1),
    }


def _metric_order(name: str) -> tuple[int, str]:
    return (RANKING_METRICS.index(name) if name in RANKING_METRICS else len(RANKING_METRICS), name)


async def _entry_page(request: Request, entry_id: str, *, message: str = "", status: int = 200) -> Response:
    w = web(request)
    context = await run_in_threadpool(entry_context, w, entry_id)
    if context is None:
        return _not_found(request, "This Quality Checker entry does not exist (or was deleted).")
    return w.render.page(request, "qc_entry.html", {**context, "message": message}, status)


@router.get(f"{PREFIX}/entry/{{entry_id}}")
async def entry(request: Request, entry_id: str) -> Response:
    return await _entry_page(request, entry_id)


@router.post(f"{PREFIX}/entry/{{entry_id}}/delete")
async def delete(request: Request, entry_id: str) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    try:
        form = await checked_form(request, w.settings, visit)
        dataset_type = (await run_in_threadpool(w.services.quality.entry, entry_id))["dataset_type"]
        await run_in_threadpool(w.services.quality.delete, entry_id, text(form, "password"))
    except NotFound:
        return _not_found(request, "This Quality Checker entry does not exist (or was deleted).")
    except ServiceError as e:
        return await _entry_page(request, entry_id, message=e.message, status=e.status)
    slug = next((d["slug"] for d in await run_in_threadpool(_datasets, w) if d["dataset_type"] == dataset_type), "")
    back = f"{PREFIX}/leaderboard/{slug}/" if slug else f"{PREFIX}/"
    return w.render.page(
        request, "message.html", {"title": "Entry deleted", "message": f"Entry {entry_id} was deleted.", "back": back}
    )


# ---------------------------------------------------------------- submit


@router.get(SUBMIT_PATH)
async def submit_page(request: Request) -> Response:
    w = web(request)
    datasets = await run_in_threadpool(_datasets, w)
    chosen = request.query_params.get("dataset_type", "")
    return w.render.page(
        request,
        "qc_submit.html",
        {
            "datasets": datasets,
            "chosen": chosen,
            "max_bytes": w.settings.qc_max_upload_bytes,
            "max_size": human_size(w.settings.qc_max_upload_bytes),
            "submit_path": SUBMIT_PATH,
        },
    )


def _refusal(request: Request, message: str, status: int) -> Response:
    """The service's message verbatim: MVSep's error shape for the page's script, a page otherwise."""
    if _wants_json(request):
        return JSONResponse({"success": False, "data": {"message": message}}, status)
    return web(request).render.page(
        request, "message.html", {"title": "Not submitted", "message": message, "back": SUBMIT_PATH}, status
    )


@router.post(SUBMIT_PATH)
async def submit(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    form = None
    scratch = None
    try:
        if visit.user is None:
            raise ServiceError("Log in to submit an entry: entries belong to an account.")
        form = await checked_form(request, w.settings, visit, max_files=1)
        upload = form.get("zipfile")
        if not isinstance(upload, UploadFile):
            raise ServiceError("The zipfile field is required.")
        req = EntryRequest(
            algo_name=text(form, "algo_name"),
            main_text=text(form, "main_text"),
            dataset_type=text(form, "dataset_type"),
            password=text(form, "password") or None,
            ensemble=text(form, "ensemble") in ("1", "on"),
        )
        scratch = w.storage.scratch_dir()
        saved = await run_in_threadpool(Upload.receive, upload.file, upload.filename, scratch, "zipfile")
        created = await run_in_threadpool(w.services.quality.add, visit.token, req, saved.path)
    except ServiceError as e:
        return _refusal(request, e.message, e.status)
    finally:
        if form is not None:
            await form.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    link = f"{PREFIX}/entry/{created.id}"
    if _wants_json(request):
        return JSONResponse({"success": True, "data": {"id": created.id, "link": link}})
    return w.render.finish(request, RedirectResponse(link, status_code=303))
