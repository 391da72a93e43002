"""`/api/app/webhooks*` (ours, beside MVSep's routes): a user's signed webhook endpoints, their secrets, test
events, redelivery and the delivery log. The token is `api_token`, in the form or the query, as on the account
routes; answers and errors have MVSep's shape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openmvsep.api.context import AppContext, ctx
from openmvsep.api.forms import Form, close_uploads, read_form, token_of
from openmvsep.api.responses import ok

router = APIRouter(prefix="/api/app/webhooks")


async def _form(request: Request) -> tuple[AppContext, Form]:
    c = ctx(request)
    form = await read_form(
        request, max_fields=c.settings.max_form_fields, max_field_bytes=c.settings.max_form_field_bytes
    )
    await close_uploads(form)
    return c, form


@router.get("")
def overview(request: Request):
    return ok({"success": True, "data": ctx(request).webhooks.overview(token_of(request))})


@router.post("")
async def add(request: Request):
    c, form = await _form(request)
    data = await run_in_threadpool(c.webhooks.add, token_of(request, form), form.get("url"), form.get("event_types"))
    return ok({"success": True, "data": data})


@router.post("/update")
async def update(request: Request):
    c, form = await _form(request)
    data = await run_in_threadpool(
        lambda: c.webhooks.update(
            token_of(request, form),
            form.get("id"),
            url=form.get("url"),
            event_types=form.get("event_types"),
            disabled=form.get("disabled"),
        )
    )
    return ok({"success": True, "data": data})


@router.post("/delete")
async def delete(request: Request):
    c, form = await _form(request)
    await run_in_threadpool(c.webhooks.delete, token_of(request, form), form.get("id"))
    return ok({"success": True, "data": {"message": "Webhook endpoint deleted"}})


@router.post("/rotate")
async def rotate(request: Request):
    c, form = await _form(request)
    return ok(
        {"success": True, "data": await run_in_threadpool(c.webhooks.rotate, token_of(request, form), form.get("id"))}
    )


@router.post("/test")
async def send_test(request: Request):
    c, form = await _form(request)
    data = await run_in_threadpool(c.webhooks.send_test, token_of(request, form), form.get("id"))
    return ok({"success": True, "data": data})


@router.post("/redeliver")
async def redeliver(request: Request):
    c, form = await _form(request)
    data = await run_in_threadpool(c.webhooks.redeliver, token_of(request, form), form.get("event_id"))
    return ok({"success": True, "data": data})


@router.get("/secret")
def account_secret(request: Request):
    """The account signing secret in full (it signs the deliveries to a create's `webhook_url`)."""
    return ok({"success": True, "data": ctx(request).webhooks.account_secret(token_of(request))})


@router.get("/deliveries")
def deliveries(request: Request):
    q = request.query_params
    data = ctx(request).webhooks.attempts(
        token_of(request),
        event_id=q.get("event_id"),
        endpoint_id=q.get("endpoint_id"),
        start=q.get("start"),
        limit=q.get("limit"),
    )
    return ok({"success": True, "data": data})
