"""The Celery worker side: the task each `openmvsep worker` process runs, over a `Worker` it keeps for its whole
life (so models stay loaded between jobs). The process's entry module is openmvsep.bootstrap.celery_worker,
which builds the worker from the composition root."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Callable

from celery import Celery
from celery.signals import setup_logging, worker_ready

from openmvsep.logs import configure_logging
from openmvsep.runner.celery_app import TASK, make_celery, top_up
from openmvsep.runner.worker import Worker
from openmvsep.settings import Settings

log = logging.getLogger("openmvsep.celery")


def worker_name() -> str:
    """The name a process claims work under (leases, and who to blame when it dies)."""
    return os.environ.get("OPENMVSEP_WORKER_NAME") or f"celery:{socket.gethostname()}:{os.getpid()}"


def build_worker_app(settings: Settings, make_worker: Callable[[str], Worker]) -> Celery:
    """The Celery app of a worker process, with its one task."""
    app = make_celery(settings)
    kept: list[Worker] = []

    def this_worker() -> Worker:
        if not kept:
            kept.append(make_worker(worker_name()))
        return kept[0]

    @setup_logging.connect(weak=False)
    def _our_logging(**_) -> None:
        """Celery would put its own handler and format on the root logger; with a receiver here it leaves that to
        us."""
        multiprocessing.current_process().name = worker_name()  # each log line names the worker (its processName)
        configure_logging(settings)

    @worker_ready.connect(weak=False)
    def _load_before_the_first_message(**_) -> None:
        """The catalog and engine runtime load once, before this process takes work (the solo pool runs tasks
        here)."""
        this_worker()

    @app.task(name=TASK)
    def work() -> None:
        worker = this_worker()
        worker.run_next()
        # The work may have queued more (a merge, a retry); give it its message now rather than at the next top-up.
        try:
            top_up(app, worker.db, settings.celery_queue)
        except Exception:  # the API processes' periodic top-up sends it instead
            log.exception("top-up after work failed")

    return app
