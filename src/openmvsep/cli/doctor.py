"""`openmvsep doctor`: what this machine is configured to use, and whether each part answers.

Each check returns one line: ok, warn (works, but probably not what a deployment wants) or fail (something
that stops jobs from running), with the fix in the detail. Every check that talks to a server runs under a
deadline in a daemon thread, so an address that swallows packets costs a few seconds, never a hang.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from openmvsep.settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


class NoAnswer(Exception):
    """A check that did not finish within its deadline."""


def within(seconds: float, fn: Callable[[], T]) -> T:
    """fn() or NoAnswer after `seconds`; a stuck call is left behind in its daemon thread."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name="openmvsep-doctor", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise NoAnswer(f"no answer within {seconds:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def reason(e: BaseException) -> str:
    """The first line of an error (driver errors carry pages of context after it)."""
    cause = getattr(e, "orig", None) or e  # SQLAlchemy wraps the driver's error
    lines = str(cause).strip().splitlines()
    return (lines[0].strip().rstrip(".") if lines else "") or type(cause).__name__


def safe_database_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: say so rather than echo something that may hold a password
        return "<unparseable database URL>"


def safe_broker_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


# ---------------------------------------------------------------- checks


def check_executor(settings: Settings) -> Check:
    if settings.executor == "local":
        return Check(
            "executor", OK, "local: work runs in worker processes that `openmvsep serve` starts on this machine"
        )
    if settings.executor == "celery":
        return Check(
            "executor",
            OK,
            f"celery: workers started with `openmvsep worker` take work from queue {settings.celery_queue}",
        )
    return Check("executor", FAIL, f"unknown executor {settings.executor!r}: set OPENMVSEP_EXECUTOR to local or celery")


@dataclass(frozen=True)
class SchemaState:
    dialect: str
    current: frozenset[str]  # the revisions the database is at
    heads: frozenset[str]  # where this install's migrations end
    unknown: frozenset[str]  # current revisions this install has no migration for (a newer openmvsep wrote them)


def schema_state(url: str, timeout: float) -> SchemaState:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from openmvsep.store.migrate import alembic_config

    # libpq (psycopg) and the MySQL drivers take whole seconds; SQLite's `timeout` is its lock wait.
    connect_args = {"timeout": timeout} if url.startswith("sqlite") else {"connect_timeout": max(1, int(timeout))}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = frozenset(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(url))
    unknown = set()
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError:
            unknown.add(revision)
    return SchemaState(engine.dialect.name, current, frozenset(script.get_heads()), frozenset(unknown))


def check_database(settings: Settings, timeout: float) -> tuple[Check, bool]:
    """The database check, and whether its tables are there to be queried."""
    url = settings.effective_database_url
    shown = safe_database_url(url)
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[-1])
        if not path.is_file():  # connecting would create it; doctor only looks
            return Check(
                "database", WARN, f"no database yet at {path}: `openmvsep db upgrade` (or `serve`) creates it"
            ), False
    try:
        state = within(timeout + 2, lambda: schema_state(url, timeout))
    except ModuleNotFoundError as e:
        return Check(
            "database", FAIL, f"{shown}: the driver is not installed ({e.name}): pip install 'openmvsep[postgres]'"
        ), False
    except Exception as e:
        return Check(
            "database",
            FAIL,
            f"cannot reach {shown}: {reason(e)} — start it, create the database, or set OPENMVSEP_DATABASE_URL",
        ), False
    at, head = ", ".join(sorted(state.current)), ", ".join(sorted(state.heads))
    where = f"{state.dialect} at {shown}"
    if not state.current:
        return Check("database", WARN, f"{where}: no schema yet — run `openmvsep db upgrade` once"), False
    if state.unknown:
        return Check(
            "database",
            FAIL,
            f"{where}: schema {at} is newer than this install (head {head}) — upgrade openmvsep on this machine",
        ), True
    if state.current != state.heads:
        return Check(
            "database",
            WARN,
            f"{where}: schema {at}, this install's head is {head} — run "
            "`openmvsep db upgrade` once, before the new version's processes start",
        ), True
    if state.dialect == "sqlite" and settings.executor == "celery":
        return Check(
            "database",
            WARN,
            f"{where}, schema at head {head}: only workers on this machine can use it "
            "— use PostgreSQL (OPENMVSEP_DATABASE_URL) for workers elsewhere",
        ), True
    return Check("database", OK, f"{where}, schema at head {head}"), True


def _celery(settings: Settings, timeout: float):
    from openmvsep.runner.celery_app import make_celery

    app = make_celery(settings)
    # One try per connection and short socket timeouts: doctor reports an outage, it does not wait it out.
    app.conf.broker_connection_timeout = timeout
    app.conf.broker_connection_retry = False
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "max_retries": 1,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
    }
    return app


def check_broker(settings: Settings, timeout: float) -> tuple[Check, object | None]:
    """The broker check and, when it answered, the Celery app for the checks that follow."""
    shown = safe_broker_url(settings.broker_url)
    try:
        app = _celery(settings, timeout)
    except ModuleNotFoundError as e:
        return Check("broker", FAIL, f"celery is not installed ({e.name}): pip install 'openmvsep[celery]'"), None
    except Exception as e:
        return Check(
            "broker", FAIL, f"{shown}: {reason(e)} — set OPENMVSEP_BROKER_URL to redis://... or amqp://..."
        ), None

    def probe() -> int:
        from openmvsep.runner.celery_app import queued_messages

        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
        return queued_messages(app, settings.celery_queue)

    try:
        queued = within(timeout + 2, probe)
    except Exception as e:
        server = "RabbitMQ" if settings.broker_url.startswith(("amqp", "pyamqp")) else "Redis"
        return Check(
            "broker", FAIL, f"cannot reach {shown}: {reason(e)} — start {server} or set OPENMVSEP_BROKER_URL"
        ), None
    return Check("broker", OK, f"{shown}, queue {settings.celery_queue}: {queued} message(s) queued"), app


def celery_workers(app, queue: str, timeout: float) -> tuple[list[str], int]:
    """(names of the workers consuming `queue`, how many others answered on the same broker)."""
    replies = within(timeout + 2, lambda: app.control.inspect(timeout=timeout).active_queues()) or {}
    ours = sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues or ()))
    return ours, len(replies) - len(ours)


def check_workers(settings: Settings, app, timeout: float) -> Check:
    if settings.executor != "celery":
        if settings.workers <= 0:
            return Check("workers", WARN, "`openmvsep serve` starts no worker (OPENMVSEP_WORKERS=0): queued work waits")
        return Check("workers", OK, f"`openmvsep serve` starts {settings.workers} local worker process(es)")
    if app is None:
        return Check("workers", WARN, "not asked: the broker did not answer")
    try:
        ours, others = celery_workers(app, settings.celery_queue, timeout)
    except Exception as e:
        return Check("workers", WARN, f"could not ask the workers: {reason(e)}")
    elsewhere = f" ({others} other worker(s) on this broker serve other queues)" if others else ""
    if not ours:
        return Check(
            "workers",
            WARN,
            f"no worker consuming {settings.celery_queue} answered within {timeout:g}s"
            f"{elsewhere} — start `openmvsep worker` on the GPU machines",
        )
    return Check("workers", OK, f"{len(ours)} alive: {', '.join(ours)}{elsewhere}")


def check_waiting_work(settings: Settings, timeout: float, *, tables_ready: bool, workers: Check | None) -> Check:
    if not tables_ready:
        return Check("waiting work", WARN, "not counted: the database is not ready")
    from openmvsep.bootstrap import Services
    from openmvsep.service.lifecycle import waiting_work

    services = Services(settings)
    try:
        waiting = within(timeout + 2, lambda: waiting_work(services.db))
    except Exception as e:
        return Check("waiting work", WARN, f"not counted: {reason(e)}")
    finally:
        services.close()
    if waiting and workers is not None and workers.status != OK:
        return Check("waiting work", WARN, f"{waiting} piece(s) waiting and no worker to take them")
    return Check("waiting work", OK, f"{waiting} piece(s) waiting")


def _storage_round_trip(settings: Settings) -> str:
    """Write, read back and delete a probe file; returns where the storage is."""
    from openmvsep.bootstrap import Services

    storage = Services(settings).storage
    key = f"doctor/{uuid.uuid4().hex}"
    payload = f"openmvsep doctor {key}\n".encode()
    with tempfile.TemporaryDirectory(prefix="openmvsep-doctor-") as folder:
        probe = Path(folder) / "probe"
        probe.write_bytes(payload)
        storage.put_file(key, probe, move=True)
    try:
        back = b"".join(storage.read(key))
        if back != payload:
            raise OSError(f"read back {len(back)} bytes that differ from the {len(payload)} written")
    finally:
        storage.delete(key)
    if storage.exists(key):
        raise OSError(f"{key} is still there after delete")
    if settings.storage_url.startswith("s3://"):
        return f"{settings.storage_url}" + (f" at {settings.s3_endpoint}" if settings.s3_endpoint else " (AWS)")
    return str(settings.storage_dir.resolve())


def check_storage(settings: Settings, timeout: float) -> Check:
    is_s3 = settings.storage_url.startswith("s3://")
    try:
        where = within(2 * timeout + 4, lambda: _storage_round_trip(settings))  # three requests on S3
    except ModuleNotFoundError as e:
        return Check("storage", FAIL, f"{e.name} is not installed: pip install 'openmvsep[s3]'")
    except Exception as e:
        if is_s3:
            endpoint = settings.s3_endpoint or "AWS"
            return Check(
                "storage",
                FAIL,
                f"cannot write, read and delete in {settings.storage_url} ({endpoint}): "
                f"{reason(e)} — check the bucket exists, OPENMVSEP_S3_ENDPOINT and the "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY credentials",
            )
        return Check(
            "storage",
            FAIL,
            f"cannot write, read and delete in {settings.storage_dir}: {reason(e)} — "
            "check the directory's permissions and free space, or set OPENMVSEP_STORAGE_URL",
        )
    if not is_s3 and settings.executor == "celery":
        return Check(
            "storage",
            WARN,
            f"local directory {where}: every API and worker machine must share it "
            "(e.g. NFS), or use s3://bucket/prefix (OPENMVSEP_STORAGE_URL)",
        )
    if not is_s3 and settings.presigned_urls:
        return Check(
            "storage",
            WARN,
            f"local directory {where}: OPENMVSEP_PRESIGNED_URLS needs s3:// storage, links point at this server",
        )
    links = ", result links presigned" if is_s3 and settings.presigned_urls else ""
    return Check("storage", OK, f"{where}: write, read back and delete work{links}")


def check_gpus(settings: Settings) -> Check:
    try:
        import torch
    except ModuleNotFoundError:
        return Check("gpus", FAIL, "torch is not installed: reinstall openmvsep")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        names = ", ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(count))
        return Check("gpus", OK, f"{count}: {names}")
    hint = f" (torch {torch.__version__} is built without CUDA)" if torch.version.cuda is None else ""
    if settings.device.startswith("cuda"):
        return Check(
            "gpus",
            FAIL,
            f"OPENMVSEP_DEVICE is {settings.device} but no GPU is visible{hint} — check the "
            "driver and CUDA_VISIBLE_DEVICES, or set OPENMVSEP_DEVICE=auto",
        )
    return Check("gpus", OK, f"none: CPU{hint}")


def check_weights(settings: Settings) -> Check:
    from openmvsep.algorithms.recipes import runnable_map
    from openmvsep.bootstrap import Services
    from openmvsep.engine.weights import WeightsError

    try:
        runtime = Services(settings).runtime
    except WeightsError as e:
        return Check("weights", FAIL, f"{e}")
    entries = list(runtime.registry.entries.values())
    present = sum(runtime.registry.is_present(e) for e in entries)
    runnable = ", ".join(str(t) for t in sorted(runnable_map(runtime)))
    where = runtime.registry.weights_dir
    fetched = "; missing ones are fetched on first use" if settings.auto_download else ""
    detail = f"{present} of {len(entries)} present in {where}{fetched}; runnable sep_types: {runnable or 'none'}"
    if present == 0 and not settings.auto_download:
        return Check("weights", WARN, detail + " — `openmvsep models download` fetches the models")
    return Check("weights", OK, detail)


def run_checks(settings: Settings | None = None, *, timeout: float = 3.0) -> list[Check]:
    """Every check, in the order a request meets the parts."""
    settings = settings or Settings()
    checks = [check_executor(settings)]
    database, tables_ready = check_database(settings, timeout)
    checks.append(database)
    app = None
    if settings.executor == "celery":
        broker, app = check_broker(settings, timeout)
        checks.append(broker)
    checks.append(check_storage(settings, timeout))
    workers = check_workers(settings, app, timeout)
    checks.append(workers)
    checks.append(check_waiting_work(settings, timeout, tables_ready=tables_ready, workers=workers))
    checks.append(check_gpus(settings))
    checks.append(check_weights(settings))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)
