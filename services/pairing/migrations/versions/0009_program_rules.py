"""Each program's stored round rules (weights, minimum shared minutes, objective, ...)

Revision 0009, after 0008, written 2026-12-03.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "program_rules",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id"),
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_table("program_rules")
