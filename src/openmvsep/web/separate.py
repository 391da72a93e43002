"""The home page: upload a file, pick an algorithm and its options, and create the job through JobService."""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from openmvsep.engine.audio import FORMATS
from openmvsep.errors import UserError
from openmvsep.service.errors import ServiceError
from openmvsep.service.jobs import JobRequest, Upload, parse_output_format, parse_sep_type
from openmvsep.service.naming import human_size
from openmvsep.store.models import User
from openmvsep.web import picker
from openmvsep.web.context import WebContext, web
from openmvsep.web.forms import checked_form, text

router = APIRouter(include_in_schema=False)

CREATE_PATH = "/web/separate"
UPLOAD_ROLES = ("audiofile", "target_audiofile", "reference_audiofile")  # the API's file fields (Matchering: two)
REMOTE_TYPES = (("direct", "Direct link"), ("drive", "Google Drive"), ("dropbox", "Dropbox"), ("mega", "MEGA"))
DEFAULT_FORMAT = 1  # wav 16-bit: plays in every browser and downloads at full quality


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def limits(w: WebContext) -> dict[str, Any]:
    s = w.settings
    return {
        "max_bytes": s.max_upload_bytes,
        "max_size": human_size(s.max_upload_bytes),
        "max_duration": _duration(s.max_input_seconds),
        "free_concurrent": s.free_concurrent_jobs,
        "daily": s.free_daily_jobs,
        "retention_hours": s.retention_hours,
    }


def _fields_context(w: WebContext, sep_type: int | None, given: dict[str, str], user: User | None) -> dict[str, Any]:
    """The chosen algorithm's description and fields as this visitor sees them: keys for registered users only are
    disabled for a visitor who is not logged in; an admin sees the command that installs what does not run."""
    algorithm = w.catalog.get(sep_type) if sep_type is not None else None
    if algorithm is None or algorithm.audio_widget != picker.SCOPE:
        return {"algorithm": None, "fields": (), "outputs": [], "install": None}
    view = picker.algorithm_view(w.catalog, algorithm)
    install = None
    if user is not None and user.is_admin and not view.runnable:
        install = picker.install_commands(w.services.weights_admin, [view.sep_type])
    fields = picker.fields(w.catalog, algorithm, given, registered=user is not None)
    return {
        "algorithm": view,
        "fields": fields,
        "outputs": picker.outputs(algorithm, w.catalog, {f.name: f.value for f in fields}),
        "install": install,
    }


def _chosen(params) -> tuple[int | None, dict[str, str]]:
    raw = str(params.get("sep_type") or "").strip()
    sep_type = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else None
    return sep_type, {k: str(v) for k, v in params.items() if k.startswith("add_opt")}


def _stored_input(w: WebContext, token: str | None, params) -> tuple[dict[str, str] | None, str | None]:
    """`?from=<hash>&source=<input|n>`: a file of the caller's own job to separate again, without uploading it.
    (The file chosen, or None and the service's refusal.)"""
    source_hash, source = str(params.get("from") or ""), str(params.get("source") or "input")
    if not source_hash:
        return None, None
    try:
        found = w.jobs.own_source(token, source_hash, source)
    except ServiceError as e:
        return None, e.message
    return {"hash": source_hash, "source": source, "name": found.filename, "label": found.label}, None


@router.get("/")
def home(request: Request) -> Response:
    w = web(request)
    sep_type, given = _chosen(request.query_params)
    if sep_type is None:
        sep_type = picker.first_runnable(w.catalog)
    visit = w.sessions.load(request)
    stored, stored_error = _stored_input(w, visit.token, request.query_params)
    context = {
        "stored": stored,
        "stored_error": stored_error,
        "groups": picker.groups(w.catalog),
        "selected": sep_type,
        "formats": FORMATS,
        "default_format": DEFAULT_FORMAT,
        "limits": limits(w),
        "can_create": visit.user is not None or w.settings.anonymous_jobs,
        "create_path": CREATE_PATH,
        "remote_types": REMOTE_TYPES,
        **_fields_context(w, sep_type, given, visit.user),
    }
    return w.render.page(request, "separate.html", context)


@router.get("/web/separate/fields")
def fields_fragment(request: Request) -> Response:
    """The description, option fields and stems of one choice (swapped in when the algorithm or an option
    changes, so MVSep's `conditions` are applied by the catalog, not re-implemented in the browser)."""
    w = web(request)
    sep_type, given = _chosen(request.query_params)
    context = _fields_context(w, sep_type, given, w.sessions.load(request).user)
    html = w.render.html(request, "_fields.html", context)
    return w.render.finish(request, Response(html, media_type="text/html", headers=w.render.headers))


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _refusal(request: Request, message: str, status: int) -> Response:
    """The service's message verbatim: as MVSep's error shape to the page's script, as a page otherwise."""
    w = web(request)
    if _wants_json(request):
        return JSONResponse({"success": False, "data": {"message": message}}, status)
    return w.render.page(request, "message.html", {"title": "Not created", "message": message, "back": "/"}, status)


@router.post(CREATE_PATH)
async def create(request: Request) -> Response:
    w = web(request)
    visit = w.sessions.load(request)
    scratch = None
    form = None
    try:
        form = await checked_form(request, w.settings, visit, max_files=len(UPLOAD_ROLES))
        req = JobRequest(
            sep_type=parse_sep_type(text(form, "sep_type")),
            options_form={k: v for k, v in form.items() if k.startswith("add_opt") and isinstance(v, str)},
            output_format=parse_output_format(text(form, "output_format")),
            link_base=w.links(request).base,
        )
        source_hash = text(form, "from_hash")
        url = text(form, "url").strip()
        # A browser sends an empty part for a file field left empty: only parts with a name are files.
        uploads = {r: f for r in UPLOAD_ROLES if isinstance(f := form.get(r), UploadFile) and f.filename}
        if source_hash:  # a stored file (re-run, or a stem sent on): the service finds it from the caller's job
            source = text(form, "source") or "input"
            job = await run_in_threadpool(w.jobs.create_from_stored, visit.token, req, source_hash, source)
        elif url and not uploads:  # the remote stage downloads it first, as for the API's `url`
            remote_type = text(form, "remote_type") or "direct"
            remote = await run_in_threadpool(w.jobs.create_remote, visit.token, req, url, remote_type)
            return _created(request, remote.short_hash, f"/web/remote/{remote.short_hash}")
        else:
            if not uploads:
                raise ServiceError("Choose an audio file to separate.")
            scratch = w.storage.scratch_dir()
            saved = {}
            for role, upload in uploads.items():
                saved[role] = await run_in_threadpool(Upload.receive, upload.file, upload.filename, scratch, role)
            job = await run_in_threadpool(w.jobs.create, visit.token, req, saved)
    except UserError as e:  # ServiceError, or the decoder's AudioError: its message is meant for the user
        return _refusal(request, e.message, getattr(e, "status", 400))
    finally:
        if form is not None:
            await form.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return _created(request, job.hash, f"/result/{job.hash}")


def _created(request: Request, hash_value: str, link: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"success": True, "data": {"hash": hash_value, "link": link}})
    return web(request).render.finish(request, RedirectResponse(link, status_code=303))
