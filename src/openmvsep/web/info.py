"""The other pages of the navigation: algorithms (History, Account and API: web/account.py; the Quality Checker:
web/quality.py; News and Demo: web/gallery.py).

They read what the API's own endpoints read.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from openmvsep.web import picker
from openmvsep.web.context import web

router = APIRouter(include_in_schema=False)


@router.get("/algorithms")
def algorithms(request: Request) -> Response:
    w = web(request)
    groups = picker.groups(w.catalog)
    user = w.sessions.load(request).user
    install = None
    if user is not None and user.is_admin:  # what an admin can do about the ones that do not run
        missing = [a.sep_type for g in groups for a in g.algorithms if not a.runnable]
        install = picker.install_commands(w.services.weights_admin, missing)
    return w.render.page(request, "algorithms.html", {"groups": groups, "install": install})
