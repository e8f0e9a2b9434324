"""Sessions of one status listed latest first from an index (keyset pages, no sort)

Revision 0005, after 0004, written 2026-12-02.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_index(
        "ix_sessions_status_start",
        "sessions",
        ["program_id", "status", "start", "session_id"],
        unique=False,
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_index("ix_sessions_status_start", table_name="sessions")
