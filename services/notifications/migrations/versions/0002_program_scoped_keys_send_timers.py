"""Deliveries keyed by (program_id, delivery_id), their sends as timers, parkable outbox rows

Revision 0002, after 0001, written 2026-12-01. Pending deliveries keep their next attempt: it
becomes their send timer (and comes back from it on downgrade).
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import replace_primary_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# frozen here: a revision must not change meaning when the code's constants do
SEND = "notifications.send"
deliveries = sa.table(
    "deliveries",
    sa.column("program_id", sa.String),
    sa.column("delivery_id", sa.String),
    sa.column("status", sa.String),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
)
timers = sa.table(
    "timers",
    sa.column("program_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("key", sa.String),
    sa.column("due_at", sa.DateTime(timezone=True)),
    sa.column("status", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("attempts", sa.Integer),
)


def upgrade() -> None:
    """Applies this revision."""
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

    # a pending delivery's next attempt becomes its send timer, before the column goes
    op.execute(
        timers.insert().from_select(
            ["program_id", "kind", "key", "due_at", "status", "payload", "attempts"],
            sa.select(
                deliveries.c.program_id,
                sa.literal(SEND, sa.String),
                deliveries.c.delivery_id,
                deliveries.c.next_attempt_at,
                sa.literal("pending", sa.String),
                sa.literal({}, sa.JSON),
                sa.literal(0, sa.Integer),
            ).where(deliveries.c.status == "pending"),
        )
    )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "idempotency_key",
            existing_type=sa.VARCHAR(length=300),
            type_=sa.String(length=500),
            existing_nullable=False,
        )
        replace_primary_key(batch_op, ["program_id", "delivery_id"])
        batch_op.drop_index(batch_op.f("ix_deliveries_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_deliveries_program_id"))
        batch_op.drop_column("next_attempt_at")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_parked_at"), ["parked_at"], unique=False)


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_parked_at"))
        batch_op.drop_column("parked_at")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    # the send timer's due time, else now (a sent or failed delivery has no attempt due)
    due = (
        sa.select(timers.c.due_at)
        .where(
            timers.c.program_id == deliveries.c.program_id,
            timers.c.kind == SEND,
            timers.c.key == deliveries.c.delivery_id,
        )
        .scalar_subquery()
    )
    op.execute(deliveries.update().values(next_attempt_at=sa.func.coalesce(due, sa.func.now())))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_deliveries_program_id"), ["program_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deliveries_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        replace_primary_key(batch_op, ["delivery_id"])
        batch_op.alter_column(
            "idempotency_key",
            existing_type=sa.String(length=500),
            type_=sa.VARCHAR(length=300),
            existing_nullable=False,
        )

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_status_due_at")

    op.drop_table("timers")
