"""Each round's unmatched mentees and why (reason code and the matcher's words)

Revision 0008, after 0007, written 2026-12-02.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "unmatched_mentees",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("round_id", sa.String(length=200), nullable=False),
        sa.Column("mentee_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "round_id", "mentee_id"),
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_table("unmatched_mentees")
