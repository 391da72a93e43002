"""accounts hardening: login throttle, invites, e-mail verification, registration address; e-mails normalised

Revision ID: 0006
Revises: 0005
"""

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _normalised(email: str) -> str:
    # The rule of service/accounts.normalise_email at the time of this migration, written out so that a later
    # change of the rule does not change what this migration did.
    return unicodedata.normalize("NFKC", email.strip()).casefold()


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("invited_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_throttle_last_failure_at"), ["last_failure_at"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        # Accounts that exist already were made before verification existed: they stay usable.
        batch_op.add_column(sa.Column("email_verified", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("verify_token_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("registered_from", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_users_verify_token_hash"), ["verify_token_hash"])
        batch_op.create_index("ix_users_registered_from", ["registered_from", "created_at"], unique=False)

    # Stored e-mails in their normal form (NFKC, casefolded), which login and register now compare exactly. Two
    # accounts whose addresses differ only in case or Unicode form cannot both have it: one already stored in
    # normal form keeps it, else the older; the other keeps its stored address (and is named in the log, for an
    # admin to merge or delete).
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
    taken: set[str] = set()
    rows = conn.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    unchanged = {email for _, email in rows if _normalised(email) == email}
    for user_id, email in rows:
        normal = _normalised(email)
        if normal == email:
            taken.add(email)
            continue
        if normal in taken or normal in unchanged:
            log.warning(
                "user %s: e-mail %r left as is; its normal form %r belongs to another account", user_id, email, normal
            )
            continue
        conn.execute(sa.update(users).where(users.c.id == user_id).values(email=normal))
        taken.add(normal)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_registered_from")
        batch_op.drop_constraint(batch_op.f("uq_users_verify_token_hash"), type_="unique")
        batch_op.drop_column("registered_from")
        batch_op.drop_column("verify_token_hash")
        batch_op.drop_column("email_verified")
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttle_last_failure_at"))
    op.drop_table("login_throttle")
    op.drop_table("invites")
