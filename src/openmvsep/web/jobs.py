"""One job on the page: `/result/<hash>` (live status until done, then the stems), its event stream, the polling
fragment, cancel, and download-all as a zip.

The status a page shows is what `separation/get` answers (the same presenter, from the same row), so the page and
the API never disagree. The event stream reads that row every `web_events_poll_seconds` (local workers and Celery
write from other processes, so there is nothing to subscribe to) and sends the rendered fragment only when it
changed; the page's script falls back to fetching the same fragment when the stream does not work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from openmvsep.engine.audio import FORMATS
from openmvsep.service.errors import ServiceError
from openmvsep.service.jobs import PRIVATE_MESSAGE, Eta
from openmvsep.service.jobs.sources import INPUT
from openmvsep.service.naming import human_size, split_name
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job
from openmvsep.web.context import WebContext, web
from openmvsep.web.forms import CsrfRefused, checked_form
from openmvsep.web.player import peaks_url
from openmvsep.web.zipstream import unique_names, zip_stream

router = APIRouter(include_in_schema=False)

TERMINAL = frozenset({"done", "failed", "not_found"})
RETRY_MS = 2000  # the browser's wait before it reconnects a dropped stream
AUDIO_EXTENSIONS = tuple(sorted({"." + f.extension for f in FORMATS.values()}))


def status_view(w: WebContext, hash_value: str) -> dict:
    """`separation/get`'s answer for this hash, as the fragment template reads it, with the time elapsed and left
    while the job is not over."""
    row = w.jobs.queries.status_row(hash_value)
    eta = w.jobs.eta.estimate_row(row) if row is not None else None
    body = w.present.status(row, eta.remaining_s if eta is not None else None)
    state = {"status": body.get("status", "not_found"), "data": body.get("data") or {}, "hash": hash_value}
    if eta is not None and state["status"] not in TERMINAL:
        state["eta"] = eta_view(eta)
    return state


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def eta_view(eta: Eta) -> dict:
    """Words that change at most once a minute, so the event stream does not resend the fragment every second;
    status.js counts the seconds from `since` (the job's creation, Unix seconds)."""
    left = eta.remaining_s
    if left is None:
        words = None
    elif left < 60:
        words = "less than a minute left"
    else:
        words = f"about {_minutes(left + 59)} left"
    return {
        "since": int(eta.created_at.replace(tzinfo=timezone.utc).timestamp()),
        "elapsed": _minutes(eta.elapsed_s),
        "left": words,
    }


def _not_found(request: Request) -> Response:
    return web(request).render.page(
        request,
        "message.html",
        {"title": "Not found", "message": "This separation does not exist, or its files have expired."},
        404,
    )


def private(request: Request, path: str) -> Response:
    """The refusal of another account's job when results are private (OPENMVSEP_PRIVATE_RESULTS): a page that says
    so, with a way to log in for a visitor who is not. `path`: where logging in should lead back to."""
    w = web(request)
    visit = w.sessions.load(request)
    context = {"title": "Private separation", "message": PRIVATE_MESSAGE, "login": path if visit.user is None else None}
    return w.render.page(request, "message.html", context, 403)


async def shown_job(request: Request, hash_value: str) -> Job | Response:
    """The job this visitor may see, or the page that refuses it (unknown, expired, or another account's when
    results are private)."""
    w = web(request)
    job = await run_in_threadpool(w.jobs.queries.job, hash_value)
    if job is None:
        return _not_found(request)
    if not w.jobs.may_view(job, w.sessions.load(request).user):
        return private(request, f"/result/{quote(job.hash, safe='')}")
    return job


def _time_left(expires_at: datetime) -> str:
    seconds = max(0, int((expires_at - utcnow()).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


def _page_url(w: WebContext, key: str, download: str) -> str:
    """A file's link for this page: the store's own (presigned) when so configured, else a path on this site (so
    the page works whatever host name the browser used)."""
    links = w.present.links
    link, base = links.file(key, download), links.base
    return link[len(base) :] if link.startswith(base + "/") else link


def result_context(w: WebContext, job: Job) -> dict:
    algorithm = w.catalog.get(job.sep_type)
    main = next(iter(job.inputs.values()))
    choice_labels: list[tuple[str, str]] = []
    if algorithm is not None:
        try:
            choice = w.catalog.choice(job.sep_type, job.options or {})
            labels = {f.server_key: f.text for f in algorithm.fields}
            choice_labels = [(labels.get(c.server_key, c.server_key), c.label or c.key) for c in choice.fields]
        except (KeyError, ValueError):
            choice_labels = []
    stems = [
        {
            "label": f["type"],
            "name": f["download"],
            "size": human_size(f["bytes"]),
            "url": _page_url(w, f["key"], f["download"]),
            "source": str(n),
            "peaks": peaks_url(job.hash, str(n), f["key"]),
            "audio": f["download"].lower().endswith(AUDIO_EXTENSIONS),  # MIDI and text outputs: a download only
        }
        for n, f in enumerate(job.files or [], start=1)
    ]
    return {
        "job": job,
        "algorithm_name": algorithm.name if algorithm else f"sep_type {job.sep_type}",
        "choice": choice_labels,
        "format": FORMATS[job.output_format].label if job.output_format in FORMATS else str(job.output_format),
        "input": {
            "name": main.get("name") or job.hash,
            "size": human_size(main["size"]),
            "duration": main.get("duration"),
            "url": _page_url(w, main["key"], main.get("name") or job.hash),
            "source": INPUT,
            "peaks": peaks_url(job.hash, INPUT, main["key"]),
            "audio": True,
        },
        "stems": stems,
        "time_left": _time_left(job.expires_at),
        "expires_at": job.expires_at,
        "zip_url": f"/web/jobs/{quote(job.hash, safe='')}/all.zip",
    }


@router.get("/result/{hash_value}")
async def result(request: Request, hash_value: str) -> Response:
    w = web(request)
    job = await shown_job(request, hash_value)
    if isinstance(job, Response):
        return job
    visit = w.sessions.load(request)
    state = status_view(w, job.hash)
    context: dict = {
        "hash": job.hash,
        "state": state,
        "own": visit.user is not None and job.user_id == visit.user.id,
        "refund": job.credits_charged,
    }
    if state["status"] == "done":
        context.update(result_context(w, job))
    return w.render.page(request, "result.html", context)


@router.get("/web/jobs/{hash_value}/status")
async def status_fragment(request: Request, hash_value: str) -> Response:
    """The status fragment alone: the polling fallback of the event stream."""
    w = web(request)
    if isinstance(refused := await _refused_job(request, hash_value), Response):
        return refused
    state = await run_in_threadpool(status_view, w, hash_value)
    html = w.render.html(request, "_status.html", {"state": state})
    return Response(html, media_type="text/html", headers=w.render.headers)


async def _refused_job(request: Request, hash_value: str) -> Response | None:
    """For the status fragment and the event stream, which also answer for a hash that has no job (yet): the
    refusal when the job exists and this visitor may not see it, else None."""
    w = web(request)
    job = await run_in_threadpool(w.jobs.queries.job, hash_value)
    if job is not None and not w.jobs.may_view(job, w.sessions.load(request).user):
        return private(request, f"/result/{quote(job.hash, safe='')}")
    return None


def _event(event_id: int, name: str, html: str) -> bytes:
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"id: {event_id}\nevent: {name}\n{data}\n".encode()


@router.get("/web/jobs/{hash_value}/events")
async def events(request: Request, hash_value: str) -> Response:
    """Server-sent events: `status` with the fragment whenever it changes, `end` once the job is over."""
    w = web(request)
    if isinstance(refused := await _refused_job(request, hash_value), Response):
        return refused
    poll, lifetime = w.settings.web_events_poll_seconds, w.settings.web_events_max_seconds

    async def stream() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MS}\n\n".encode()
        last, n, deadline = None, 0, time.monotonic() + lifetime
        while True:
            state = await run_in_threadpool(status_view, w, hash_value)
            html = w.render.html(request, "_status.html", {"state": state})
            if html != last:
                n += 1
                last = html
                yield _event(n, "status", html)
            if state["status"] in TERMINAL:
                yield _event(n + 1, "end", state["status"])
                return
            if time.monotonic() >= deadline or await request.is_disconnected():
                return
            await asyncio.sleep(poll)

    headers = {**w.render.headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.post("/web/jobs/{hash_value}/cancel")
async def cancel(request: Request, hash_value: str) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    try:
        await checked_form(request, w.settings, visit)
        await run_in_threadpool(w.jobs.cancel, visit.token, hash_value)
    except (CsrfRefused, ServiceError) as e:
        context = {"title": "Not cancelled", "message": e.message, "back": f"/result/{quote(hash_value, safe='')}"}
        return w.render.page(request, "message.html", context, e.status)
    return w.render.finish(request, RedirectResponse(f"/result/{quote(hash_value, safe='')}", status_code=303))


@router.get("/web/jobs/{hash_value}/all.zip")
async def download_all(request: Request, hash_value: str) -> Response:
    w = web(request)
    job = await shown_job(request, hash_value)
    if isinstance(job, Response):
        return job
    if not job.files:
        return _not_found(request)
    files = list(job.files)
    names = unique_names(f["download"] for f in files)
    storage = w.storage
    members = [(name, storage.read(f["key"])) for name, f in zip(names, files)]
    stem, _ = split_name(job.hash)
    filename = f"{stem}_stems.zip"
    return StreamingResponse(
        zip_stream(members),
        media_type="application/zip",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
