from alembic import context
from sqlalchemy import text

from openmvsep.store.db import make_engine
from openmvsep.store.models import Base

config = context.config
MIGRATION_LOCK_KEY = 0x6F6D7673  # any constant of our own: "omvs"


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("the alembic config has no sqlalchemy.url (openmvsep.store.migrate sets it)")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # API processes and workers starting together each run the upgrade: one at a time, and the
                # later ones find the schema at head (the lock is held until this transaction commits).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
