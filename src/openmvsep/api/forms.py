"""Reading MVSep's form posts: multipart or urlencoded, tokens in query or form (`Upload.receive` copies files)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from openmvsep.service.errors import ServiceError


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)


async def read_form(request: Request, *, max_fields: int, max_field_bytes: int, max_files: int = 4) -> Form:
    """The request's form; query parameters fill fields the body does not have (clients mix both)."""
    form = Form()
    content_type = request.headers.get("content-type", "")
    if "multipart/form-data" in content_type or "application/x-www-form-urlencoded" in content_type:
        try:
            parsed = await request.form(max_files=max_files, max_fields=max_fields, max_part_size=max_field_bytes)
        except MultiPartException as e:
            raise ServiceError(f"Invalid form data: {e.message}") from None
        for key, value in parsed.multi_items():
            if isinstance(value, UploadFile):
                form.files.setdefault(key, value)
            else:
                if len(value) > max_field_bytes:
                    raise ServiceError(f"The field '{key}' is too large")
                form.fields.setdefault(key, value)
    for key, value in request.query_params.items():
        form.fields.setdefault(key, value)
    return form


def token_of(request: Request, form: Form | None = None) -> str | None:
    token = (form.get("api_token") if form else None) or request.query_params.get("api_token")
    return token.strip() if token else None


async def close_uploads(form: Form) -> None:
    for upload in form.files.values():
        await upload.close()
