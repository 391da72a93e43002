"""`/api/separation/*`: create, get, get-remote, cancel, delete."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openmvsep.api.context import ctx, request_base
from openmvsep.api.forms import close_uploads, read_form, token_of
from openmvsep.api.idempotency import answered, key_of
from openmvsep.api.responses import ok
from openmvsep.service.errors import ServiceError
from openmvsep.service.idempotency import fingerprint
from openmvsep.service.jobs import JobRequest, Upload, parse_output_format, parse_sep_type

router = APIRouter(prefix="/api/separation")

UPLOAD_ROLES = ("audiofile", "target_audiofile", "reference_audiofile")
ROUTE = "separation/create"  # what an idempotency key's fingerprint names the route by


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@router.post("/create")
async def create(request: Request):
    """A job, or a URL download that becomes one; with an Idempotency-Key, a repeat gets the first answer."""
    c = ctx(request)
    cfg = c.settings
    form = await read_form(request, max_fields=cfg.max_form_fields, max_field_bytes=cfg.max_form_field_bytes)
    scratch = None
    try:
        key = key_of(request, form)
        req = JobRequest(
            sep_type=parse_sep_type(form.get("sep_type")),
            options_form={k: v for k, v in form.fields.items() if k.startswith("add_opt")},
            output_format=parse_output_format(form.get("output_format")),
            is_demo=_flag(form.get("is_demo")),
            webhook_url=(form.get("webhook_url") or "").strip() or None,
            link_base=request_base(request),
        )
        token = token_of(request, form)
        url = (form.get("url") or "").strip()
        uploads = {role: f for role, f in form.files.items() if role in UPLOAD_ROLES}
        if url and not uploads:
            remote_type = form.get("remote_type") or "direct"
            answer = await run_in_threadpool(
                c.idempotency.run,
                token,
                key,
                fingerprint(ROUTE, form.fields, {}),
                lambda once: c.jobs.create_remote(token, req, url, remote_type, once),
                c.presenter(request).remote_created,
            )
            return answered(answer)
        scratch = c.storage.scratch_dir()
        saved = {}
        for role, upload in uploads.items():
            saved[role] = await run_in_threadpool(Upload.receive, upload.file, upload.filename, scratch, role)
        answer = await run_in_threadpool(
            c.idempotency.run,
            token,
            key,
            fingerprint(ROUTE, form.fields, saved),
            lambda once: c.jobs.create(token, req, saved, once),
            c.presenter(request).created,
        )
        return answered(answer)
    finally:
        await close_uploads(form)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


async def get(request: Request):
    """`separation/get`. Clients poll it every second, so it is a plain Starlette endpoint (no parameter
    machinery) running its indexed reads inline rather than through a thread hop: the status row, and for a waiting
    job the work queued ahead (the speeds, live workers and running jobs come from the process's short caches)."""
    c = ctx(request)
    row = c.jobs.queries.status_row(request.query_params.get("hash", "").strip())
    eta = c.jobs.eta.seconds_left(row) if row is not None else None
    return ok(c.presenter(request).status(row, eta))


@router.get("/get-remote")
def get_remote(request: Request, hash: str = ""):
    c = ctx(request)
    return ok(c.presenter(request).remote_status(c.jobs.remote.state(hash.strip())))


async def _hash_action(request: Request, action: str):
    c = ctx(request)
    form = await read_form(
        request, max_fields=c.settings.max_form_fields, max_field_bytes=c.settings.max_form_field_bytes
    )
    await close_uploads(form)
    hash_value = (form.get("hash") or "").strip()
    if not hash_value:
        raise ServiceError("The hash field is required.")
    await run_in_threadpool(getattr(c.jobs, action), token_of(request, form), hash_value)
    message = "Separation cancelled" if action == "cancel" else "Separation deleted"
    return ok({"success": True, "message": message, "data": {"message": message}})


@router.post("/cancel")
async def cancel(request: Request):
    return await _hash_action(request, "cancel")


@router.post("/delete")
async def delete(request: Request):
    return await _hash_action(request, "delete")
