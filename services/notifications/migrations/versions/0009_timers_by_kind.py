"""Timers looked up by status, kind and due time (ix_timers_status_kind_due_at), not by status
and due time alone: a loop asks for its own kinds, and another loop's due backlog (a round's
thousands of due sends) was read row by row at every poll

Revision 0009, after 0008, written 2026-12-04.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    with op.batch_alter_table("timers") as batch_op:
        batch_op.drop_index("ix_timers_status_due_at")
        batch_op.create_index(
            "ix_timers_status_kind_due_at", ["status", "kind", "due_at"], unique=False
        )


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("timers") as batch_op:
        batch_op.drop_index("ix_timers_status_kind_due_at")
        batch_op.create_index("ix_timers_status_due_at", ["status", "due_at"], unique=False)
