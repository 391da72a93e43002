"""Reading the page's form posts and refusing those without the session's CSRF token."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from openmvsep.service.errors import ServiceError
from openmvsep.settings import Settings
from openmvsep.web.session import CSRF_FIELD, CSRF_HEADER, Visit

CSRF_REFUSED = (
    "This form's security token is missing or out of date (the page was open too long, or the form was not sent "
    "from this site). Nothing was changed: reload the page and try again."
)


class CsrfRefused(ServiceError):
    status = 403


def check_header(request: Request, visit: Visit) -> bool:
    """The page's own scripts send the token in a header: checked before a large body is read at all."""
    return visit.csrf_matches(request.headers.get(CSRF_HEADER))


async def read_form(request: Request, settings: Settings, *, max_files: int = 0) -> FormData:
    try:
        return await request.form(
            max_files=max_files, max_fields=settings.max_form_fields, max_part_size=settings.max_form_field_bytes
        )
    except MultiPartException as e:
        raise ServiceError(f"Invalid form data: {e.message}") from None


async def checked_form(request: Request, settings: Settings, visit: Visit, *, max_files: int = 0) -> FormData:
    """The form, once its CSRF token (header or field) matches the session's; otherwise CsrfRefused."""
    header_ok = check_header(request, visit)
    if not header_ok and request.headers.get(CSRF_HEADER):
        raise CsrfRefused(CSRF_REFUSED)  # a wrong header: refuse before reading the body
    form = await read_form(request, settings, max_files=max_files)
    token = form.get(CSRF_FIELD)
    if not header_ok and not visit.csrf_matches(token if isinstance(token, str) else None):
        await form.close()
        raise CsrfRefused(CSRF_REFUSED)
    return form


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def local_next(value: str | None, default: str = "/") -> str:
    """Where to go after a form: a path on this site only (never //host or a scheme)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
