"""jobs: the workers' reported progress, and the base URL the creating request reached

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows already there: nothing reported (their status still says where they stand), no request's base known.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("link_base", sa.String(512), nullable=True))


def downgrade() -> None:
    # Plain ALTERs, not a batch: on SQLite a batch rebuilds `jobs` (copy, drop, rename), and dropping it deletes
    # the rows that reference it with ON DELETE CASCADE (webhook events, chunks); SQLite >= 3.35 drops a column
    # in place.
    op.drop_column("jobs", "link_base")
    op.drop_column("jobs", "progress")
