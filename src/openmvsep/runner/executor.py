"""The executor interface: how queued work reaches workers. `local` is the embedded default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage


class Executor(Protocol):
    def start(self) -> None:
        """Start whatever runs work (worker processes, or nothing when workers live elsewhere)."""

    def notify(self) -> None:
        """New work was queued: wake a worker now instead of at its next poll."""

    def stop(self) -> None:
        """Stop the workers this executor started; their unfinished work returns to the queue."""


class NoExecutor:
    """Queue only: work waits for workers started elsewhere (or for a test to run it)."""

    def start(self) -> None: ...

    def notify(self) -> None: ...

    def stop(self) -> None: ...


def make_executor(settings: Settings, db: Database, storage: Storage, worker_main: Callable[..., None]) -> Executor:
    """The executor the settings name, over this process's database and storage. `worker_main` is the entry point
    of a local worker process (see LocalExecutor)."""
    if settings.executor == "local":
        if settings.workers <= 0:
            return NoExecutor()
        from openmvsep.runner.local import LocalExecutor

        return LocalExecutor(settings, db, storage, worker_main)
    if settings.executor == "celery":
        from openmvsep.runner.celery_executor import CeleryExecutor

        return CeleryExecutor(settings, db, storage)
    raise ValueError(f"unknown executor {settings.executor!r} (local or celery)")
