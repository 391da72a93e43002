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
    return w.render.page(request, "algorithms.html", {"groups": picker.groups(w.catalog)})
