"""What the routes reach: the process's services and the presenters, hung on app.state at start-up.

Routes are thin: they parse, call a service, and present. They never open a database session or build a
service themselves; the composition root (openmvsep.bootstrap) builds everything once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from openmvsep.presenters.jobs import JobPresenter
from openmvsep.presenters.links import Links, checked_base
from openmvsep.service.accounts import AccountService
from openmvsep.service.catalog import Catalog
from openmvsep.service.idempotency import IdempotencyKeys
from openmvsep.service.jobs import JobService
from openmvsep.service.news import NewsService
from openmvsep.service.quality import QualityService
from openmvsep.service.readings import ReadingsService
from openmvsep.service.webhooks import WebhookService
from openmvsep.settings import Settings
from openmvsep.store.files import Storage


class AppServices(Protocol):
    """What an API process needs of the composition root (bootstrap.Services provides it).

    The services are read-only properties: the API only reads them, and Services builds them lazily.
    """

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
    def idempotency(self) -> IdempotencyKeys: ...

    @property
    def news(self) -> NewsService: ...

    @property
    def quality(self) -> QualityService: ...

    @property
    def readings(self) -> ReadingsService: ...

    @property
    def webhooks(self) -> WebhookService: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def database_answers(self) -> None: ...


@dataclass
class AppContext:
    services: AppServices
    links: Links
    present: JobPresenter

    @classmethod
    def of(cls, services: AppServices) -> AppContext:
        links = Links(services.settings, services.storage)
        return cls(services, links, JobPresenter(services.catalog, links))

    def quality_at(self, request: Request) -> QualityService:
        """The Quality Checker service building its links for this request's address (as presenter())."""
        return self.quality if self.settings.public_url else self.quality.at(request_base(request))

    def presenter(self, request: Request) -> JobPresenter:
        """The presenter whose links name the address this request reached (the configured public URL, when there
        is one, wins: then nothing is read from the request)."""
        return self.present if self.settings.public_url else self.present.at(request_base(request))

    # The services routes use most, by name.
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
    def quality(self) -> QualityService:
        return self.services.quality

    @property
    def idempotency(self) -> IdempotencyKeys:
        return self.services.idempotency

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def webhooks(self) -> WebhookService:
        return self.services.webhooks


def request_base(request: Request) -> str | None:
    """Where the client reached this server: scheme, Host and path prefix (api/forwarded.py applies trusted
    proxies' headers first), checked (None: not usable for links)."""
    return checked_base(str(request.base_url))


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx
