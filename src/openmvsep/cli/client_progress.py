"""What `openmvsep client separate` shows while it works: one bar per input on a terminal (upload bytes, place in
the queue, the server's progress and time left, download bytes), and plain lines otherwise.

Plain lines are for logs and scripts: one line each time an input enters a phase or its state changes in words
("uploading (1.2 MB)", "waiting (place 2 of 5)", "processing 40%", "downloading 4 file(s) (9.6 MB)"), never the
bytes as they move, and a percentage only in steps of ten.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from openmvsep.client import JobStatus

PLAIN_PERCENT_STEP = 10


def describe(status: JobStatus, *, percent_step: int = 1) -> str:
    """A job's state in words: its place in the queue, chunks, and what an openmvsep server adds (progress, time
    left); a server that sends neither (mvsep.com) gets the words without them."""
    if status.status == "waiting" and status.current_order is not None:
        text = f"waiting (place {status.current_order} of {status.queue_count})"
    elif status.all_chunks:
        text = f"{status.status} ({status.finished_chunks or 0}/{status.all_chunks} chunks)"
    else:
        text = status.status
    if status.active and status.progress is not None:
        text += f" {status.progress // percent_step * percent_step}%"
    if status.active and status.eta_seconds is not None and percent_step == 1:
        text += f", {duration(status.eta_seconds)} left"
    return text


def duration(seconds: int) -> str:
    if seconds < 90:
        return f"about {max(seconds, 1)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


class Board:
    """The display of a run: a live set of bars (`live`) or plain lines on `out`; errors go to `err` either way."""

    def __init__(self, out: Console, err: Console, *, live: bool):
        self.out = out
        self.err = err
        self.live = live
        self._lock = threading.Lock()
        self.bars = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=28),
                TextColumn("{task.fields[phase]}"),
                console=out,
                transient=False,
            )
            if live
            else None
        )

    def __enter__(self) -> Board:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()

    def row(self, name: str) -> Row:
        task = None
        if self.bars is not None:
            task = self.bars.add_task(escape(name), total=None, phase="not started yet", start=True)
        return Row(self, name, task)

    def line(self, text: str) -> None:
        with self._lock:
            (self.bars.console if self.bars is not None else self.out).print(text, markup=False)

    def error(self, text: str) -> None:
        with self._lock:
            self.err.print(text, style="red", markup=False)


class Row:
    """One input's bar (or lines). Called from the input's worker thread."""

    def __init__(self, board: Board, name: str, task: TaskID | None):
        self.board = board
        self.name = name
        self.task = task
        self._said = ""  # the last plain line, so a state is told once

    def _show(self, phase: str, plain: str | None, *, total: float | None = None, completed: float = 0) -> None:
        bars = self.board.bars
        if bars is not None and self.task is not None:
            bars.update(self.task, phase=escape(phase), total=total, completed=completed)
            if total is None:  # update() leaves the total as it was; None is a bar that pulses: not known
                next(t for t in bars.tasks if t.id == self.task).total = None
        elif plain is not None and plain != self._said:
            self._said = plain
            self.board.line(f"{self.name}: {plain}")

    def uploading(self, sent: int, total: int) -> None:
        self._show(
            f"uploading {decimal(sent)} of {decimal(total)}", f"uploading ({decimal(total)})", total=total or 1,
            completed=sent,
        )  # fmt: skip

    def status(self, status: JobStatus) -> None:
        total: float | None
        if status.done:
            total, completed = 1.0, 1.0
        elif status.progress is not None:
            total, completed = 100.0, float(status.progress)
        elif status.all_chunks:
            total, completed = float(status.all_chunks), float(status.finished_chunks or 0)
        else:
            total, completed = None, 0.0
        plain = describe(status, percent_step=PLAIN_PERCENT_STEP)
        self._show(describe(status), plain, total=total, completed=completed)

    def downloading(self, have: int, total: int | None, count: int) -> None:
        size = f" ({decimal(total)})" if total else ""
        live = f"downloading {decimal(have)}" + (f" of {decimal(total)}" if total else "")
        self._show(live, f"downloading {count} file(s){size}", total=total, completed=have)

    def note(self, text: str) -> None:
        """A state told in words only: waiting for a slot, the server unreachable for a while."""
        self._show(text, text)

    def finished(self, text: str) -> None:
        bars = self.board.bars
        if bars is not None and self.task is not None:
            bars.update(self.task, phase=escape(text), total=1, completed=1)
        else:
            self.board.line(f"{self.name}: {text}")

    def failed(self, text: str) -> None:
        bars = self.board.bars
        if bars is not None and self.task is not None:
            bars.update(self.task, phase=escape("failed (see above)"))
        self.board.error(f"{self.name}: {text}")
