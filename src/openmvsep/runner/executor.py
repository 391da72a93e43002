"""The executor interface: how queued work reaches workers. `local` is the embedded default."""

from __future__ import annotations

from typing import Protocol

from openmvsep.settings import Settings


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


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "local":
        if settings.workers <= 0:
            return NoExecutor()
        from openmvsep.runner.local import LocalExecutor

        return LocalExecutor(settings)
    if settings.executor == "celery":
        from openmvsep.runner.celery_executor import CeleryExecutor

        return CeleryExecutor(settings)
    raise ValueError(f"unknown executor {settings.executor!r} (local or celery)")
