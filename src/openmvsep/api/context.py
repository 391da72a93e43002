"""What the routes reach: one object built at start-up, hung on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from openmvsep.runner.executor import Executor
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs import JobService
from openmvsep.service.quality import QualityService
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: Storage
    catalog: Catalog
    jobs: JobService
    quality: QualityService
    executor: Executor


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx
