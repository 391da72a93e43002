"""The bodies webhook receivers get.

A create's `webhook_url` gets MVSep's body, byte for byte as ever: the `separation/get` answer with `hash` first.
An endpoint gets the answer of the API route that reads the same thing, with the Standard Webhooks `type` and
`timestamp` (the event's time, ISO 8601 UTC) first: a separation's is the `webhook_url` body (so a receiver written
for MVSep reads it unchanged), a Quality Checker entry's is the `quality_checker/entry` answer, and a test event's
says what it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def mvsep_body(job_hash: str, status: dict[str, Any]) -> dict[str, Any]:
    """The `webhook_url` body: `separation/get`'s answer with the job's hash."""
    return {"hash": job_hash, **status}


def event_body(event_type: str, created_at: datetime, answer: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's body: `answer` with the event's type and time first."""
    return {"type": event_type, "timestamp": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), **answer}


def entry_answer(entry: dict[str, Any]) -> dict[str, Any]:
    """What `quality_checker/entry` answers for an entry."""
    return {"success": True, "data": entry}


def test_event_answer(endpoint_id: int | None) -> dict[str, Any]:
    return {
        "success": True,
        "data": {"message": "A test event: this endpoint receives and verifies webhooks.", "endpoint_id": endpoint_id},
    }
