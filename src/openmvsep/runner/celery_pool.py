"""`openmvsep worker`: Celery worker processes on this machine, one per GPU (or N on the CPU), kept alive.

Each process is a plain `celery worker` with the solo pool (the task runs in the process that keeps the
models loaded) and its own work name. When one dies, its work goes back to the queue at once (rather than
when its lease runs out) and a new one takes its place.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass

from openmvsep.runner.celery_app import make_celery, top_up
from openmvsep.runner.lifetime import die_with_parent
from openmvsep.service import lifecycle
from openmvsep.settings import Settings
from openmvsep.store.db import Database

log = logging.getLogger("openmvsep.worker")


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: str | None  # the CUDA device this process sees as its only one; None: CPU (or the settings' device)


def plan_slots(gpus: list[str] | None, concurrency: int) -> list[Slot]:
    """`concurrency` processes per GPU, or on the CPU when there are none."""
    devices: list[str | None] = list(gpus) if gpus else [None]
    return [Slot(i, gpu) for i, gpu in enumerate(g for g in devices for _ in range(concurrency))]


class CeleryWorkerPool:
    def __init__(self, settings: Settings, slots: list[Slot], *, loglevel: str = "INFO"):
        self.settings = settings
        self.slots = slots
        self.loglevel = loglevel
        self.boot = uuid.uuid4().hex[:8]
        self.procs: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()

    def name(self, slot: Slot) -> str:
        return f"celery:{socket.gethostname()}:{self.boot}:{slot.index}"

    def _env(self, slot: Slot) -> dict[str, str]:
        env = dict(os.environ)
        # The children read their settings from the environment: hand down what the command line set.
        for field, value in self.settings.model_dump(mode="json").items():
            if field in self.settings.model_fields_set:
                env[f"OPENMVSEP_{field.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env["OPENMVSEP_WORKER_NAME"] = self.name(slot)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
            env.setdefault("OPENMVSEP_DEVICE", "cuda")
        return env

    def _spawn(self, slot: Slot) -> None:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "openmvsep.bootstrap.celery_worker",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={self.settings.celery_queue}",
            f"--hostname={self.name(slot)}@%h",
            f"--loglevel={self.loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
        # SIGTERM when this supervisor dies: Celery's warm shutdown, the job in hand finishes first.
        self.procs[slot.index] = subprocess.Popen(cmd, env=self._env(slot), preexec_fn=die_with_parent)
        log.info(
            "worker %s started (pid %s, %s)",
            self.name(slot),
            self.procs[slot.index].pid,
            f"GPU {slot.gpu}" if slot.gpu is not None else "CPU",
        )

    def run(self, db: Database) -> None:
        """Start the processes and keep them running until SIGINT/SIGTERM; `db` to hand back what a dead one
        held."""
        app = make_celery(self.settings)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        for slot in self.slots:
            self._spawn(slot)
        try:
            while not self._stop.wait(1.0):
                for slot in self.slots:
                    proc = self.procs[slot.index]
                    if proc.poll() is None:
                        continue
                    log.warning(
                        "worker %s exited (code %s); its work goes back to the queue", self.name(slot), proc.returncode
                    )
                    self._hand_back(db, app, [self.name(slot)], forgive=False)
                    self._spawn(slot)
        finally:
            self._shutdown(db, app)

    def _shutdown(self, db: Database, app) -> None:
        # Celery's warm shutdown: a process finishes the job in hand, then exits.
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=self.settings.worker_shutdown_seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._hand_back(db, app, [self.name(slot) for slot in self.slots], forgive=True)

    def _hand_back(self, db: Database, app, names: list[str], *, forgive: bool) -> None:
        """The work these processes held goes back to the queue now, with its messages."""
        try:
            if lifecycle.release_lost_work(db, self.settings.max_attempts, workers=names, forgive=forgive):
                top_up(app, db, self.settings.celery_queue)
        except Exception:  # the leases run out instead; an API process takes the work back then
            log.exception("could not hand back the work of %s", ", ".join(names))
