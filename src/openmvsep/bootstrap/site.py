"""The app `serve` runs: MVSep's API with the web page mounted beside it (both over one Services)."""

from __future__ import annotations

from fastapi import FastAPI

from openmvsep.api.app import create_app
from openmvsep.bootstrap.services import Services
from openmvsep.web import WebPages


def create_site(services: Services) -> FastAPI:
    return create_app(services, pages=WebPages(services))
