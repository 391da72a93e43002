"""The composition root (services.py) and the entry modules of the worker processes it starts."""

from openmvsep.bootstrap.services import NoDatabase, Services, run_local_worker

__all__ = ["NoDatabase", "Services", "run_local_worker"]
