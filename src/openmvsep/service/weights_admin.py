"""Model weights as an admin sees them on the page: every registry entry, and downloads and checks that run in the
background of the API process while the page polls their progress.

The work itself is the engine's (WeightsRegistry.download and .verify), the same code `openmvsep models download`
and `models verify` run; this module only keeps track of the tasks. Tasks live in this process's memory: they are
a convenience for the admin who started them, and a download that a restart cut short resumes from its `.part`
file when started again. A running server sees finished weights within seconds, without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openmvsep.algorithms.preference import best_entries
from openmvsep.engine.weights import WeightEntry, WeightsError, WeightsRegistry
from openmvsep.service.errors import NotFound, ServiceError

ACTIONS = ("download", "verify")


@dataclass(frozen=True)
class WeightRow:
    """One registry entry with what this machine has of it."""

    name: str
    serves: tuple[str, ...]
    model_type: str
    filename: str
    present: bool
    pinned: str | None  # the sha256 it must have; None: any download is trusted only after `--pin`
    size: int | None  # registered size, else the local file's
    licence: str
    downloadable: bool
    members: tuple[str, ...]  # a bag's member entries (it has no file of its own)
    description: str


@dataclass
class WeightTask:
    """A download or verification of one entry, as the page shows it."""

    name: str
    action: str
    state: str = "running"  # running | done | failed
    done_bytes: int = 0
    total_bytes: int | None = None
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def percent(self) -> int | None:
        if not self.total_bytes:
            return None
        return min(100, int(100 * self.done_bytes / self.total_bytes))


class WeightsAdmin:
    def __init__(self, registry: WeightsRegistry, *, max_running: int = 2, keep_finished: int = 50):
        self.registry = registry
        self.max_running = max_running
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._tasks: list[WeightTask] = []  # newest first

    def install_command(self, sep_type: int) -> str | None:
        """The command that installs the best public model of `sep_type` (what `models download --sep-type` picks),
        or None when no public model in the registry serves it."""
        if not best_entries(self.registry, sep_type):
            return None
        return f"openmvsep models download --sep-type {sep_type}"

    def rows(self) -> list[WeightRow]:
        self.registry.refresh()
        return [self._row(entry) for entry in self.registry.select(None)]

    def _row(self, entry: WeightEntry) -> WeightRow:
        try:
            members = tuple(m.name for m in self.registry.members(entry).values())
            downloadable = self.registry.downloadable(entry)
        except WeightsError:  # a bag naming an unknown member: shown, never runnable
            members, downloadable = (), False
        present = self.registry.is_present(entry)
        size = entry.size
        if size is None and present and not members:
            size = self.registry.path(entry).stat().st_size
        return WeightRow(
            name=entry.name,
            serves=entry.serves,
            model_type=entry.model_type,
            filename=entry.filename,
            present=present,
            pinned=entry.sha256,
            size=size,
            licence=entry.licence,
            downloadable=downloadable,
            members=members,
            description=entry.description,
        )

    def tasks(self) -> list[WeightTask]:
        with self._lock:
            return list(self._tasks)

    def start(self, name: str, action: str) -> WeightTask:
        """Start downloading or verifying `name` in a background thread; the task to poll."""
        if action not in ACTIONS:
            raise ServiceError(f"Unknown action {action!r}: one of {', '.join(ACTIONS)}")
        try:
            entry = self.registry.get(name)
        except WeightsError as e:
            raise NotFound(str(e)) from None
        work = self._download if action == "download" else self._verify
        with self._lock:
            running = [t for t in self._tasks if t.state == "running"]
            if any(t.name == name for t in running):
                raise ServiceError(f"{name} already has a task running; wait for it to finish", status=409)
            if len(running) >= self.max_running:
                raise ServiceError(
                    f"{len(running)} weight tasks are running (the limit is {self.max_running}); wait for one",
                    status=429,
                )
            task = WeightTask(name, action, total_bytes=entry.size)
            self._tasks.insert(0, task)
            finished = [t for t in self._tasks if t.state != "running"]
            for old in finished[self.keep_finished :]:
                self._tasks.remove(old)
        threading.Thread(target=self._run, args=(task, work, entry), name=f"weights-{action}", daemon=True).start()
        return task

    def _run(self, task: WeightTask, work: Callable[[WeightTask, WeightEntry], str], entry: WeightEntry) -> None:
        try:
            message = work(task, entry)
            state = "done"
        except WeightsError as e:
            message, state = str(e), "failed"
        except Exception as e:  # a task must never die silently: the page shows why
            message, state = f"{type(e).__name__}: {e}", "failed"
        with self._lock:
            task.message, task.state, task.finished = message, state, time.time()

    def _download(self, task: WeightTask, entry: WeightEntry) -> str:
        def progress(done: int, total: int | None) -> None:
            task.done_bytes, task.total_bytes = done, total or task.total_bytes

        path = self.registry.download(entry, progress=progress)
        if entry.sha256 or self.registry.members(entry):
            return f"downloaded to {path} and verified"
        return (
            f"downloaded to {path}; it is not pinned and will not load until you run "
            f"`openmvsep models download {entry.name} --pin` (trusting this download) or add its sha256"
        )

    def _verify(self, task: WeightTask, entry: WeightEntry) -> str:
        checked = []
        for target in self.registry.members(entry).values() or [entry]:
            digest = self.registry.verify(target)  # a missing file raises, naming the command that fetches it
            task.done_bytes += self.registry.path(target).stat().st_size
            checked.append(f"{target.name}: ok ({digest}{'' if target.sha256 else ', not pinned'})")
        return "; ".join(checked)
