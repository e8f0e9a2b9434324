"""Sessions keyed by (program_id, session_id), found by (program_id, pair_id); parkable outbox

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
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_parked_at"), ["parked_at"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        replace_primary_key(batch_op, ["program_id", "session_id"])
        batch_op.drop_index(batch_op.f("ix_sessions_pair_id"))
        batch_op.drop_index(batch_op.f("ix_sessions_program_id"))
        batch_op.create_index("ix_sessions_program_pair", ["program_id", "pair_id"], unique=False)


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_program_pair")
        batch_op.create_index(batch_op.f("ix_sessions_program_id"), ["program_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sessions_pair_id"), ["pair_id"], unique=False)
        replace_primary_key(batch_op, ["session_id"])

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_parked_at"))
        batch_op.drop_column("parked_at")
