"""The early fit check: each person's first rating of the other

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
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mentor_fit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("mentee_fit", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_column("mentee_fit")
        batch_op.drop_column("mentor_fit")
