"""The Idempotency-Key of a create, and the answer sent for it (service/idempotency.py has the rules)."""

from __future__ import annotations

from starlette.requests import Request

from openmvsep.api.forms import Form
from openmvsep.api.responses import MvsepJSON, ok
from openmvsep.service.idempotency import KEY_FIELD, KEY_HEADER, REPLAYED_HEADER, Answer, parse_key


def key_of(request: Request, form: Form) -> str | None:
    """The key from the `Idempotency-Key` header or the `idempotency_key` field (a 400 for a bad one)."""
    return parse_key(request.headers.get(KEY_HEADER), form.get(KEY_FIELD))


def answered(answer: Answer) -> MvsepJSON:
    """The answer as it was first sent; a repeat says so in a header (the body stays byte for byte the same)."""
    return ok(answer.body, answer.status, {REPLAYED_HEADER: "true"} if answer.replayed else None)
