"""The result page's player: waveform peaks of a job's stored files, as JSON for static/app/mixer.js.

Files are named as service/jobs/sources.py names them (`input`, `1`..`n`), never by storage key. Whoever may see
a result page may see its peaks (anyone with the hash, unless OPENMVSEP_PRIVATE_RESULTS). The URL carries `v` (a
digest of the storage key) so a cached answer can never outlive its file.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from openmvsep.service.errors import ServiceError
from openmvsep.service.jobs import PRIVATE_MESSAGE
from openmvsep.service.peaks import WaveformPeaks
from openmvsep.web.context import web

router = APIRouter(include_in_schema=False)


def version(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def peaks_url(hash_value: str, name: str, key: str) -> str:
    return f"/web/jobs/{quote(hash_value, safe='')}/peaks/{quote(name, safe='')}?v={version(key)}"


def _peaks(request: Request) -> WaveformPeaks:
    """One cache per app (per process), made on first use."""
    state = request.app.state
    if getattr(state, "web_peaks", None) is None:
        w = web(request)
        state.web_peaks = WaveformPeaks(w.storage, w.settings)
    return state.web_peaks


@router.get("/web/jobs/{hash_value}/peaks/{name}")
async def peaks(request: Request, hash_value: str, name: str) -> Response:
    w = web(request)
    job = await run_in_threadpool(w.jobs.queries.job, hash_value)
    try:
        if job is None:
            raise ServiceError("This separation does not exist.", status=404)
        if not w.jobs.may_view(job, w.sessions.load(request).user):
            raise ServiceError(PRIVATE_MESSAGE, status=403)
        key, body = await run_in_threadpool(_peaks(request).for_job, job, name)
    except ServiceError as e:
        return JSONResponse({"success": False, "data": {"message": e.message}}, e.status)
    etag = f'"{version(key)}"'
    shared = "private" if w.jobs.private_results else "public"  # a shared cache must not hand them to another user
    headers = {"ETag": etag, "Cache-Control": f"{shared}, max-age=86400", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)
