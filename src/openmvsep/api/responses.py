"""MVSep's response shapes: JSON on every route, errors that every client finds its message in."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

API_HEADERS = {"Cache-Control": "no-cache, private"}


class MvsepJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):  # pre-serialised (the algorithms list)
            return content
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> MvsepJSON:
    return MvsepJSON(body, status_code=status, headers={**API_HEADERS, **(headers or {})})


def error_body(message: str) -> dict:
    """One message in all three places clients look: `message`, `errors[]` and `data.message`."""
    return {"success": False, "message": message, "errors": [message], "data": {"message": message}}


def error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> MvsepJSON:
    return ok(error_body(message), status, headers)


def validation_error(fields: dict[str, list[str]], status: int = 400) -> MvsepJSON:
    """Laravel's validator shape (login/register): `message` is the field -> messages map."""
    flat = [m for msgs in fields.values() for m in msgs]
    return ok({"success": False, "message": fields, "errors": flat, "data": {"message": flat[0]}}, status)
