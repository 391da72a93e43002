"""Idempotency keys: a create sent again with the same key gets the first answer instead of a second job.

A client that lost the answer to a create (a broken connection, a timeout, a proxy's 502, a process stopped
mid-call) cannot know whether the server made the job and charged for it. With an `Idempotency-Key` header (or
an `idempotency_key` form field) it may send the same request again: within `idempotency_hours`, the same key
from the same account gets the first answer, byte for byte (and the header `Idempotent-Replayed: true`), and
nothing is created or charged again. The same key with another request (another route, other fields, other
files) is refused with a 409: a key names one request.

Why two requests with one key cannot both create: the key's row is written in the transaction that creates what
its answer names (the job, the URL download or the Quality Checker entry), after the caller's account row is
locked (PostgreSQL; SQLite lets one writer in at a time), and the table is unique on (account, key). Of two
racing requests, the second finds the first's row as soon as the first commits, rolls its own transaction back
and answers the first's answer; had it got past that look, the unique constraint would fail its insert and it
would do the same. So there is no "still in progress" answer: the loser waits only for the winner's
transaction (not for its upload or its checks), and a server that dies mid-request leaves no row behind, so
the client's retry simply runs.

Only answers that created something are remembered. A refusal changed nothing, so the same request sent again
is judged afresh (a job may have finished meanwhile, credits may have been added).

Requests without an account (anonymous creates, where allowed) have no key space and are not deduplicated. Rows
older than `idempotency_hours` are ignored, and deleted by the housekeeping's sweep (`prune`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openmvsep.service import accounts
from openmvsep.service.errors import ServiceError
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import IdempotencyKey, User

if TYPE_CHECKING:
    from openmvsep.service.jobs.intake import Upload

KEY_HEADER = "Idempotency-Key"
KEY_FIELD = "idempotency_key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255  # the column's size; UUIDs and the keys of common clients are far shorter
NOT_FINGERPRINTED = frozenset({"api_token", KEY_FIELD})  # who asks and the key itself are not the request
T = TypeVar("T")


def parse_key(header: str | None, field: str | None) -> str | None:
    """The request's key, from the header or the form field (None: no key). Checked before anything else."""
    values = {v.strip() for v in (header, field) if v is not None and v.strip()}
    if not values:
        return None
    if len(values) > 1:
        raise ServiceError(f"The {KEY_HEADER} header and the {KEY_FIELD} field differ; send one key")
    key = values.pop()
    if len(key) > MAX_KEY_CHARS:
        raise ServiceError(f"The {KEY_HEADER} may be at most {MAX_KEY_CHARS} characters long")
    if not all(" " <= c <= "~" for c in key):
        raise ServiceError(f"The {KEY_HEADER} may hold printable ASCII characters only")
    return key


def fingerprint(route: str, fields: Mapping[str, str], files: Mapping[str, Upload]) -> str:
    """sha256 of what the request asks for: its route, its form fields and each file's name and content."""
    canonical = {
        "route": route,
        "fields": {k: v for k, v in fields.items() if k not in NOT_FINGERPRINTED},
        "files": {role: [upload.filename, upload.content_hash()] for role, upload in files.items()},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _row(user_id: int, key: str):  # the select of one account's key
    return select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)


@dataclass(frozen=True)
class Answer:
    """What the route sends: the body and status of the answer, and whether it is a repeat of an earlier one."""

    body: dict
    status: int = 200
    replayed: bool = False


class Replayed(Exception):
    """Raised inside a create's transaction that finds its key already answered: the rollback undoes the create."""

    def __init__(self, answer: Answer):
        super().__init__("answered before")
        self.answer = answer


class Once:
    """One keyed request, handed to the create so that it checks and records the key in its own transaction."""

    def __init__(self, keys: IdempotencyKeys, user_id: int, key: str, fingerprint: str, present: Callable[[Any], dict]):
        self.keys, self.user_id, self.key, self.fingerprint, self.present = keys, user_id, key, fingerprint, present
        self.answer: Answer | None = None

    def check(self, s: Session) -> None:
        """First thing in the creating transaction, before any limit is judged: lock the account row (PostgreSQL;
        SQLite's write transaction holds the whole database) and look for the key. A twin request that committed
        first ends this one with its answer; an expired row makes way for this request."""
        s.execute(select(User.id).where(User.id == self.user_id).with_for_update())
        row = s.scalar(_row(self.user_id, self.key))
        if row is None:
            return
        if self.keys.expired(row):
            s.delete(row)
            s.flush()
            return
        raise Replayed(self.keys.judge(row, self.fingerprint))

    def record(self, s: Session, created: Any) -> None:
        """Last thing in the creating transaction: the answer that names `created`, kept under the key."""
        body = self.present(created)
        s.add(
            IdempotencyKey(
                user_id=self.user_id,
                key=self.key,
                fingerprint=self.fingerprint,
                status=200,
                answer=body,
                created_at=utcnow(),
            )
        )
        s.flush()  # a twin that got past check() meets the unique constraint here, inside its transaction
        self.answer = Answer(body)


class IdempotencyKeys:
    def __init__(self, db: Database, hours: float):
        self.db, self.hours = db, hours

    def expired(self, row: IdempotencyKey) -> bool:
        return row.created_at < utcnow() - timedelta(hours=self.hours)

    def judge(self, row: IdempotencyKey, fingerprint: str) -> Answer:
        """The first answer again, or a 409 when the key was used for another request."""
        if row.fingerprint != fingerprint:
            raise ServiceError(
                f"This {KEY_HEADER} was already used for a different request; send a new key with a new request",
                status=409,
            )
        return Answer(row.answer, row.status, replayed=True)

    def run(
        self,
        token: str | None,
        key: str | None,
        fingerprint: str,
        create: Callable[[Once | None], T],
        present: Callable[[T], dict],
    ) -> Answer:
        """Answer a create: `create(once)` makes the thing (recording the key in its transaction through `once`),
        `present` turns it into the answer. With a key already answered, the first answer and no `create`."""
        user_id = self._user_id(token) if key and self.hours > 0 else None
        if key is None or user_id is None:  # no key, keys off, or no account (the create judges the token)
            return Answer(present(create(None)))
        prior = self._prior(user_id, key, fingerprint)
        if prior is not None:
            return prior
        once = Once(self, user_id, key, fingerprint, present)
        try:
            create(once)
        except Replayed as twin:
            return twin.answer
        except IntegrityError:
            prior = self._prior(user_id, key, fingerprint)
            if prior is None:  # not this key's constraint
                raise
            return prior
        assert once.answer is not None  # every create given a Once records its answer before it commits
        return once.answer

    def _user_id(self, token: str | None) -> int | None:
        with self.db.reader() as s:
            user = accounts.user_by_token(s, token)
            return user.id if user is not None else None

    def _prior(self, user_id: int, key: str, fingerprint: str) -> Answer | None:
        with self.db.reader() as s:
            row = s.scalar(_row(user_id, key))
        if row is None or self.expired(row):
            return None
        return self.judge(row, fingerprint)


def prune(db: Database, hours: float) -> int:
    """Delete keys older than `hours` (the housekeeping's sweep); returns how many."""
    with db.session() as s:
        result = s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - timedelta(hours=hours)))
        return int(getattr(result, "rowcount", 0) or 0)
