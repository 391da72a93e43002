"""Webhooks: when a job reaches done or failed, POST its `separation/get` body (plus `hash`) as JSON."""

from __future__ import annotations

import logging
import time

import httpx

from openmvsep.settings import Settings

log = logging.getLogger("openmvsep.webhooks")
ATTEMPTS = 3


def send_webhook(url: str, payload: dict, settings: Settings) -> bool:
    """Best effort: a few tries with a short timeout; a receiver that is down never fails the job."""
    from openmvsep.service.remote import RemoteFetchError, check_public_url

    try:
        check_public_url(url, allow_private=settings.remote_allow_private)
    except RemoteFetchError as e:
        log.warning("webhook %s refused: %s", url, e)
        return False
    for attempt in range(ATTEMPTS):
        try:
            r = httpx.post(url, json=payload, timeout=10.0, follow_redirects=False)
            if r.status_code < 300:
                return True
            log.warning("webhook %s answered %s", url, r.status_code)
        except httpx.HTTPError as e:
            log.warning("webhook %s failed: %s", url, e)
        time.sleep(0.5 * 2**attempt)
    return False
