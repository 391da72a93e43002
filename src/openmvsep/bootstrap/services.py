"""The composition root: every process builds its parts here, once, from the settings.

`serve`, `worker`, each CLI command, `doctor` and the worker processes the executors start all open a
`Services` and take what they need from it. Parts are built on first use: `openmvsep user create` opens the
database and nothing else, and an API process builds the engine's runtime (the weights registry, to know what
can run) but never loads a model or imports torch.

This module sits above the entry points it wires (api, runner): it is the only place that knows which
executor, which storage and which database a process gets.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from openmvsep.algorithms.preference import option_scores
from openmvsep.algorithms.recipes import runnable_map
from openmvsep.engine.cache import ModelCache
from openmvsep.engine.runtime import Runtime
from openmvsep.errors import UserError
from openmvsep.presenters.jobs import JobPresenter
from openmvsep.presenters.links import Links
from openmvsep.runner.executor import Executor, make_executor
from openmvsep.runner.webhooks import WebhookSenders
from openmvsep.service.accounts import AccountService
from openmvsep.service.catalog import Catalog, OptionScore, RunnableSpec
from openmvsep.service.idempotency import IdempotencyKeys
from openmvsep.service.jobs import JobService
from openmvsep.service.news import NewsService
from openmvsep.service.quality import QualityService, ensure_default_dataset
from openmvsep.service.readings import ReadingsService
from openmvsep.service.webhooks import WebhookService
from openmvsep.service.weights_admin import WeightsAdmin
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage
from openmvsep.store.migrate import upgrade
from openmvsep.store.storage import make_storage

if TYPE_CHECKING:
    from openmvsep.runner.worker import Worker


class NoDatabase(UserError):
    """An admin command pointed at a data directory that holds no database yet."""


class Services:
    """Everything a process of this server works with, built lazily from one `Settings`."""

    def __init__(self, settings: Settings | None = None, *, executor: Executor | None = None):
        self.settings = settings or Settings()
        self._executor = executor

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, create: bool = False, executor: Executor | None = None
    ) -> Services:
        """Services over a migrated database. `create` makes the database when there is none (`serve`,
        `db upgrade`); otherwise a missing SQLite file is refused with a hint, so that an admin command run
        from the wrong folder never starts a second, empty server's worth of data beside the real one."""
        services = cls(settings, executor=executor)
        services.ensure_database(create=create)
        return services

    # ---------------------------------------------------------------- parts

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    def sqlite_file(self) -> Path | None:
        url = self.settings.effective_database_url
        return Path(url.split(":///", 1)[1]) if url.startswith("sqlite:///") else None

    def ensure_database(self, *, create: bool) -> None:
        sqlite = self.sqlite_file()
        if sqlite is not None and not create and not sqlite.exists():
            raise NoDatabase(
                f"There is no openmvsep database in {self.data_dir} yet. Run this command from the folder the "
                "server runs in, or set OPENMVSEP_DATA_DIR to the server's data directory; "
                "`openmvsep db upgrade` creates a new one here."
            )
        upgrade(self.settings.effective_database_url)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.effective_database_url)

    @cached_property
    def storage(self) -> Storage:
        return make_storage(self.settings)

    @cached_property
    def runtime(self) -> Runtime:
        """The engine as the settings configure it (weights under <data dir>/weights); loads no model."""
        s = self.settings
        return Runtime.for_data_dir(
            s.data_dir,
            cache=ModelCache(s.models_kept_loaded),
            device=s.device,
            precision=s.precision,
            batch_size=s.batch_size,
            auto_download=s.auto_download,
            compile=s.compile_models,
            recheck_seconds=s.weights_recheck_seconds,
            transkun_hop_seconds=s.transkun_hop_seconds,
        )

    @cached_property
    def catalog(self) -> Catalog:
        """What runs here, asked again whenever the weights directory or a registry file changes."""
        runtime = self.runtime

        def runnable() -> tuple[RunnableSpec, OptionScore]:
            runtime.registry.refresh(force=True)
            return runnable_map(runtime), option_scores(runtime)

        return Catalog.live(runnable, runtime.registry.stamp, self.settings.weights_recheck_seconds)

    @cached_property
    def executor(self) -> Executor:
        return self._executor or make_executor(self.settings, self.db, self.storage, worker_main=run_local_worker)

    @cached_property
    def jobs(self) -> JobService:
        return JobService(
            self.db, self.storage, self.settings, self.catalog, notify=self.notify, registry=self.runtime.registry
        )

    @cached_property
    def idempotency(self) -> IdempotencyKeys:
        return IdempotencyKeys(self.db, self.settings.idempotency_hours)

    @cached_property
    def accounts(self) -> AccountService:
        return AccountService(self.db, self.settings)

    @cached_property
    def news(self) -> NewsService:
        return NewsService(self.db)

    @cached_property
    def quality(self) -> QualityService:
        return QualityService(self.db, self.storage, self.settings, notify=self.notify)

    @cached_property
    def webhooks(self) -> WebhookService:
        """A user's endpoints, secrets, test events, redeliveries and delivery log."""
        return WebhookService(self.db, self.settings)

    @cached_property
    def readings(self) -> ReadingsService:
        return ReadingsService(self.db, self.settings.lease_seconds)

    @cached_property
    def weights_admin(self) -> WeightsAdmin:
        """The admin page's view of the weights registry, and its background downloads (API processes only)."""
        return WeightsAdmin(self.runtime.registry, max_running=self.settings.admin_max_weight_tasks)

    @cached_property
    def webhook_senders(self) -> WebhookSenders:
        """The outbox's senders: API processes deliver webhooks, separation workers never do."""
        present = JobPresenter(self.catalog, Links(self.settings, self.storage))
        return WebhookSenders(self.settings, self.db, self.jobs, present, self.quality)

    def notify(self) -> None:
        """New work was queued. A process without an executor (a CLI command, a worker) wakes nobody."""
        if "executor" in self.__dict__ or self._executor is not None:
            self.executor.notify()

    def worker(self, name: str) -> Worker:
        """A worker under `name` (imports the engine's model code and torch: only worker processes call this)."""
        from openmvsep.runner.worker import Worker

        return Worker(
            name,
            self.settings,
            db=self.db,
            storage=self.storage,
            runtime=self.runtime,
            catalog=self.catalog,
            jobs=self.jobs,
            quality=self.quality,
        )

    # ---------------------------------------------------------------- an API process's life

    def start(self) -> None:
        """What an API process does before it answers: the schema, scratch left by a killed process, the
        default Quality Checker dataset, the executor's workers, and the webhook senders (whatever the executor:
        every API process delivers the outbox's events)."""
        self.ensure_database(create=True)
        self.storage.sweep_dead_scratch()  # uploads a killed process was receiving
        ensure_default_dataset(self.quality)
        self.executor.start()
        self.webhook_senders.start()

    def database_answers(self) -> None:
        """One `SELECT 1` (the health check); raises whatever the driver raises."""
        with self.db.read_connection() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        if "webhook_senders" in self.__dict__:
            self.webhook_senders.stop()
        if "executor" in self.__dict__:
            self.executor.stop()
        if "db" in self.__dict__:
            self.db.dispose()


def run_local_worker(settings_json: str, name: str, wake, server_pid: int) -> None:
    """The entry point of a local executor's worker process (spawned: it starts from nothing)."""
    import multiprocessing as mp

    from openmvsep.logs import configure_logging
    from openmvsep.runner.local import worker_loop

    settings = Settings.model_validate_json(settings_json)
    mp.current_process().name = name  # each log line names the worker (its processName) as its claims do
    configure_logging(settings)
    worker_loop(lambda: Services(settings).worker(name), settings, wake, server_pid)
