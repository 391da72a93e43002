"""What the pages reach: the process's services, the renderer and the session codec, hung on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from openmvsep.presenters.jobs import JobPresenter
from openmvsep.presenters.links import Links, checked_base
from openmvsep.service.accounts import AccountService
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs import JobService
from openmvsep.service.news import NewsService
from openmvsep.service.quality import QualityService
from openmvsep.service.readings import ReadingsService
from openmvsep.service.weights_admin import WeightsAdmin
from openmvsep.settings import Settings
from openmvsep.store.files import Storage
from openmvsep.web.render import Renderer
from openmvsep.web.session import Sessions


class WebServices(Protocol):
    """What the pages need of the composition root (bootstrap.Services provides it); built lazily there."""

    @property
    def settings(self) -> Settings: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def jobs(self) -> JobService: ...

    @property
    def accounts(self) -> AccountService: ...

    @property
    def news(self) -> NewsService: ...

    @property
    def quality(self) -> QualityService: ...

    @property
    def readings(self) -> ReadingsService: ...

    @property
    def weights_admin(self) -> WeightsAdmin: ...


@dataclass
class WebContext:
    services: WebServices
    render: Renderer
    sessions: Sessions

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def catalog(self) -> Catalog:
        return self.services.catalog

    @property
    def jobs(self) -> JobService:
        return self.services.jobs

    @property
    def accounts(self) -> AccountService:
        return self.services.accounts

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def present(self) -> JobPresenter:
        """MVSep's status shapes: the page says what `separation/get` says, from the same code."""
        return JobPresenter(self.catalog, Links(self.settings, self.storage))

    def links(self, request: Request) -> Links:
        """Links naming the address this request reached (the configured public URL, when there is one)."""
        return Links(self.settings, self.storage, checked_base(str(request.base_url)))


def web(request: Request) -> WebContext:
    return request.app.state.web
