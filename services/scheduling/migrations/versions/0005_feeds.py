"""Per-person ICS feeds

Revision 0005, after 0004, written 2026-12-01.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "feeds",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feeds_program_participant", ["program_id", "participant_id"], unique=False
        )


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_index("ix_feeds_program_participant")

    op.drop_table("feeds")
