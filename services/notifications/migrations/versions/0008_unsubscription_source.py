"""Why an unsubscription was recorded (unsubscriptions.source: person or left), for the
unsubscribe counters on /readyz

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
    with op.batch_alter_table("unsubscriptions") as batch:
        batch.add_column(sa.Column("source", sa.String(20), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("unsubscriptions") as batch:
        batch.drop_column("source")
