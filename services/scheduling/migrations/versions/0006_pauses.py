"""A pair's pause, and a charter agreed during it

Revision 0006, after 0005, written 2026-12-02.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "pauses",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checkin_days", sa.Integer(), nullable=True),
        sa.Column("charter", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("program_id", "pair_id"),
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_table("pauses")
