"""Integrity in the database: one open pair per mentee, a (mentor, mentee) pair once, mentors'
slots counted

Revision 0003, after 0002, written 2026-12-02.

Rows an earlier race left behind are repaired first (two replicas could pair one mentee twice):
a repeated (mentor, mentee) pair keeps its earliest row; a mentee's later open pairs end; each
mentor's counter starts at the open pairs left.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = "status IN ('proposed', 'active', 'paused')"
EARLIER = "(q.formed_at < p.formed_at OR (q.formed_at = p.formed_at AND q.pair_id < p.pair_id))"


def upgrade() -> None:
    """Applies this revision."""
    op.execute(
        "DELETE FROM pairs WHERE EXISTS (SELECT 1 FROM pairs q WHERE q.program_id = "
        "pairs.program_id AND q.mentor_id = pairs.mentor_id AND q.mentee_id = pairs.mentee_id "
        f"AND {EARLIER.replace('p.', 'pairs.')})"
    )
    op.execute(
        f"UPDATE pairs SET status = 'ended' WHERE {OPEN} AND EXISTS (SELECT 1 FROM pairs q "
        "WHERE q.program_id = pairs.program_id AND q.mentee_id = pairs.mentee_id AND "
        f"q.{OPEN} AND {EARLIER.replace('p.', 'pairs.')})"
    )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("active_pairs", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE participants SET active_pairs = (SELECT count(*) FROM pairs WHERE "
        "pairs.program_id = participants.program_id AND pairs.mentor_id = "
        f"participants.participant_id AND pairs.{OPEN})"
    )
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_pairs_once", ["program_id", "mentor_id", "mentee_id"])
        batch_op.create_index(
            "uq_pairs_open_mentee",
            ["program_id", "mentee_id"],
            unique=True,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )


def downgrade() -> None:
    """Reverts this revision (the repaired rows stay repaired)."""
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_index("uq_pairs_open_mentee")
        batch_op.drop_constraint("uq_pairs_once", type_="unique")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("active_pairs")
