"""What a pair chose for between sessions (charter.agreed touchpoint)

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
    with op.batch_alter_table("pairs") as batch:
        batch.add_column(sa.Column("touchpoint", sa.Text(), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("pairs") as batch:
        batch.drop_column("touchpoint")
