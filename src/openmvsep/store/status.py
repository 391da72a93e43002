"""The states a row of each kind of work can be in (stored as their string values).

DESIGN.md draws the job's state machine; `service/lifecycle.py` is the one place that moves rows between
these states. The values are MVSep's words where MVSep shows them (`separation/get` answers with a job's).
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


class JobStatus(StrEnum):
    """A separation: waiting -> processing -> done, or distributing -> merging -> done for chunked inputs."""

    WAITING = "waiting"
    PROCESSING = "processing"
    DISTRIBUTING = "distributing"
    MERGING = "merging"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkStatus(StrEnum):
    """A work item (a whole job, a chunk, a merge)."""

    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RemoteStatus(StrEnum):
    """A URL input being downloaded before its job exists."""

    WAITING = "waiting"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class EntryStatus(StrEnum):
    """A Quality Checker entry: waiting -> scoring -> scored (on the leaderboard) -> measuring -> done."""

    WAITING = "waiting"
    SCORING = "scoring"
    SCORED = "scored"
    MEASURING = "measuring"
    DONE = "done"
    FAILED = "failed"


class WebhookStatus(StrEnum):
    """An outbox event: pending (due at next_attempt_at) -> sending (leased) -> delivered, or failed for good."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


JOB_FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
JOB_ACTIVE = (JobStatus.WAITING, JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING)
