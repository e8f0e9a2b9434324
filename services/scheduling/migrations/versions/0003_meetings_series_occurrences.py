"""Meetings (a kickoff or a series) with occurrences, busy-time indexes, absences, timers, fairness

Occurrences of a series share their meeting's UID, so sessions.uid is no longer unique (the
meetings table holds the unique UID). Existing kickoffs become single-session meetings.

Revision 0003, after 0002, written 2026-12-01.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "absences",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant_id", "start"),
    )
    op.create_table(
        "meetings",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("meeting_id", sa.String(length=200), nullable=False),
        sa.Column("pair_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("uid", sa.String(length=300), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("rrule", sa.String(length=200), nullable=True),
        sa.Column("first_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mentor_id", sa.String(length=200), nullable=False),
        sa.Column("mentee_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "meeting_id"),
        sa.UniqueConstraint("uid"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index("ix_meetings_program_pair", ["program_id", "pair_id"], unique=False)

    op.create_table(
        "timers",
        sa.Column("program_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("program_id", "kind", "key"),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_status_due_at", ["status", "due_at"], unique=False)

    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("edge_burden", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meeting_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("recurrence_id", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("mentor_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("mentee_id", sa.String(length=200), nullable=True))
        batch_op.create_index(
            "ix_sessions_program_mentee", ["program_id", "mentee_id", "start"], unique=False
        )
        batch_op.create_index(
            "ix_sessions_program_mentor", ["program_id", "mentor_id", "start"], unique=False
        )
    _drop_unique_session_uid()
    _kickoffs_become_meetings()


UNNAMED = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _drop_unique_session_uid() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("sessions_uid_key", "sessions", type_="unique")
        return
    # SQLite: the constraint has no name; batch mode names it to drop it while copying the table
    with op.batch_alter_table("sessions", naming_convention=UNNAMED) as batch_op:
        batch_op.drop_constraint("uq_sessions_uid", type_="unique")


def _kickoffs_become_meetings() -> None:
    bind = op.get_bind()
    sessions = sa.table(
        "sessions",
        *(sa.column(c) for c in ("program_id", "session_id", "pair_id", "kind", "uid")),
        *(sa.column(c) for c in ("sequence", "anchor_timezone", "start", "end")),
        sa.column("attendee_ids", sa.JSON),
        *(sa.column(c) for c in ("meeting_id", "mentor_id", "mentee_id")),
    )
    meetings = sa.table(
        "meetings",
        *(sa.column(c) for c in ("program_id", "meeting_id", "pair_id", "kind", "uid")),
        *(sa.column(c) for c in ("sequence", "timezone", "minutes", "mentor_id", "mentee_id")),
    )
    for row in bind.execute(sa.select(sessions)).mappings().all():
        mentor, mentee = [*row["attendee_ids"], "", ""][:2]
        bind.execute(
            sa.insert(meetings).values(
                program_id=row["program_id"],
                meeting_id=row["session_id"],
                pair_id=row["pair_id"],
                kind=row["kind"],
                uid=row["uid"],
                sequence=row["sequence"],
                timezone=row["anchor_timezone"],
                minutes=60,
                mentor_id=mentor,
                mentee_id=mentee,
            )
        )
        bind.execute(
            sa.update(sessions)
            .where(
                sessions.c.program_id == row["program_id"],
                sessions.c.session_id == row["session_id"],
            )
            .values(meeting_id=row["session_id"], mentor_id=mentor, mentee_id=mentee)
        )


def downgrade() -> None:
    """Reverts this revision (fails if a series' occurrences share a UID: that is data)."""
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_unique_constraint("sessions_uid_key", ["uid"])
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_program_mentor")
        batch_op.drop_index("ix_sessions_program_mentee")
        batch_op.drop_column("mentee_id")
        batch_op.drop_column("mentor_id")
        batch_op.drop_column("recurrence_id")
        batch_op.drop_column("meeting_id")

    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("edge_burden")
        batch_op.drop_column("role")

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_status_due_at")

    op.drop_table("timers")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_program_pair")

    op.drop_table("meetings")
    op.drop_table("absences")
