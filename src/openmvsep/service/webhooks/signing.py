"""Signing deliveries the Standard Webhooks way, with the `standardwebhooks` package.

Every delivery carries `webhook-id` (the event's id: the same on every attempt and on a redelivery, so a receiver
can drop duplicates), `webhook-timestamp` (Unix seconds of this attempt: a retry a day later is signed afresh,
within any receiver's tolerance) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for
each secret in force, space-separated. After a rotation the previous secret stays in force for a grace window
(`webhook_secret_grace_seconds`), so a receiver still holding it keeps verifying while it switches.

Secrets are `whsec_` + base64 of 32 random bytes (the scheme asks for 24 to 64). They are kept as they are: an
HMAC key cannot be stored hashed, since the server needs it to sign.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from openmvsep.store.models import RotatingSecret, WebhookSecret

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def masked(secret: str) -> str:
    """What lists show: enough to tell two secrets apart, too little to sign with."""
    return f"{PREFIX}…{secret[-4:]}"


def in_force(row: RotatingSecret, now: datetime) -> tuple[str, ...]:
    """The secrets a delivery is signed with now: the current one, and the previous one during its grace."""
    previous = row.previous_secret
    if previous and row.previous_secret_until is not None and row.previous_secret_until > now:
        return (row.secret, previous)
    return (row.secret,)


def rotate(row: RotatingSecret, now: datetime, grace_seconds: float) -> None:
    """A new current secret; the one it replaces signs too until the grace ends (a second rotation within the
    grace retires the oldest at once: at most two are ever in force)."""
    if grace_seconds > 0:
        row.previous_secret, row.previous_secret_until = row.secret, now + timedelta(seconds=grace_seconds)
    else:
        row.previous_secret, row.previous_secret_until = None, None
    row.secret = new_secret()


def signature_headers(secrets_in_force: tuple[str, ...], message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (the exact bytes sent) at `at` (UTC; naive means UTC, as
    everywhere in this server and in the package's own `sign`)."""
    text = body.decode()
    signatures = " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=at, data=text) for secret in secrets_in_force
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.replace(tzinfo=timezone.utc).timestamp())),
        "webhook-signature": signatures,
    }


def account_secret(s: Session, user_id: int, now: datetime) -> WebhookSecret:
    """The user's account signing secret, made now if the user has none yet (it signs their create's
    `webhook_url` deliveries). Two makers at once: one insert wins, the other reads it."""
    row = s.get(WebhookSecret, user_id)
    if row is not None:
        return row
    try:
        with s.begin_nested():
            row = WebhookSecret(user_id=user_id, secret=new_secret(), created_at=now, updated_at=now)
            s.add(row)
    except IntegrityError:
        row = s.get(WebhookSecret, user_id, populate_existing=True)
        assert row is not None  # the insert that won is committed: ours waited for it
    return row
