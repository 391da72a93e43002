"""Webhooks: events POSTed to receivers, signed the Standard Webhooks way, from a durable outbox.

Events: `separation.done` and `separation.failed` when a job ends, `quality_checker.scored` when a Quality Checker
entry has its leaderboard scores, and `webhook.test` on request. Receivers: the `webhook_url` of a create (MVSep's
body, the `separation/get` answer plus `hash`, exactly as before), and each of a user's endpoints (the same kind of
body with `type` and `timestamp` added).

- events.py: what becomes an event, written to the outbox in the transaction that makes it happen (a job's end,
  an entry's scores), so an event is never lost nor sent for something that did not happen.
- outbox.py: senders in the API processes (runner/webhooks.py; never a separation worker) claim due events under
  a lease, and every attempt is logged; failures are retried on a schedule reaching a day.
- signing.py: secrets (`whsec_…`, per endpoint, and one per account for `webhook_url`) and the three headers.
- endpoints.py: what a user does with their endpoints, secrets, test events, redeliveries and the log.
- urls.py: the address rule of URL inputs, checked when a receiver is named and again at every attempt.
"""

from openmvsep.service.webhooks.endpoints import WebhookService
from openmvsep.service.webhooks.events import (
    QUALITY_SCORED,
    SEPARATION_DONE,
    SEPARATION_FAILED,
    SUBSCRIBABLE,
    TEST,
    queue_entry_scored,
    queue_job_end,
)
from openmvsep.service.webhooks.outbox import Delivery, RetrySchedule, claim_due, record_delivered, record_failure
from openmvsep.service.webhooks.signing import signature_headers
from openmvsep.service.webhooks.urls import check_webhook_url

__all__ = [
    "QUALITY_SCORED",
    "SEPARATION_DONE",
    "SEPARATION_FAILED",
    "SUBSCRIBABLE",
    "TEST",
    "Delivery",
    "RetrySchedule",
    "WebhookService",
    "check_webhook_url",
    "claim_due",
    "queue_entry_scored",
    "queue_job_end",
    "record_delivered",
    "record_failure",
    "signature_headers",
]
