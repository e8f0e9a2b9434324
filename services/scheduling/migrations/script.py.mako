"""${message}

Revision ${up_revision}${(", after " + str(down_revision)) if down_revision else ""}, written ${create_date.strftime("%Y-%m-%d")}.
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    """Applies this revision."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Reverts this revision."""
    ${downgrades if downgrades else "pass"}
