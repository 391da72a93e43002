"""Webhooks: when a job reaches done or failed, POST its `separation/get` body (plus `hash`) as JSON."""

from __future__ import annotations

import logging
import time

from openmvsep.net import AddressRefused, RemoteFetchError, post_json
from openmvsep.settings import Settings

log = logging.getLogger("openmvsep.webhooks")
ATTEMPTS = 3


def send_webhook(url: str, payload: dict, settings: Settings) -> bool:
    """Best effort: a few tries with a short timeout; a receiver that is down never fails the job.

    The receiver gets the same address checks as URL inputs (no private addresses unless allowed).
    """
    for attempt in range(ATTEMPTS):
        try:
            status = post_json(url, payload, timeout=10.0, allow_private=settings.remote_allow_private)
            if status < 300:
                return True
            log.warning("webhook %s answered %s", url, status)
        except AddressRefused as e:  # the same address would be refused on every try
            log.warning("webhook %s failed: %s", url, e)
            return False
        except RemoteFetchError as e:
            log.warning("webhook %s failed: %s", url, e)
        time.sleep(0.5 * 2**attempt)
    return False
