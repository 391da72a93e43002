"""The shared layout: Jinja2 templates, the headers every page carries, and the session cookie on the way out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from openmvsep import __version__
from openmvsep.web import assets
from openmvsep.web.session import CSRF_FIELD, Sessions, Visit

TEMPLATES = Path(__file__).with_name("templates")


def content_security_policy(media_origins: tuple[str, ...] = ()) -> str:
    """Only this server's own scripts and styles run (no inline script or style, no eval): a page that echoes
    a user's file name or a catalog description cannot be turned into a script. Media may also come from a
    store's presigned links."""
    media = " ".join(("'self'", "blob:", *media_origins))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src {media}; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def page_headers(media_origins: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(media_origins),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",  # pages hold the visitor's own data and a CSRF token
    }


class Renderer:
    def __init__(self, sessions: Sessions, site_name: str = "openmvsep", media_origins: tuple[str, ...] = ()):
        self.sessions = sessions
        self.headers = page_headers(media_origins)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(asset=assets.url, site_name=site_name, version=__version__, csrf_field=CSRF_FIELD)

    def html(self, request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200) -> str:
        visit = self.sessions.load(request)
        return self.env.get_template(template).render(
            request=request, visit=visit, user=visit.user, csrf=visit.csrf, path=request.url.path, **(context or {})
        )

    def page(
        self, request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
    ) -> HTMLResponse:
        response = HTMLResponse(self.html(request, template, context), status, headers=self.headers)
        self.finish(request, response)
        return response

    def finish(self, request: Request, response: Response) -> Response:
        """The session cookie, when this request made or changed the session."""
        visit: Visit = self.sessions.load(request)
        self.sessions.save(response, visit)
        return response
