"""Child processes that do not outlive their parent: a worker left running after its supervisor died (killed,
or by the OOM killer) would go on claiming work under a name nobody watches, beside the workers of the
supervisor's next start."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (best effort elsewhere)."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def parent_gone(parent_pid: int) -> bool:
    """The parent exited (this process was re-parented) — the check for platforms without the signal."""
    return os.getppid() != parent_pid
