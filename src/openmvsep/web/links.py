"""Separations that do not start from one uploaded file: a link (the remote stage downloads it first, then the
job starts; `/web/remote/<hash>` follows the download as `get-remote` reports it) and Matchering's two files.
Both post to the Separate page's create route, so the rules are create's and create_remote's."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from openmvsep.engine.audio import FORMATS
from openmvsep.web.context import web
from openmvsep.web.jobs import private
from openmvsep.web.separate import CREATE_PATH, DEFAULT_FORMAT, limits

router = APIRouter(include_in_schema=False)

MATCHERING = 68  # MVSep's sep_type for Matchering (its widget takes a target and a reference)


@router.get("/web/remote/{short_hash}")
async def remote(request: Request, short_hash: str) -> Response:
    """A link's download: its status until the job exists, then that job's page."""
    w = web(request)
    found = await run_in_threadpool(w.jobs.remote.state, short_hash)
    if found is not None and not w.jobs.may_view(found[0], w.sessions.load(request).user):
        return private(request, f"/web/remote/{quote(short_hash, safe='')}")
    body = w.present.remote_status(found)
    status, data = body.get("status", "not_found"), body.get("data") or {}
    if status == "done":
        return w.render.finish(request, RedirectResponse(f"/result/{quote(data['hash'], safe='')}", status_code=303))
    context = {"short_hash": short_hash, "status": status, "data": data}
    return w.render.page(request, "remote.html", context, 404 if status == "not_found" else 200)


@router.get("/matchering")
def matchering(request: Request) -> Response:
    w = web(request)
    algorithm = w.catalog.get(MATCHERING)
    context = {
        "algorithm": algorithm,
        "available": w.catalog.is_available(MATCHERING),
        "sep_type": MATCHERING,
        "formats": FORMATS,
        "default_format": DEFAULT_FORMAT,
        "limits": limits(w),
        "can_create": w.sessions.load(request).user is not None or w.settings.anonymous_jobs,
        "create_path": CREATE_PATH,
    }
    return w.render.page(request, "matchering.html", context)
