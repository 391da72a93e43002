"""idempotency keys; jobs remember what makes their result reusable and whose result they reused

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
    )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.create_index(batch.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)
    # Existing jobs keep NULL in both: they are never offered for reuse (their inputs' contents were not hashed).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reused_from", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_jobs_result_key"), ["result_key"], unique=False)


def downgrade() -> None:
    # Plain ALTERs, not a batch: on SQLite a batch rebuilds `jobs` (copy, drop, rename), and dropping it deletes
    # the rows that reference it with ON DELETE CASCADE (webhook events, chunks); SQLite >= 3.35 drops a column
    # in place.
    op.drop_index(op.f("ix_jobs_result_key"), table_name="jobs")
    op.drop_column("jobs", "reused_from")
    op.drop_column("jobs", "result_key")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_index(batch.f("ix_idempotency_keys_created_at"))
    op.drop_table("idempotency_keys")
