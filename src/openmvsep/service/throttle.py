"""Failed-login throttling per account and per client address, kept in the database so every API process sees it.

After `limit` failures of one key, each further failure blocks the key for a wait that doubles from the base up to
the maximum; a blocked key is answered 429 with Retry-After before any password is verified, so a flood costs one
indexed read per try. A count with no failure for `memory` seconds starts over, and such rows are pruned.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from openmvsep.service.errors import ServiceError
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import LoginThrottle


class Throttled(ServiceError):
    """Too many failed logins: answered 429 with a Retry-After header."""

    status = 429

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed login attempts. Please try again in {retry_after} seconds.")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Key:
    key: str
    limit: int  # failures before waits begin; 0: never throttled


def account_key(email: str, settings: Settings) -> Key:
    # A digest, not the address: unknown addresses typed by strangers are not stored in clear.
    return Key("account:" + hashlib.sha256(email.encode()).hexdigest()[:64], settings.login_account_failures)


def address_key(address: str, settings: Settings) -> Key:
    return Key("address:" + address[:64], settings.login_address_failures)


def check(db: Database, keys: list[Key]) -> None:
    """Raises Throttled while any of the keys is blocked (a read: takes no write lock)."""
    live = [k.key for k in keys if k.limit > 0]
    if not live:
        return
    now = utcnow()
    with db.reader() as s:
        until = s.scalar(
            select(LoginThrottle.blocked_until)
            .where(LoginThrottle.key.in_(live), LoginThrottle.blocked_until > now)
            .order_by(LoginThrottle.blocked_until.desc())
            .limit(1)
        )
    if until is not None:
        raise Throttled(max(1, math.ceil((until - now).total_seconds())))


def _insert_absent(s: Session, key: str, now: datetime) -> None:
    """The row of `key` exists afterwards, whoever made it (two processes may fail the same account at once)."""
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    s.execute(
        insert(LoginThrottle)
        .values(key=key, failures=0, last_failure_at=now, blocked_until=None)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def record_failure(db: Database, keys: list[Key], settings: Settings) -> None:
    """One failed login for each key, in one short transaction (no password work inside it)."""
    live = [k for k in keys if k.limit > 0]
    if not live:
        return
    now = utcnow()
    memory = timedelta(seconds=settings.login_failure_memory_seconds)
    with db.session() as s:
        for k in live:
            _insert_absent(s, k.key, now)
            row = s.scalars(select(LoginThrottle).where(LoginThrottle.key == k.key).with_for_update()).one()
            if row.failures and now - row.last_failure_at > memory:
                row.failures = 0
            row.failures += 1
            row.last_failure_at = now
            if row.failures >= k.limit:
                doublings = min(row.failures - k.limit, 30)  # 2**30 s is far past any sane maximum
                wait = min(settings.login_backoff_max_seconds, settings.login_backoff_seconds * 2**doublings)
                row.blocked_until = now + timedelta(seconds=wait)
        # Rows nobody failed for a while and that block nothing: a flood of made-up addresses does not pile up.
        s.execute(
            delete(LoginThrottle).where(
                LoginThrottle.last_failure_at < now - memory,
                or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now),
            )
        )


def clear(s: Session, key: Key) -> None:
    """Forget the failures of `key` (in the caller's short transaction: a successful login)."""
    s.execute(delete(LoginThrottle).where(LoginThrottle.key == key.key))
