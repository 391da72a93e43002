"""a failed job's inputs are deleted at once: the janitor's marker

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows of jobs that failed before this column existed keep their inputs until they expire, as they did.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("inputs_deleted", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("inputs_deleted")
