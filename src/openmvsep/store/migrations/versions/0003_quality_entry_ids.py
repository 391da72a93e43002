"""quality entry ids never repeat

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:00:00

SQLite gives a deleted newest row's id (max(id) + 1) to the next row unless the table is AUTOINCREMENT, so an
old link to a deleted entry would show someone else's model. SQLite cannot add AUTOINCREMENT to a table: it is
rebuilt (Alembic's batch mode), keeping every row and id; its sequence starts at the largest id kept (an id
deleted before this migration is not known any more). PostgreSQL's sequences never hand an id out twice:
nothing to do there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEPT_SCORES = "_qc_scores_kept"


def upgrade() -> None:
    _rebuild_entries(autoincrement=True)


def downgrade() -> None:
    _rebuild_entries(autoincrement=False)


def _rebuild_entries(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The rebuild drops the old table, and with foreign keys on (store/db.py; the pragma cannot change inside
    # the migration's transaction) that drop deletes every score through qc_scores' ON DELETE CASCADE: keep
    # them aside and put them back.
    op.execute(sa.text(f"CREATE TEMP TABLE {KEPT_SCORES} AS SELECT * FROM qc_scores"))
    with op.batch_alter_table("qc_entries", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass  # rebuilt as it is, columns, keys and indexes, but for AUTOINCREMENT
    op.execute(sa.text(f"INSERT INTO qc_scores SELECT * FROM {KEPT_SCORES}"))
    op.execute(sa.text(f"DROP TABLE {KEPT_SCORES}"))
