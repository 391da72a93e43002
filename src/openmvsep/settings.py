"""Every setting in one place; each one also comes from an `OPENMVSEP_*` environment variable."""

from __future__ import annotations

import ipaddress
import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENMVSEP_", extra="ignore")

    # Where things live.
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite file in data_dir
    # Every URL in a response is built from it. Empty: from each request (its Host, and the X-Forwarded-* headers of
    # trusted proxies); links made without a request (mail) use http://<host>:<port>, this machine's name for 0.0.0.0.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # Addresses and networks (comma-separated; "*" for any) whose X-Forwarded-For/Proto/Host/Prefix headers are
    # believed: the client address (rate limits) and the links' scheme, host and path prefix. Default: uvicorn's
    # FORWARDED_ALLOW_IPS when set (earlier releases documented it), else this machine (a proxy beside the server).
    trusted_proxies: str = Field(default_factory=lambda: os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))

    # Storage: empty = <data_dir>/storage; a directory; or s3://bucket/prefix for any S3-compatible store
    # (endpoint below, credentials from the usual AWS_* variables).
    storage_url: str = ""
    s3_endpoint: str = ""  # e.g. http://seaweedfs:8333; empty: AWS
    s3_region: str = "us-east-1"
    presigned_urls: bool = False  # S3 only: result links point at the store (signed) instead of this server
    presigned_url_seconds: int = 6 * 3600
    orphan_grace_seconds: float = 3600.0  # stored inputs with no job row after this long are deleted (crashes)

    # Logging (logs.py): one line per record on stderr, for serve, its workers and `openmvsep worker` alike.
    log_format: Literal["text", "json"] = "text"  # json: one object per line (time, level, logger, request_id, ...)
    log_level: str = "INFO"  # of openmvsep's, uvicorn's and Celery's loggers; other libraries log warnings only
    access_log: bool = False  # uvicorn's access log: one line per request, with its request id

    # Executor: local (worker processes of `serve`) | celery (workers started with `openmvsep worker`).
    executor: str = "local"
    broker_url: str = "redis://127.0.0.1:6379/0"  # celery: redis://... or amqp://...
    celery_queue: str = "openmvsep"
    broker_visibility_seconds: float = 12 * 3600.0  # longer than the longest job (unacked work is re-sent after it)
    worker_shutdown_seconds: float = 60.0  # `openmvsep worker` stopping: how long a job in hand may take to finish
    reconcile_seconds: float = 2.0  # celery: how often an API process re-queues lost work and tops up the broker
    workers: int = 1
    worker_poll_seconds: float = 0.5
    lease_seconds: float = 60.0  # a claimed work item is lost after this long without a heartbeat
    heartbeat_seconds: float = 5.0
    max_attempts: int = 3  # a work item that lost its worker this often fails the job
    models_kept_loaded: int = 2  # per worker, least recently used models are dropped

    # Long inputs.
    chunk_threshold_seconds: float = 600.0  # inputs longer than this are split into work items
    chunk_seconds: float = 300.0
    chunk_overlap_seconds: float = 2.0  # crossfade length at each join

    # Limits.
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_form_field_bytes: int = 64 * 1024
    max_form_fields: int = 64
    max_input_seconds: float = 4 * 3600.0
    rate_limit_per_minute: int = 600  # per client address and route; 0 disables
    remote_max_bytes: int = 1024 * 1024 * 1024
    remote_timeout_seconds: float = 60.0
    remote_allow_private: bool = False  # URL inputs on private/loopback addresses are refused unless set

    # Business rules.
    free_concurrent_jobs: int = 1  # active jobs of a non-premium user; 0 = unlimited
    premium_concurrent_jobs: int = 0  # 0 = unlimited
    free_daily_jobs: int = 0  # 0 = unlimited (MVSep: 50)
    anonymous_jobs: bool = False  # allow create without api_token (the "unregistered" plan)
    new_user_credits: int = 0
    registration_open: bool = True  # false: the same as registration=closed (the setting before `registration`)
    retention_hours: float = 72.0
    janitor_interval_seconds: float = 600.0

    # Engine.
    device: str = "auto"  # auto: CUDA when there is one
    # auto: bf16 on processors with bf16 matrix units (AVX-512 BF16, AMX), fp32 elsewhere; fp32 forces full precision
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: int = 0  # chunks per model call; 0: one on CPU, four on a GPU
    auto_download: bool = False  # fetch registered weights on first use
    compile_models: bool = False  # torch.compile each model when a worker loads it
    encode_threads: int = Field(default=4, ge=1)  # a job's stems encoded side by side (codecs release the GIL)

    # Quality Checker.
    qc_max_upload_bytes: int = 8 * 1024**3  # a 100-track, 5-stem WAV submission is about 5 GB
    qc_max_unpacked_bytes: int = 16 * 1024**3  # what a submission's scored files may expand to (zip bombs)
    qc_max_zip_members: int = 10_000
    qc_secondary_metrics: bool = True  # SI-SDR, L1-freq, log-WMSE, AURA, bleedless/fullness, framewise SDR
    qc_threads: int = 1  # threads doing the leaderboard SDR's arithmetic, beside the one reading files
    qc_queue_page_limit: int = 20
    qc_leaderboard_page_limit: int = 100
    qc_default_dataset_tracks: int = 8  # a synthetic dataset made at first start when none is registered; 0: none
    qc_default_dataset_seconds: float = 10.0

    # Prometheus metrics at /metrics (api/metrics.py): off unless enabled; with a token, scrapers send
    # `Authorization: Bearer <token>`.
    metrics_enabled: bool = False
    metrics_token: str = ""

    # Quality Checker submissions: what a file may hold beside its samples (headers, tags, cover art, padding).
    # Bounds each file's declared size at upload (with its track's samples at the widest format) and what a worker
    # reads of a file's headers before its audio; a file holding more is refused.
    qc_max_header_bytes: int = 1024**2

    # Webhooks: a job's end (and a Quality Checker entry's scores) writes events to the webhook outbox; API processes
    # (never the separation workers) deliver them, signed (Standard Webhooks), with retries, under the address
    # policy of URL inputs (remote_allow_private). The defaults retry for a day: 10 s doubling up to 2 h, a last try
    # at 24 h.
    webhook_timeout_seconds: float = 10.0  # per connect/read of one delivery attempt
    webhook_max_attempts: int = 25  # an event that fails this often gets no more tries
    webhook_retry_seconds: float = 10.0  # wait before the second attempt; it doubles for each further one
    webhook_poll_seconds: float = 1.0  # how often each sender looks for due events
    webhook_senders: int = 2  # delivery threads per API process: one slow receiver does not hold up the others
    webhook_lease_seconds: float = 120.0  # an event being sent is another sender's after this long (a crash)
    webhook_retry_max_seconds: float = 7200.0  # the doubling wait between attempts stops growing here
    webhook_max_age_seconds: float = 86400.0  # no attempt later than this after an event is queued (or redelivered)
    webhook_secret_grace_seconds: float = 86400.0  # after a rotation the old secret signs beside the new one this long
    webhook_endpoints_per_user: int = 10  # endpoints one account may have (/api/app/webhooks)
    webhook_log_page_limit: int = 100  # the most attempts one page of /api/app/webhooks/deliveries lists

    # URL downloads: one slow server must not hold a worker. Checked whenever bytes arrive; a silent server is
    # cut off by remote_timeout_seconds (per read).
    remote_deadline_seconds: float = 600.0  # the whole download, from the first request to the last byte
    remote_min_bytes_per_second: int = 16 * 1024  # over each window below; 0 disables
    remote_rate_window_seconds: float = 30.0

    # Shared request limits and unguessable downloads (api/limits.py). The per-minute limits are counted in
    # this process's memory unless a store every API process shares is named: then N replicas enforce one limit.
    rate_limit_storage_url: str = ""  # empty: memory (one count per process); redis://host:6379/0: shared
    rate_limit_key_prefix: str = "openmvsep"  # names the counters in a shared store (several deployments, one Redis)
    storage_miss_limit_per_minute: int = 30  # /storage 404s a client address may cause a minute, then 429; 0 = off

    # Accounts (service/accounts.py, service/throttle.py, service/mail.py).
    # Failed logins: after this many of one account, or from one client address, each further try waits, the wait
    # doubling from login_backoff_seconds up to login_backoff_max_seconds (429 with Retry-After); 0 disables.
    # Kept in the database, so every API process sees them; a successful login clears the account's count.
    login_account_failures: int = 5
    login_address_failures: int = 20
    login_backoff_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    login_failure_memory_seconds: float = 3600.0  # a count with no failure for this long starts over
    # app/register: open | verify (the account works once the link mailed to it is opened; needs smtp_host) |
    # invite (only addresses invited with `openmvsep user invite`) | closed.
    registration: Literal["open", "verify", "invite", "closed"] = "open"
    registrations_per_address_per_day: int = 3  # accounts one client address may register a day; 0 = unlimited
    password_min_length: int = 8  # for app/register (admins' `user create` keeps 8)
    password_refuse_common: bool = True  # app/register refuses the most common passwords (service/common_passwords.txt)
    verification_hours: float = (
        48.0  # how long a verification link works; an unverified address may register again after
    )
    smtp_host: str = ""  # the mail server verification mails go through; empty: none (registration=verify refuses)
    smtp_port: int = 587
    smtp_username: str = ""  # empty: no login
    smtp_password: str = ""
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str = ""  # the From address; empty: openmvsep@<host of public_url>
    smtp_timeout_seconds: float = 30.0

    # The web page (openmvsep/web): sessions in a signed cookie, live status over server-sent events.
    web_secret: str = ""  # signs session cookies; empty: a random key kept in <data_dir>/web-secret (one machine)
    web_session_hours: float = 14 * 24.0  # a login lasts this long; regenerating the API token ends it at once
    web_events_poll_seconds: float = 1.0  # how often a job page's event stream reads the job (workers write elsewhere)
    web_events_max_seconds: float = 300.0  # one stream's life; the browser reconnects (bounds idle connections)
    # true: a job's result page, live status, zip and waveforms are shown only to its owner and admins (published
    # demos and jobs made without an account stay public by hash); false: to anyone with the hash, as on MVSep.
    # The API's separation/get answers any hash either way (MVSep's clients poll it without a token).
    private_results: bool = False

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """Each entry an IP address or network: a typo would otherwise trust nobody, silently."""
        entries = [e.strip() for e in value.split(",") if e.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8, *)") from None
        return ",".join(entries)

    @property
    def registration_policy(self) -> str:
        """`registration`, or closed when the older registration_open is false."""
        return self.registration if self.registration_open else "closed"

    # Options this server cannot run (service/catalog.py). "substitute": the field's best runnable option runs in
    # its place (registry `rank`, then published `sdr`), the job is priced by it and `get` discloses it in
    # `substitutions`; "strict": such a request is refused with a 400 naming the weights to install.
    option_policy: Literal["substitute", "strict"] = "substitute"
    # How often each process (API and worker) looks at its weights directory and registry files for weights
    # added by `openmvsep models download` while it runs (a few stats; each machine checks its own disk).
    weights_recheck_seconds: float = 2.0

    # Transcribers that ship in their wheels (Basic Pitch, Transkun). Transkun reads 16-second windows; this is
    # the step between their starts (0: the shipped configuration's 8 s, each stretch heard twice). 16 hears each
    # stretch once: about three times faster on short inputs, at some cost at the windows' edges.
    transkun_hop_seconds: float = 0.0

    # The web page's History, Account, API, Quality Checker, News and Demo pages (web/account.py, quality.py,
    # gallery.py).
    web_history_page_size: int = 20  # separations per History page (the API's separation_history takes at most 20)
    web_leaderboard_page_size: int = (
        20  # Quality Checker entries per leaderboard page (at most qc_leaderboard_page_limit)
    )
    web_demo_page_size: int = 12  # demos per Demo page, each with its players
    web_news_page_size: int = 10  # news entries per News page
    web_ledger_rows: int = 20  # the latest credit changes the Account page lists

    # The admin pages (/admin, web/admin.py): users listed per page, the most credits one grant may add or remove,
    # how often the queue and weight-task panels refresh in the browser, and how many weight downloads and checks
    # the page may run at once.
    admin_users_per_page: int = 50
    admin_max_credit_grant: int = 1_000_000
    admin_refresh_seconds: float = 2.0
    admin_max_weight_tasks: int = 2  # downloads and checks running at once in one API process

    # The result page's player (web/player.py): waveform peaks computed from the stored files on demand and kept in
    # a small per-process cache (no file beside the outputs, so the janitor's sweeps need not know of them).
    web_peaks_per_second: float = 100.0  # buckets per second of audio, enough for any page width when zoomed out
    web_peaks_max_buckets: int = 8000  # at most this many per file, so a long track's answer stays small
    web_peaks_cache_files: int = 64  # files whose peaks each process keeps in memory (least recently used go first)
    # Time left on a job's page (service/jobs/eta.py): medians of the last finished jobs' speeds, cached this long.
    eta_sample_jobs: int = 50  # finished jobs of the algorithm the estimate is measured on
    eta_cache_seconds: float = 60.0  # how long a process reuses a measurement (every open page asks each second)
    eta_queue_cache_seconds: float = 1.0  # how long a process reuses the running jobs and live workers it counted
    # A worker writes its progress inside a piece (separation/get's `progress`) at most this often per job.
    progress_report_seconds: float = 1.0

    # Requests sent twice and work done twice (service/idempotency.py, service/jobs/reuse.py).
    # An Idempotency-Key (header, or the idempotency_key field) on separation/create and quality_checker/add: the
    # same key from the same account answers its first request's answer this long; 0: keys are ignored.
    idempotency_hours: float = 24.0
    # A new job whose input (by content), algorithm, options and output format are those of a finished job whose
    # files still exist is done at once with its own copies of that job's outputs: "all" (any account's job),
    # "own" (the same account's only), "off".
    reuse_results: Literal["all", "own", "off"] = "all"
    reuse_charge: Literal["full", "none"] = "full"  # what a reused job costs: its usual price, or nothing

    @cached_property
    def storage_dir(self) -> Path:
        """The local storage directory (unused when storage_url is s3://)."""
        if self.storage_url and not self.storage_url.startswith("s3://"):
            return Path(self.storage_url.removeprefix("file://"))
        return self.data_dir / "storage"

    @property
    def scratch_root(self) -> Path:
        """Local working files (uploads being received, outputs being encoded) of this machine's processes."""
        if self.storage_url.startswith("s3://"):
            return self.data_dir / "scratch"
        return self.storage_dir / ".scratch"  # beside the files: moving a finished file in is a rename

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'openmvsep.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        # Bound to every address: this machine's name (which others may resolve), never a loopback address.
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"
