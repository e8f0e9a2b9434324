"""Counters split in shards (one per consumer), so concurrent consumers never share a row

Revision 0004, after 0003, written 2026-12-01.
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import replace_primary_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEYS = {
    "program_counters": ["program_id", "metric"],
    "daily_counters": ["program_id", "metric", "day"],
    "equity_counters": ["program_id", "cohort", "attribute", "group", "metric"],
}


def upgrade() -> None:
    """Applies this revision: today's sums become shard 0."""
    for table, keys in _KEYS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("shard", sa.Integer(), server_default="0", nullable=False)
            )
            replace_primary_key(batch_op, [*keys, "shard"])


def downgrade() -> None:
    """Reverts this revision, adding the shards of each counter together."""
    for table, keys in _KEYS.items():
        columns = ", ".join(f'"{k}"' for k in keys)
        op.execute(
            f"INSERT INTO {table} ({columns}, shard, value) "
            f"SELECT {columns}, -1, SUM(value) FROM {table} GROUP BY {columns}"
        )
        op.execute(f"DELETE FROM {table} WHERE shard <> -1")
        with op.batch_alter_table(table, schema=None) as batch_op:
            replace_primary_key(batch_op, keys)
            batch_op.drop_column("shard")
