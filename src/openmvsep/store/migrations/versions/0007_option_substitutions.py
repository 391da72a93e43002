"""jobs remember the options asked for where a substitute ran

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs created before this column ran what they asked for: null means no substitution.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("substitutions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("substitutions")
