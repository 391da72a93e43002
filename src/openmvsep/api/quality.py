"""`/api/quality_checker/*`: queue, leaderboard, entry, add, delete (+ datasets, ours)."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openmvsep.api.context import ctx
from openmvsep.api.forms import close_uploads, read_form, token_of
from openmvsep.api.idempotency import answered, key_of
from openmvsep.api.responses import ok
from openmvsep.service.errors import ServiceError
from openmvsep.service.idempotency import fingerprint
from openmvsep.service.jobs import Upload
from openmvsep.service.quality import EntryRequest

router = APIRouter(prefix="/api/quality_checker")
ROUTE = "quality_checker/add"  # what an idempotency key's fingerprint names the route by


@router.get("/queue")
def queue(request: Request):
    q = request.query_params
    return ok({"success": True, "data": ctx(request).quality_at(request).queue(q.get("start"), q.get("limit"))})


@router.get("/leaderboard")
def leaderboard(request: Request):
    q = request.query_params
    quality = ctx(request).quality_at(request)
    return ok(
        quality.leaderboard(
            q.get("dataset_type"),
            q.get("start"),
            q.get("limit"),
            q.get("algo_name_filter"),
            q.get("sort"),
            q.get("ranking_metrics"),
        )
    )


@router.get("/entry")
def entry(request: Request):
    return ok({"success": True, "data": ctx(request).quality_at(request).entry(request.query_params.get("id"))})


@router.get("/datasets")
def datasets(request: Request):
    """Which `dataset_type` is which, with the mixtures to download (MVSep leaves clients to guess)."""
    return ok({"success": True, "data": ctx(request).quality_at(request).datasets()})


@router.post("/add")
async def add(request: Request):
    """A submission; with an Idempotency-Key, a repeat gets the first answer."""
    c = ctx(request)
    form = await read_form(
        request, max_fields=c.settings.max_form_fields, max_field_bytes=c.settings.max_form_field_bytes
    )
    scratch = None
    try:
        key = key_of(request, form)
        upload = form.files.get("zipfile")
        if upload is None:
            raise ServiceError("The zipfile field is required.")
        req = EntryRequest(
            algo_name=form.get("algo_name") or "",
            main_text=form.get("main_text") or "",
            dataset_type=form.get("dataset_type"),
            password=form.get("password") or None,
            ensemble=(form.get("ensemble") or "").strip().lower() in ("1", "true", "yes", "on"),
        )
        token = token_of(request, form)
        scratch = c.storage.scratch_dir()
        saved = await run_in_threadpool(Upload.receive, upload.file, upload.filename, scratch, "zipfile")

        def added(entry) -> dict:
            link = c.quality_at(request).url(f"/api/quality_checker/entry?id={entry.id}")
            return {"success": True, "data": {"id": entry.id, "link": link}}

        answer = await run_in_threadpool(
            c.idempotency.run,
            token,
            key,
            fingerprint(ROUTE, form.fields, {"zipfile": saved}),
            lambda once: c.quality.add(token, req, saved.path, once),
            added,
        )
        return answered(answer)
    finally:
        await close_uploads(form)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@router.post("/delete")
@router.get("/delete")  # MVSep's API page describes a GET; its own examples and clients POST a form
async def delete(request: Request):
    c = ctx(request)
    form = await read_form(
        request, max_fields=c.settings.max_form_fields, max_field_bytes=c.settings.max_form_field_bytes
    )
    await close_uploads(form)
    await run_in_threadpool(c.quality.delete, form.get("id"), form.get("password"))
    return ok({"success": True, "data": {"message": "successfully deleted"}})
