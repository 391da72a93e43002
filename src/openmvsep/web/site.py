"""Mounting the page on the API's app: the composition root hands `WebPages` to `api.app.create_app`."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from fastapi import FastAPI

from openmvsep.web import account, admin, assets, auth, gallery, info, jobs, links, player, quality, separate
from openmvsep.web.context import WebContext, WebServices
from openmvsep.web.render import Renderer
from openmvsep.web.session import Sessions


class WebPages:
    def __init__(self, services: WebServices):
        self.services = services

    @property
    def upload_limits(self) -> Mapping[str, int]:
        """The page's routes that take files, and how large a body each may have."""
        settings = self.services.settings
        return {separate.CREATE_PATH: settings.max_upload_bytes, quality.SUBMIT_PATH: settings.qc_max_upload_bytes}

    def mount(self, app: FastAPI) -> None:
        settings = self.services.settings
        sessions = Sessions(settings, lambda user_id: self.services.accounts.signed_in(user_id))
        media: tuple[str, ...] = ()
        if settings.presigned_urls and settings.s3_endpoint:  # players and downloads then load from the store
            parts = urlsplit(settings.s3_endpoint)
            media = (f"{parts.scheme}://{parts.netloc}",)
        app.state.web = WebContext(self.services, Renderer(sessions, media_origins=media), sessions)
        app.add_route(assets.PREFIX + "{name:path}", assets.serve, methods=["GET"], include_in_schema=False)
        for router in (
            separate.router,
            auth.router,
            jobs.router,
            account.router,
            quality.router,
            gallery.router,
            info.router,
            admin.router,
            player.router,
            links.router,
        ):
            app.include_router(router)
