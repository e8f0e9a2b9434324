"""A person's own digest hour (preferences.digest_hour; NULL: the deployment's DIGEST_HOUR)

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
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("digest_hour", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("digest_hour")
