"""`celery -A openmvsep.bootstrap.celery_worker worker` (started by `openmvsep worker`): a worker process whose
`Worker` is built by the composition root from the environment's settings."""

from __future__ import annotations

from openmvsep.bootstrap.services import Services
from openmvsep.runner.celery_worker import build_worker_app
from openmvsep.settings import Settings

settings = Settings()
app = build_worker_app(settings, lambda name: Services(settings).worker(name))
