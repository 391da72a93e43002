"""The local executor: worker processes on this machine, watched by a supervisor thread.

The supervisor restarts a worker that died and hands its work back to the queue at once; it also takes
back work held by workers of an earlier run of the server (a restart), and runs the janitor.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from openmvsep.runner.housekeeping import Housekeeping
from openmvsep.runner.janitor import sweep_failed
from openmvsep.runner.lifetime import die_with_parent, parent_gone
from openmvsep.service import lifecycle
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage

if TYPE_CHECKING:
    from openmvsep.runner.worker import Worker

log = logging.getLogger("openmvsep.executor")


def worker_name_prefix() -> str:
    return f"local:{socket.gethostname()}:"


def worker_loop(make_worker: Callable[[], Worker], settings: Settings, wake, server_pid: int) -> None:
    """A worker process's life: claim, run, and sleep until woken or the poll interval passes, until the server
    that started it is gone."""
    die_with_parent()
    if parent_gone(server_pid):  # it died before the line above took effect
        return
    worker = make_worker()
    while not parent_gone(server_pid):
        try:
            if worker.run_next():
                continue
        except Exception:
            log.exception("worker loop error")
            time.sleep(1)
        wake.wait(settings.worker_poll_seconds)
        wake.clear()


class LocalExecutor:
    def __init__(self, settings: Settings, db: Database, storage: Storage, worker_main: Callable[..., None]):
        """`worker_main(settings_json, name, wake, server_pid)`: the entry point of each worker process, given by
        the composition root (a spawned process starts from nothing and builds its own services)."""
        self.settings = settings
        self.worker_main = worker_main
        self.boot = uuid.uuid4().hex[:8]
        self.ctx = mp.get_context("spawn")  # no forked copies of the server's threads and sockets
        self.wake = self.ctx.Event()
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.db, self.storage = db, storage

    def _name(self, index: int) -> str:
        return f"{worker_name_prefix()}{self.boot}:{index}"

    def start(self) -> None:
        # Work held by this host's workers from an earlier run died with them.
        self._release_previous_boots()
        for i in range(self.settings.workers):
            self._spawn(i)
        self._supervisor = threading.Thread(target=self._supervise, name="openmvsep-supervisor", daemon=True)
        self._supervisor.start()

    def _release_previous_boots(self) -> None:
        prefix = worker_name_prefix()
        held = lifecycle.workers_holding(self.db, prefix)
        stale = [w for w in held if not w.startswith(f"{prefix}{self.boot}:")]
        if stale:
            n = lifecycle.release_lost_work(self.db, self.settings.max_attempts, workers=stale)
            log.info("took back %d work item(s) from an earlier run", n)

    def _spawn(self, index: int) -> None:
        name = self._name(index)
        proc = self.ctx.Process(
            target=self.worker_main,
            name=f"openmvsep-worker-{index}",
            daemon=True,
            args=(self.settings.model_dump_json(), name, self.wake, os.getpid()),
        )
        proc.start()
        self.procs[name] = proc

    def _supervise(self) -> None:
        housekeeping = Housekeeping(self.db, self.storage, self.settings)
        while not self._stop.wait(1.0):
            for name, proc in list(self.procs.items()):
                if not proc.is_alive() and not self._stop.is_set():
                    log.warning("worker %s exited (code %s); its work goes back to the queue", name, proc.exitcode)
                    if lifecycle.release_lost_work(self.db, self.settings.max_attempts, workers=[name]):
                        sweep_failed(self.db, self.storage)  # a job it failed for good keeps no input
                    del self.procs[name]
                    self._spawn(int(name.rsplit(":", 1)[1]))
                    self.wake.set()
            try:
                if housekeeping.run_once():
                    self.wake.set()
            except Exception:
                log.exception("supervisor error")

    def notify(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self._stop.set()
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.join(timeout=10)
        self.procs.clear()
        # What they were running goes back to the queue now rather than after the lease.
        lifecycle.release_lost_work(
            self.db, self.settings.max_attempts, forgive=True, worker_prefix=f"{worker_name_prefix()}{self.boot}:"
        )
