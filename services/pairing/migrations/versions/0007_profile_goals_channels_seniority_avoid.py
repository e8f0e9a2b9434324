"""The matching profile's goals, preferred channels, seniority (years) and avoid list

Revision 0007, after 0006, written 2026-12-02.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("goals", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("channels", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("seniority", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("avoid", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("avoid")
        batch_op.drop_column("seniority")
        batch_op.drop_column("channels")
        batch_op.drop_column("goals")
