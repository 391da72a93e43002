"""A Python client for any server that speaks MVSep's API (mvsep.com, its mirrors, openmvsep).

Sync (`MVSepClient`) and asyncio (`AsyncMVSepClient`) flavours of the same calls; typed answers (`models`); every
refusal raised as an `MVSepError` carrying the server's own message (`Unavailable` when another try later may pass,
`TooManyJobs` when the plan runs no more jobs at once); 429 retried after `Retry-After`, 5xx and broken
connections retried for reads only; resumable, size-checked downloads with progress callbacks; `wait()` that
follows a job to done/failed.

It is standalone: it imports nothing of the server, so it can be vendored or used against mvsep.com alone.
"""

from .aio import AsyncMVSepClient
from .calls import RetryPolicy
from .errors import DownloadError, JobFailed, MVSepError, NotFound, RateLimited, TooManyJobs, Unavailable
from .models import (
    ACTIVE_STATUSES,
    Algorithm,
    AlgorithmField,
    CreatedJob,
    DemoItem,
    HistoryItem,
    JobStatus,
    Message,
    NewsItem,
    OutputFile,
    QcAdded,
    QcEntry,
    QcLeaderboard,
    QueueInfo,
    RemoteStatus,
    User,
)
from .sync import MVSepClient

__all__ = [
    "ACTIVE_STATUSES",
    "Algorithm",
    "AlgorithmField",
    "AsyncMVSepClient",
    "CreatedJob",
    "DemoItem",
    "DownloadError",
    "HistoryItem",
    "JobFailed",
    "JobStatus",
    "MVSepClient",
    "MVSepError",
    "Message",
    "NewsItem",
    "NotFound",
    "OutputFile",
    "QcAdded",
    "QcEntry",
    "QcLeaderboard",
    "QueueInfo",
    "RateLimited",
    "RemoteStatus",
    "RetryPolicy",
    "TooManyJobs",
    "Unavailable",
    "User",
]
