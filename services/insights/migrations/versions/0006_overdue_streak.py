"""A pair's overdue streak: the check-ins missed in a row since its last answered one

Revision 0006, after 0005, written 2026-12-02. pairs.overdue_streak holds [due (ISO, UTC),
check-in id] of each overdue, unanswered check-in due after pairs.reported_due_at, the latest
due instant of an answered one; both are filled from the check-ins already projected.
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DAY = dt.timedelta(days=1)


def _utc(value: dt.datetime | str | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def upgrade() -> None:
    """Applies this revision."""
    with op.batch_alter_table("pairs") as batch_op:
        batch_op.add_column(
            sa.Column("overdue_streak", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("reported_due_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    checkins = bind.execute(
        sa.text(
            "SELECT program_id, pair_id, checkin_id, status, due_at FROM checkins"
            " WHERE due_at IS NOT NULL AND status IN ('overdue', 'submitted')"
        )
    ).all()
    reported: dict[tuple[str, str], dt.datetime] = {}
    for program_id, pair_id, _, status, due_at in checkins:
        due = _utc(due_at)
        key = (program_id, pair_id)
        if (
            status == "submitted"
            and due is not None
            and (key not in reported or due > reported[key])
        ):
            reported[key] = due
    streaks: dict[tuple[str, str], list[list[str]]] = {}
    for program_id, pair_id, checkin_id, status, due_at in checkins:
        due, key = _utc(due_at), (program_id, pair_id)
        if status == "overdue" and due is not None and due > reported.get(key, due - _DAY):
            streaks.setdefault(key, []).append([due.isoformat(), checkin_id])
    pairs = sa.table(
        "pairs",
        sa.column("program_id", sa.String()),
        sa.column("pair_id", sa.String()),
        sa.column("overdue_streak", sa.JSON()),
        sa.column("reported_due_at", sa.DateTime(timezone=True)),
    )
    for key in reported.keys() | streaks.keys():
        bind.execute(
            pairs.update()
            .where(pairs.c.program_id == key[0], pairs.c.pair_id == key[1])
            .values(overdue_streak=sorted(streaks.get(key, [])), reported_due_at=reported.get(key))
        )


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("pairs") as batch_op:
        batch_op.drop_column("reported_due_at")
        batch_op.drop_column("overdue_streak")
