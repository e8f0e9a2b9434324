"""The relationship (charters, goals, milestones, opportunities) and each round's unmatched
mentees (the next round's waitlist)

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
    with op.batch_alter_table("matching_rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unmatched_mentee_ids", sa.JSON(), nullable=True))
    op.create_table(
        "charters",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("mentor_version", sa.Integer(), nullable=True),
        sa.Column("mentee_version", sa.Integer(), nullable=True),
        sa.Column("agreed_version", sa.Integer(), nullable=True),
        sa.Column("agreed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "pair_id"),
    )
    op.create_table(
        "goals",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("goal_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=True),
        sa.Column("milestones", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("program_id", "goal_id"),
    )
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.create_index("ix_goals_pair_id", ["pair_id"], unique=False)
    op.create_table(
        "milestones",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("milestone_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("goal_id", sa.String(length=200), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=True),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        sa.Column("evidence", sa.String(length=2000), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "milestone_id"),
    )
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.create_index("ix_milestones_pair_id", ["pair_id"], unique=False)
    op.create_table(
        "opportunities",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("opportunity_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("offered_by", sa.String(length=200), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "opportunity_id"),
    )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.create_index("ix_opportunities_participant_id", ["participant_id"], unique=False)


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunities_participant_id")
    op.drop_table("opportunities")
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_index("ix_milestones_pair_id")
    op.drop_table("milestones")
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.drop_index("ix_goals_pair_id")
    op.drop_table("goals")
    op.drop_table("charters")
    with op.batch_alter_table("matching_rounds", schema=None) as batch_op:
        batch_op.drop_column("unmatched_mentee_ids")
