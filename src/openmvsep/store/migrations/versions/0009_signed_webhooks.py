"""signed webhooks: users' endpoints and signing secrets, events beyond jobs, and every attempt logged

Revision ID: 0009
Revises: 0008

The outbox's events may now report a Quality Checker entry or be a test: `job_id` becomes nullable, and each
event names whose it is (`user_id`, filled for the events already there from their job) and, for an endpoint's
event, the endpoint. SQLite rebuilds webhook_events for that (Alembic's batch mode), keeping every row; nothing
references the table yet, so the rebuild's drop deletes nothing else.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _secret_columns() -> list[sa.Column]:
    return [
        sa.Column("secret", sa.String(length=80), nullable=False),
        sa.Column("previous_secret", sa.String(length=80), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        *_secret_columns(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_endpoints_user_id", "webhook_endpoints", ["user_id"], unique=False)
    op.create_table(
        "webhook_secrets",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        *_secret_columns(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("webhook_events") as batch:
        batch.alter_column("job_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("entry_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("endpoint_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch.create_foreign_key("fk_webhook_events_entry_id", "qc_entries", ["entry_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key("fk_webhook_events_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key(
            "fk_webhook_events_endpoint_id", "webhook_endpoints", ["endpoint_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_webhook_events_entry_id", ["entry_id"], unique=False)
        batch.create_index("ix_webhook_events_user_id", ["user_id"], unique=False)
        batch.create_index("ix_webhook_events_endpoint_id", ["endpoint_id"], unique=False)
    # The events already queued are jobs' `webhook_url` events: their user is their job's.
    op.execute(
        sa.text(
            "UPDATE webhook_events SET queued_at = created_at, "
            "user_id = (SELECT jobs.user_id FROM jobs WHERE jobs.id = webhook_events.job_id)"
        )
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_event_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["webhook_event_id"], ["webhook_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_attempts_event", "webhook_attempts", ["webhook_event_id", "attempt"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_event", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    # Events that are not a job's have no place in the old table.
    op.execute(sa.text("DELETE FROM webhook_events WHERE job_id IS NULL OR endpoint_id IS NOT NULL"))
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_index("ix_webhook_events_endpoint_id")
        batch.drop_index("ix_webhook_events_user_id")
        batch.drop_index("ix_webhook_events_entry_id")
        batch.drop_constraint("fk_webhook_events_endpoint_id", type_="foreignkey")
        batch.drop_constraint("fk_webhook_events_user_id", type_="foreignkey")
        batch.drop_constraint("fk_webhook_events_entry_id", type_="foreignkey")
        batch.drop_column("queued_at")
        batch.drop_column("endpoint_id")
        batch.drop_column("user_id")
        batch.drop_column("entry_id")
        batch.alter_column("job_id", existing_type=sa.Integer(), nullable=False)
    op.drop_table("webhook_secrets")
    op.drop_index("ix_webhook_endpoints_user_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
