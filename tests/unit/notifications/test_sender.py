"""The sender on a real SQLite database and a real SMTP server, driven by a fake clock."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from cli.launcher import free_port
from cli.mailcatcher import MailCatcher
from services.notifications import deliveries, store
from services.notifications.handlers import on_participant_registered, on_session_scheduled
from services.notifications.sender import MAX_ATTEMPTS, SmtpConnection, send_handler
from shared.timers import TimerRunner
from tests.support.handlers import HandlerDb, handler_db
from tests.unit.notifications.test_handlers import register_pair, registered, scheduled


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
async def db(tmp_path: Path, smtp_port: int) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from="team@mentoring.example",
        smtp_port=smtp_port,
        smtp_timeout_seconds=5,
    ) as db:
        yield db


@contextlib.contextmanager
def catching(folder: Path, port: int) -> Iterator[MailCatcher]:
    catcher = MailCatcher(folder, port=port)
    catcher.start()
    try:
        yield catcher
    finally:
        catcher.stop()


class _RefuseRecipients:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        return "550 5.1.1 no such user here"


@contextlib.asynccontextmanager
async def sender(db: HandlerDb) -> AsyncIterator[TimerRunner]:
    smtp = SmtpConnection(db.settings)
    handler = send_handler(sessions=db.sessions, smtp=smtp, mail_from=db.settings.mail_from)
    try:
        yield TimerRunner(
            store.timers,
            {deliveries.SEND: handler},
            sessions=db.sessions,
            unit_of_work=db.unit_of_work,
            clock=db.clock,
        )
    finally:
        await smtp.close()


async def outbox(db: HandlerDb) -> list[tuple[str, dict[str, Any]]]:
    table = db.tables.outbox
    async with db.sessions() as session:
        rows = await session.execute(select(table.c.subject, table.c.payload).order_by(table.c.id))
        return [(subject, json.loads(payload)) for subject, payload in rows]


async def by_recipient(db: HandlerDb) -> dict[str, store.Delivery]:
    async with db.sessions() as session:
        return {d.recipient_id: d for d in await session.scalars(select(store.Delivery))}


async def queue_invitations(db: HandlerDb) -> None:
    await register_pair(db, "prog")
    await db.apply(on_session_scheduled, scheduled("prog"))


async def test_each_due_delivery_is_sent_once_and_reported_sent(db, tmp_path, smtp_port):
    await queue_invitations(db)
    with catching(tmp_path / "mail", smtp_port) as catcher:
        async with sender(db) as runner:
            assert await runner.run_due() == 2
            db.clock.advance(dt.timedelta(weeks=2))
            assert await runner.run_due() == 0
        caught = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in catcher.messages()
        ]
    rows = await by_recipient(db)
    assert sorted(m["Message-ID"] for m in caught) == sorted(d.message_id for d in rows.values())
    assert {(d.status, d.attempts) for d in rows.values()} == {("sent", 1)}
    sent = await outbox(db)
    assert [s for s, _ in sent] == ["mentorship.notification.sent"] * 2
    assert sorted(body["delivery_id"] for _, body in sent) == sorted(
        d.delivery_id for d in rows.values()
    )
    assert {body["message_id"] for _, body in sent} == {d.message_id for d in rows.values()}


async def test_while_smtp_is_down_sends_back_off_and_the_mail_arrives_once_it_is_back(
    db, tmp_path, smtp_port
):
    await queue_invitations(db)
    async with sender(db) as runner:
        assert await runner.run_due() == 2  # connection refused: nothing listens yet
        assert await runner.next_due() == db.clock.now() + dt.timedelta(seconds=5)
        db.clock.advance(dt.timedelta(seconds=5))
        assert await runner.run_due() == 2
        assert await runner.next_due() == db.clock.now() + dt.timedelta(seconds=10)
        assert await outbox(db) == []
        assert {d.status for d in (await by_recipient(db)).values()} == {"pending"}
        with catching(tmp_path / "mail", smtp_port) as catcher:
            db.clock.advance(dt.timedelta(seconds=10))
            assert await runner.run_due() == 2
            db.clock.advance(dt.timedelta(days=3))
            assert await runner.run_due() == 0
            assert len(catcher.messages()) == 2
    rows = await by_recipient(db)
    assert {(d.status, d.attempts) for d in rows.values()} == {("sent", 3)}
    assert [s for s, _ in await outbox(db)] == ["mentorship.notification.sent"] * 2


async def test_a_recipient_refused_with_5xx_fails_at_once_and_is_reported_failed(db, smtp_port):
    await queue_invitations(db)
    controller = Controller(_RefuseRecipients(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        async with sender(db) as runner:
            assert await runner.run_due() == 2
            db.clock.advance(dt.timedelta(weeks=1))
            assert await runner.run_due() == 0
    finally:
        controller.stop()
    rows = await by_recipient(db)
    assert {(d.status, d.attempts) for d in rows.values()} == {("failed", 1)}
    assert all("550" in (d.last_error or "") for d in rows.values())
    failed = await outbox(db)
    assert [s for s, _ in failed] == ["mentorship.notification.failed"] * 2
    assert {(body["attempts"], "no such user" in body["reason"]) for _, body in failed} == {
        (1, True)
    }


async def test_a_send_that_keeps_failing_is_given_up_after_the_last_attempt(db):
    await db.apply(on_participant_registered, registered("prog", "e"))
    await db.apply(on_session_scheduled, scheduled("prog", "e"))
    async with sender(db) as runner:
        for _ in range(MAX_ATTEMPTS):
            assert await runner.run_due() == 1
            upcoming = await runner.next_due()
            if upcoming is not None:
                db.clock.advance(upcoming - db.clock.now())
        assert await runner.next_due() is None
    [row] = (await by_recipient(db)).values()
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    [(subject, body)] = await outbox(db)
    assert subject == "mentorship.notification.failed"
    assert body["attempts"] == MAX_ATTEMPTS
    assert "SMTPConnectError" in body["reason"]
