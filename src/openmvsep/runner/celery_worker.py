"""The Celery worker side: `celery -A openmvsep.runner.celery_worker worker` (started by `openmvsep worker`).

Each worker process keeps one `Worker` for its whole life, so models stay loaded between jobs.
"""

from __future__ import annotations

import logging
import os
import socket

from celery.signals import worker_ready

from openmvsep.runner.celery_app import TASK, make_celery, top_up
from openmvsep.settings import Settings

log = logging.getLogger("openmvsep.celery")

settings = Settings()
app = make_celery(settings)
_worker = None


def worker_name() -> str:
    """The name a process claims work under (leases, and who to blame when it dies)."""
    return os.environ.get("OPENMVSEP_WORKER_NAME") or f"celery:{socket.gethostname()}:{os.getpid()}"


def _this_worker():  # noqa: ANN202
    global _worker
    if _worker is None:
        from openmvsep.runner.worker import Worker

        _worker = Worker(settings, worker_name())
    return _worker


@worker_ready.connect
def _load_before_the_first_message(**_) -> None:  # noqa: ANN003
    """The catalog and engine runtime load once, before this process takes work (the solo pool runs tasks here)."""
    _this_worker()


@app.task(name=TASK)
def work() -> None:
    worker = _this_worker()
    worker.run_next()
    # The work may have queued more (a merge, a retry); give it its message now rather than at the next top-up.
    try:
        top_up(app, worker.db, settings.celery_queue)
    except Exception:  # the API processes' periodic top-up sends it instead
        log.exception("top-up after work failed")
