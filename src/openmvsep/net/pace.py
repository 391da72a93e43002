"""How long a download may take: an overall deadline and a minimum rate, so that a server trickling bytes
cannot hold a worker (the per-read timeout alone resets with every byte that arrives).

Both are checked whenever bytes arrive (and once the answer's headers are in); a server that sends nothing
at all is cut off by the per-read timeout, which the caller keeps within the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from openmvsep.net.errors import RemoteFetchError


def _describe_rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / 1024:.0f} KB/s" if bytes_per_second >= 1024 else f"{bytes_per_second:.0f} bytes/s"


@dataclass
class Pace:
    """deadline_seconds: the whole download; min_bytes_per_second (0: none), over each window_seconds."""

    deadline_seconds: float | None = None
    min_bytes_per_second: float = 0
    window_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def read_timeout(self, timeout: float) -> float:
        """The per-read timeout to use: never past the deadline."""
        return timeout if self.deadline_seconds is None else max(min(timeout, self.deadline_seconds), 0.1)

    def check(self) -> None:
        """RemoteFetchError once the deadline has passed."""
        if self.deadline_seconds is not None and self.clock() - self.started > self.deadline_seconds:
            raise RemoteFetchError(
                f"the download took longer than the {self.deadline_seconds:g} s limit; the remote server is too slow"
            )

    def paced(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """chunks, checked against the deadline and the minimum rate as each one arrives."""
        window_start, window_bytes = self.clock(), 0
        self.check()
        for chunk in chunks:
            self.check()
            window_bytes += len(chunk)
            now = self.clock()
            elapsed = now - window_start
            if self.min_bytes_per_second > 0 and elapsed >= self.window_seconds:
                if window_bytes < self.min_bytes_per_second * elapsed:
                    raise RemoteFetchError(
                        f"the remote server is too slow: {_describe_rate(window_bytes / elapsed)} over "
                        f"{elapsed:.0f} s, the minimum is {_describe_rate(self.min_bytes_per_second)}"
                    )
                window_start, window_bytes = now, 0
            yield chunk
