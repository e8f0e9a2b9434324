"""Calendar entries: which session an iMIP reply's UID answers

Revision 0004, after 0003, written 2026-12-02.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "calendar_entries",
        sa.Column("uid", sa.String(length=300), nullable=False),
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("attendee_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("uid"),
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_table("calendar_entries")
