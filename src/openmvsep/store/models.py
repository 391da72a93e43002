"""The tables. The database is the record of every job; nothing about a job lives only in memory."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Leased:
    """Columns of work a worker claims: who holds it, until when, and how often it was tried.

    A claim sets `worker` and `lease_until`; heartbeats push `lease_until` on; a lease that runs out hands the
    work back (service/lifecycle.py), counting the attempt.
    """

    if TYPE_CHECKING:  # every leased table declares these itself (column sizes and indexes differ)
        id: Mapped[int]
        status: Mapped[str]

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    api_token: Mapped[str] = mapped_column(String(64), unique=True)
    credits: Mapped[int] = mapped_column(
        Integer, default=0
    )  # MVSep's premium_minutes; the ledger explains every change
    premium_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    long_filenames_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_alert_threshold: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # E-mail verification (registration policy "verify"): an unverified account can neither log in nor use its token.
    email_verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    verify_token_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, unique=True
    )  # sha256 of the link's
    registered_from: Mapped[str | None] = mapped_column(String(64), nullable=True)  # client address of app/register
    # Set by an admin: the account can neither log in (API or page) nor use its token until enabled again.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index("ix_users_registered_from", "registered_from", "created_at"),)


class Invite(Base):
    """An address an admin invited (registration policy "invite"): only these may register."""

    __tablename__ = "invites"

    email: Mapped[str] = mapped_column(String(255), primary_key=True)  # normalised, as users.email
    invited_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoginThrottle(Base):
    """Failed logins of one account or one client address, shared by every API process (service/throttle.py)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # "account:<sha256 of the e-mail>" | "address:<ip>"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CreditEntry(Base):
    """One change of a user's credits: a grant, a charge for a job, or a refund."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # grant | charge | refund
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Job(Base):
    """One separation. `status` follows DESIGN.md's state machine."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    plan: Mapped[int] = mapped_column(Integer)  # 2 premium, 1 registered, 0 unregistered: higher is served first
    sep_type: Mapped[int] = mapped_column(Integer)
    options: Mapped[dict] = mapped_column(JSON)  # server_key -> chosen key (what runs)
    # add_optN -> {requested, used}: the fields where this server ran another option than the one asked for
    substitutions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    output_format: Mapped[int] = mapped_column(Integer)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    long_filenames: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    inputs: Mapped[dict] = mapped_column(JSON)  # role -> {key, name, size, duration, sample_rate, channels, media}
    duration: Mapped[float] = mapped_column(Float)
    credits_charged: Mapped[int] = mapped_column(Integer, default=0)
    all_chunks: Mapped[int] = mapped_column(Integer, default=1)
    finished_chunks: Mapped[int] = mapped_column(Integer, default=0)
    files: Mapped[list | None] = mapped_column(JSON, nullable=True)  # [{type, key, download, bytes}] once done
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    files_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # A failed job's inputs are deleted at once (the row answers `failed` until it expires): set once they are.
    inputs_deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # sha256 over the inputs' contents, sep_type, options and output format (service/jobs/reuse.py): a later job with
    # the same key may take copies of this one's outputs. None on rows made before it existed.
    result_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The job whose outputs this one's are copies of (done at once, no worker ran it); None: it ran itself.
    reused_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How much of the work is done, 0..1, as the workers report it while a piece runs (service/jobs/progress.py).
    # Only ever raised (max in the UPDATE), so a poller never sees it go back.
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Where the creating request reached this server (scheme://host[/prefix]), for links built without a request
    # (the webhook's body) when no public URL is configured.
    link_base: Mapped[str | None] = mapped_column(String(512), nullable=True)

    __table_args__ = (Index("ix_jobs_queue", "status", "plan", "id"),)

    def storage_keys(self) -> list[str]:
        """Every stored file of this job: its inputs and its outputs."""
        return [i["key"] for i in self.inputs.values()] + [f["key"] for f in (self.files or [])]


class IdempotencyKey(Base):
    """The first answer to a request that carried an Idempotency-Key (service/idempotency.py): the same key from the
    same account gets this answer again instead of a second job. Written in the transaction that creates what the
    answer names, so the unique (user, key) pair lets only one of two racing requests create anything."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request: its route, fields and files
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status of the first answer
    answer: Mapped[dict] = mapped_column(JSON)  # its body
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)


class WorkItem(Leased, Base):
    """A unit a worker claims: a whole job, one chunk of a long job, or the merge of its chunks."""

    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # whole | chunk | merge
    index: Mapped[int] = mapped_column(Integer, default=0)
    start_frame: Mapped[int] = mapped_column(Integer, default=0)
    end_frame: Mapped[int] = mapped_column(Integer, default=0)
    plan: Mapped[int] = mapped_column(Integer)  # copied from the job so the claim query needs no join
    status: Mapped[str] = mapped_column(String(12))  # waiting | running | done | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_work_claim", "status", "plan", "job_id", "index"),)


class RemoteJob(Leased, Base):
    """A URL input: downloaded first, then it becomes a real job (MVSep's get-remote stage)."""

    __tablename__ = "remote_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    short_hash: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    plan: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    remote_type: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict] = mapped_column(JSON)  # sep_type, options, output_format, is_demo, webhook_url
    status: Mapped[str] = mapped_column(String(16), index=True)  # waiting | processing | done | failed
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class RotatingSecret:
    """A signing secret (`whsec_` + base64, Standard Webhooks) and, for a while after a rotation, the one before it:
    deliveries carry a signature for each, so a receiver keeps verifying while it switches to the new secret."""

    secret: Mapped[str] = mapped_column(String(80))
    previous_secret: Mapped[str | None] = mapped_column(String(80), nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebhookEndpoint(RotatingSecret, Base):
    """A user's receiver: it gets the events of that user's jobs and Quality Checker entries, signed with its own
    secret. `event_types` narrows which (null: all); a disabled endpoint gets no new events."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list | None] = mapped_column(JSON, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    # An endpoint's id is what its owner deletes or rotates by: a deleted one's id is never handed out again.
    __table_args__ = {"sqlite_autoincrement": True}


class WebhookSecret(RotatingSecret, Base):
    """A user's account signing secret: it signs the deliveries to a create's `webhook_url` (one per user, made
    when first needed)."""

    __tablename__ = "webhook_secrets"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class WebhookEvent(Leased, Base):
    """The outbox: one event to POST to one receiver, written in the transaction that makes it happen (a job's end,
    a Quality Checker entry scored) or by its owner (a test event).

    API processes deliver due events (service/webhooks claims them under a lease, so that two senders never
    send one event at once and a crashed sender's events are taken over). `event_id` names the event for the
    receiver (the `webhook-id` header), the same on every attempt and on a redelivery; `worker`/`lease_until` are
    the sender's; `attempts` counts the tries since it was queued (or redelivered). The receiver is a user's
    endpoint (`endpoint_id`), or, without one, the `webhook_url` a create named (`url`, MVSep's body).
    """

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    # separation.done | separation.failed | quality_checker.scored | webhook.test
    event_type: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True, index=True)
    entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("qc_entries.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=True, index=True
    )
    url: Mapped[str] = mapped_column(Text)  # where the latest attempt went (an endpoint's URL may change)
    payload: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the body of the latest attempt
    status: Mapped[str] = mapped_column(String(12))  # pending | sending | delivered | failed
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # When this round of delivery began (queued, or redelivered): retries stop webhook_max_age_seconds after it.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_webhook_events_due", "status", "next_attempt_at"),)


class WebhookAttempt(Base):
    """One delivery attempt of an event, as its sender saw it: the receiver's HTTP status and how long it took, or
    the error (a timeout, a refused address, a sender that stopped mid-attempt)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)  # 1, 2, ... over the event's whole life (redeliveries go on)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_webhook_attempts_event", "webhook_event_id", "attempt"),)


class News(Base):
    __tablename__ = "news"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    lang: Mapped[str] = mapped_column(String(8), index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class QcDataset(Base):
    """A Quality Checker dataset: references on disk, registered by an admin (`openmvsep qc dataset add`)."""

    __tablename__ = "qc_datasets"

    dataset_type: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    stems: Mapped[list] = mapped_column(JSON)  # scored suffixes, display order
    sample_rate: Mapped[int] = mapped_column(Integer)
    songs: Mapped[list] = mapped_column(JSON)  # [{name, frames, channels}]
    root: Mapped[str] = mapped_column(Text)  # the dataset folder (references never leave it)
    mixtures_key: Mapped[str] = mapped_column(String(255))  # storage key of the public mixtures zip
    created_at: Mapped[datetime] = mapped_column(DateTime)


class QcEntry(Leased, Base):
    """One submission to a leaderboard. Scored in two claims: SDR first (fast), the secondary metrics after."""

    __tablename__ = "qc_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_type: Mapped[int] = mapped_column(ForeignKey("qc_datasets.dataset_type", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    algo_name: Mapped[str] = mapped_column(String(255))
    main_text: Mapped[str] = mapped_column(Text, default="")
    ensemble: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    stems: Mapped[list] = mapped_column(JSON)  # the stems this submission scores
    zip_key: Mapped[str | None] = mapped_column(String(255), nullable=True)  # dropped once scoring is over
    # waiting -> scoring -> scored (SDR known, on the leaderboard) -> measuring -> done; failed
    status: Mapped[str] = mapped_column(String(12), index=True)
    msg: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # stem -> metric -> mean over tracks
    tracks: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # song -> stem -> metric -> value
    warnings: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    scored_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    # An entry's id is its public link: SQLite must never give a deleted entry's id to a new one, which it does
    # for the newest row unless the table is AUTOINCREMENT (PostgreSQL's sequences never repeat).
    __table_args__ = {"sqlite_autoincrement": True}


class QcScore(Base):
    """One mean score of an entry (stem × metric), a row of its own so the leaderboard sorts in SQL."""

    __tablename__ = "qc_scores"

    entry_id: Mapped[int] = mapped_column(ForeignKey("qc_entries.id", ondelete="CASCADE"), primary_key=True)
    stem: Mapped[str] = mapped_column(String(32), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_qc_scores_rank", "metric", "stem", "value"),)
