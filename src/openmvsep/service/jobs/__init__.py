"""Separation jobs, by concern: intake (checks and the one write), pricing, URL inputs, cancel/delete, and the
reads the views need. `JobService` is what the entry points hold; the parts are its attributes."""

from __future__ import annotations

from collections.abc import Callable

from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs.control import NOT_FOUND, JobControl
from openmvsep.service.jobs.intake import Intake, JobRequest, Upload, parse_output_format, parse_sep_type
from openmvsep.service.jobs.pricing import credits_for, is_premium
from openmvsep.service.jobs.queries import JobQueries, QueueView
from openmvsep.service.jobs.remote import RemoteIntake
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, RemoteJob

__all__ = [
    "NOT_FOUND",
    "JobRequest",
    "JobService",
    "QueueView",
    "Upload",
    "credits_for",
    "is_premium",
    "parse_output_format",
    "parse_sep_type",
]


class JobService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        settings: Settings,
        catalog: Catalog,
        notify: Callable[[], None] = lambda: None,
        registry: WeightsRegistry | None = None,
    ):
        self.notify = notify  # wakes the executor when new work is queued
        self.intake = Intake(db, storage, settings, catalog, registry)
        self.remote = RemoteIntake(self.intake)
        self.control = JobControl(db, storage)
        self.queries = JobQueries(db, settings.free_daily_jobs)

    def create(self, token: str | None, req: JobRequest, uploads: dict[str, Upload]) -> Job:
        job = self.intake.create(token, req, uploads)
        self.notify()
        return job

    def create_remote(self, token: str | None, req: JobRequest, url: str, remote_type: str) -> RemoteJob:
        remote = self.remote.create(token, req, url, remote_type)
        self.notify()
        return remote

    def finish_remote(self, remote_id: int, upload: Upload) -> Job:
        job = self.remote.finish(remote_id, upload)
        self.notify()
        return job

    def cancel(self, token: str | None, hash_value: str) -> None:
        self.control.cancel(token, hash_value)

    def delete(self, token: str | None, hash_value: str) -> None:
        self.control.delete(token, hash_value)
