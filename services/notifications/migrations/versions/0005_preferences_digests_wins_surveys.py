"""Preferences, unsubscriptions, held digest items, daily caps, weekly wins, survey answers

Revision 0005, after 0004, written 2026-12-02.
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
        "preferences",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("frequency", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant_id"),
    )
    op.create_table(
        "unsubscriptions",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant_id", "kind"),
    )
    op.create_table(
        "held_items",
        sa.Column("idempotency_key", sa.String(length=500), nullable=False),
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest_window", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    op.create_index(op.f("ix_held_items_program_id"), "held_items", ["program_id"], unique=False)
    op.create_table(
        "daily_counts",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant_id", "day"),
    )
    op.create_table(
        "wins",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("milestone_id", sa.String(length=200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "week", "milestone_id"),
    )
    op.create_table(
        "assessment_answers",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("quarter", sa.String(length=10), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant_id", "quarter"),
    )


def downgrade() -> None:
    """Reverts this revision."""
    op.drop_table("assessment_answers")
    op.drop_table("wins")
    op.drop_table("daily_counts")
    op.drop_index(op.f("ix_held_items_program_id"), table_name="held_items")
    op.drop_table("held_items")
    op.drop_table("unsubscriptions")
    op.drop_table("preferences")
