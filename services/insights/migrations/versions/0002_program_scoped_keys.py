"""Pairs, sessions and deliveries keyed by (program_id, id), each id unique; parkable outbox

Revision 0002, after 0001, written 2026-12-01.
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import replace_primary_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "delivery_id",
            existing_type=sa.VARCHAR(length=36),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        replace_primary_key(batch_op, ["program_id", "delivery_id"])
        batch_op.drop_index(batch_op.f("ix_deliveries_program_id"))
        batch_op.create_unique_constraint("uq_deliveries_delivery_id", ["delivery_id"])

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_parked_at"), ["parked_at"], unique=False)

    with op.batch_alter_table("pairs", schema=None) as batch_op:
        replace_primary_key(batch_op, ["program_id", "pair_id"])
        batch_op.drop_index(batch_op.f("ix_pairs_program_id"))
        batch_op.create_unique_constraint("uq_pairs_pair_id", ["pair_id"])

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        replace_primary_key(batch_op, ["program_id", "session_id"])
        batch_op.drop_index(batch_op.f("ix_sessions_program_id"))
        batch_op.create_unique_constraint("uq_sessions_session_id", ["session_id"])


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_sessions_session_id", type_="unique")
        batch_op.create_index(batch_op.f("ix_sessions_program_id"), ["program_id"], unique=False)
        replace_primary_key(batch_op, ["session_id"])

    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_pairs_pair_id", type_="unique")
        batch_op.create_index(batch_op.f("ix_pairs_program_id"), ["program_id"], unique=False)
        replace_primary_key(batch_op, ["pair_id"])

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_parked_at"))
        batch_op.drop_column("parked_at")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_deliveries_delivery_id", type_="unique")
        batch_op.create_index(batch_op.f("ix_deliveries_program_id"), ["program_id"], unique=False)
        replace_primary_key(batch_op, ["delivery_id"])
        batch_op.alter_column(
            "delivery_id",
            existing_type=sa.String(length=200),
            type_=sa.VARCHAR(length=36),
            existing_nullable=False,
        )
