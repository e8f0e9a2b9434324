"""The sender on a real SQLite database and real SMTP servers (aiosmtpd), with a fake clock."""

from __future__ import annotations

import asyncio
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
from services.notifications.breaker import Breaker
from services.notifications.handlers import (
    on_pair_formed,
    on_participant_registered,
    on_session_scheduled,
)
from services.notifications.journal import SentJournal
from services.notifications.sender import MAX_ATTEMPTS, Sender
from services.notifications.smtp import SmtpPool
from shared.events import PairFormed, ParticipantRegistered
from tests.support.factories import envelope, registration
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
        smtp_timeout_seconds=1,
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


@contextlib.contextmanager
def smtp_server(handler: Any, port: int, **options: Any) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


class Sink:
    """Keeps each message's envelope and bytes; refuses recipients starting with 'refuse'."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope.rcpt_tos[0], envelope.original_content or b""))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
            for _, raw in self.messages
        ]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def sender(db: HandlerDb, tmp_path: Path, **options: Any) -> AsyncIterator[Sender]:
    pool = SmtpPool(db.settings, 2)
    journal = SentJournal(tmp_path / "journal")
    s = Sender(
        sessions=db.sessions,
        unit_of_work=db.unit_of_work,
        clock=db.clock,
        pool=pool,
        journal=journal,
        mail_from=db.settings.mail_from,
        **options,
    )
    try:
        yield s
    finally:
        await pool.close()
        journal.close()


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


async def queue_many(db: HandlerDb, count: int, *, email_of: Any = None) -> None:
    for i in range(count):
        body = registration("prog", f"p{i}")
        if email_of and email_of(i):
            body["email"] = email_of(i)
        await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
        await db.apply(on_session_scheduled, scheduled("prog", f"p{i}", session_id=f"s{i}"))


async def next_due(db: HandlerDb) -> dt.datetime | None:
    async with db.sessions() as session:
        due = await session.scalar(
            select(store.timers.c.due_at).where(
                store.timers.c.status == "pending", store.timers.c.kind == deliveries.SEND
            )
        )
    return None if due is None else due.replace(tzinfo=dt.UTC)  # SQLite hands it back naive


async def test_each_due_delivery_is_sent_once_and_reported_sent(db, tmp_path, smtp_port):
    await queue_invitations(db)
    with catching(tmp_path / "mail", smtp_port) as catcher:
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 2
            db.clock.advance(dt.timedelta(weeks=2))
            assert await s.run_due() == 0
        caught = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in catcher.messages()
        ]
    rows = await by_recipient(db)
    assert sorted(m["Message-ID"] for m in caught) == sorted(d.message_id for d in rows.values())
    assert {(d.status, d.attempts) for d in rows.values()} == {("sent", 1)}
    sent = await outbox(db)
    assert [s for s, _ in sent] == ["mentorship.notification.sent"] * 2
    assert {body["message_id"] for _, body in sent} == {d.message_id for d in rows.values()}


async def test_while_smtp_is_down_sends_back_off_and_the_mail_arrives_once_it_is_back(
    db, tmp_path, smtp_port
):
    await queue_invitations(db)
    async with sender(db, tmp_path) as s:
        assert await s.run_once() == 2  # connection refused: nothing listens yet
        due = await next_due(db)
        assert due is not None
        assert dt.timedelta(seconds=2.5) <= due - db.clock.now() <= dt.timedelta(seconds=5)
        assert await s.run_once() == 0  # not due yet
        assert await outbox(db) == []
        with catching(tmp_path / "mail", smtp_port) as catcher:
            db.clock.advance(dt.timedelta(seconds=5))
            assert await s.run_due() == 2
            db.clock.advance(dt.timedelta(days=3))
            assert await s.run_due() == 0
            assert len(catcher.messages()) == 2
    rows = await by_recipient(db)
    assert {(d.status, d.attempts) for d in rows.values()} == {("sent", 2)}
    assert [s for s, _ in await outbox(db)] == ["mentorship.notification.sent"] * 2


async def test_a_refused_recipient_fails_at_once_and_the_connection_is_reset_for_the_next(
    db, tmp_path, smtp_port
):
    await queue_many(db, 4, email_of=lambda i: f"refuse{i}@example.org" if i % 2 else None)
    sink = Sink()
    with smtp_server(sink, smtp_port):
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 4
    rows = await by_recipient(db)
    assert {k: d.status for k, d in rows.items()} == {
        "p0": "sent",
        "p1": "failed",
        "p2": "sent",
        "p3": "failed",
    }
    assert all("550" in (rows[k].last_error or "") for k in ("p1", "p3"))
    assert len(sink.messages) == 2
    failed = [body for subject, body in await outbox(db) if subject.endswith("failed")]
    assert {(b["recipient_id"], b["attempts"]) for b in failed} == {("p1", 1), ("p3", 1)}
    assert all("no such user" in b["reason"] for b in failed)


async def test_a_send_that_keeps_failing_is_given_up_after_the_last_attempt(db, tmp_path):
    await db.apply(on_participant_registered, registered("prog", "e"))
    await db.apply(on_session_scheduled, scheduled("prog", "e"))
    async with sender(db, tmp_path, breaker=Breaker(threshold=1000)) as s:
        for _ in range(MAX_ATTEMPTS):
            assert await s.run_once() == 1
            upcoming = await next_due(db)
            if upcoming is not None:
                db.clock.advance(upcoming - db.clock.now())
        assert await next_due(db) is None
    [row] = (await by_recipient(db)).values()
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    [(subject, body)] = await outbox(db)
    assert subject == "mentorship.notification.failed"
    assert body["attempts"] == MAX_ATTEMPTS
    assert "SMTPConnectError" in body["reason"]


async def test_when_the_server_is_away_the_breaker_opens_and_spares_the_backlog(
    db, tmp_path, smtp_port
):
    await queue_many(db, 12)
    clock = FakeMonotonic()
    async with sender(db, tmp_path, monotonic=clock, breaker=Breaker(threshold=3)) as s:
        assert await s.run_once() == 12
        assert s.breaker.state == "open"
        assert "SMTP circuit open" in (s.problem() or "")
        async with db.sessions() as session:
            attempts = list(await session.scalars(select(store.timers.c.attempts)))
        assert sum(attempts) <= 4  # the failures that opened it (two connections), no more
        db.clock.advance(dt.timedelta(hours=1))
        assert await s.run_once() == 0  # open: nothing claimed
        sink = Sink()
        with smtp_server(sink, smtp_port):
            clock.now += 10  # cooldown over: one probe, then all of it
            assert await s.run_once() == 1
            assert s.breaker.state == "closed" and s.problem() is None
            assert await s.run_due() == 11
    assert len(sink.messages) == 12
    assert len(set(sink.message_ids())) == 12
    assert {d.status for d in (await by_recipient(db)).values()} == {"sent"}


async def test_a_hanging_server_times_out_and_opens_the_breaker(db, tmp_path, smtp_port):
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never greets

    server = await asyncio.start_server(hang, "127.0.0.1", smtp_port)
    await queue_many(db, 6)
    try:
        async with sender(db, tmp_path, breaker=Breaker(threshold=2)) as s:
            started = asyncio.get_running_loop().time()
            await s.run_once()
            assert asyncio.get_running_loop().time() - started < 5  # not 6 x the timeout
            assert s.breaker.state == "open"
    finally:
        server.close()
    assert {d.status for d in (await by_recipient(db)).values()} == {"pending"}


async def test_international_addresses_go_with_smtputf8_and_fail_clearly_without_it(
    db, tmp_path, smtp_port
):
    await queue_many(
        db, 3, email_of=lambda i: ["üser@example.org", "ana@exämple.org", "bo@example.org"][i]
    )
    sink = Sink()
    with smtp_server(sink, smtp_port, enable_SMTPUTF8=False):
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 3
    rows = await by_recipient(db)
    assert rows["p0"].status == "failed"
    assert "SMTPUTF8" in (rows["p0"].last_error or "")
    assert (rows["p1"].status, rows["p2"].status) == ("sent", "sent")
    assert sorted(to for to, _ in sink.messages) == ["ana@xn--exmple-cua.org", "bo@example.org"]


async def test_an_address_that_needs_smtputf8_is_sent_with_it_when_the_server_offers_it(
    db, tmp_path, smtp_port
):
    await queue_many(db, 1, email_of=lambda i: "üser@exämple.org")
    sink = Sink()
    with smtp_server(sink, smtp_port, enable_SMTPUTF8=True):
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 1
    [(to, raw)] = sink.messages
    assert to == "üser@xn--exmple-cua.org"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"].addresses[0].domain == "xn--exmple-cua.org"


class _Flaky:
    """A unit of work that fails while `down` is set (the database is away); `down_after(n)`:
    the next n units of work still open (the claim of a batch), the database is away after."""

    def __init__(self, db: HandlerDb) -> None:
        self.db = db
        self.down = False
        self._still_up = 0

    def down_after(self, n: int) -> None:
        self.down, self._still_up = True, n

    def __call__(self) -> Any:
        if self.down and self._still_up:
            self._still_up -= 1
        elif self.down:
            raise ConnectionRefusedError(111, "database unavailable")
        return self.db.unit_of_work()


async def test_a_database_outage_after_the_250_delays_the_record_and_never_resends(
    db, tmp_path, smtp_port
):
    await queue_many(db, 5)
    flaky = _Flaky(db)
    sink = Sink()
    with smtp_server(sink, smtp_port):
        async with sender(db, tmp_path) as s:
            s._unit_of_work = flaky
            flaky.down_after(1)  # the batch is claimed; the database goes away during the sends
            with pytest.raises(ConnectionRefusedError):
                await s.run_once()
            assert len(sink.messages) == 5
            for _ in range(3):  # still down: nothing claimed, nothing sent
                with pytest.raises(ConnectionRefusedError):
                    await s.run_once()
            flaky.down = False
            db.clock.advance(dt.timedelta(hours=1))  # leases long gone by now
            assert await s.run_once() == 0
            assert await s.run_due() == 0
    assert len(sink.messages) == 5
    assert {d.status for d in (await by_recipient(db)).values()} == {"sent"}
    assert [x for x, _ in await outbox(db)] == ["mentorship.notification.sent"] * 5


async def test_sends_journalled_by_a_process_that_died_are_recorded_not_resent(
    db, tmp_path, smtp_port
):
    await queue_many(db, 3)
    sink = Sink()
    with smtp_server(sink, smtp_port):
        flaky = _Flaky(db)
        pool = SmtpPool(db.settings, 2)
        dead = SentJournal(tmp_path / "journal")
        first = Sender(
            sessions=db.sessions,
            unit_of_work=flaky,
            clock=db.clock,
            pool=pool,
            journal=dead,
            mail_from=db.settings.mail_from,
        )
        flaky.down_after(1)  # it claims, sends, and dies before recording
        with pytest.raises(ConnectionRefusedError):
            await first.run_once()
        await pool.close()
        import os

        os.close(dead._fd)  # the process is gone: its lock with it, its file left behind
        db.clock.advance(dt.timedelta(hours=1))  # its leases ran out
        async with sender(db, tmp_path) as second:
            await second.adopt_orphans()
            assert await second.run_due() == 0
    assert len(sink.messages) == 3
    assert {d.status for d in (await by_recipient(db)).values()} == {"sent"}
    assert not dead.path.exists()


class _Slow:
    """A unit of work that takes its time to open (a busy database)."""

    def __init__(self, db: HandlerDb) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        async with self.db.unit_of_work() as uow:
            yield uow
            await asyncio.sleep(0.05)  # before the commit: the batch on the wire finishes


async def test_outcomes_sorted_while_a_batch_is_recorded_are_recorded_too(db, tmp_path, smtp_port):
    await queue_many(db, 30)
    sink = Sink()
    with smtp_server(sink, smtp_port):
        async with sender(db, tmp_path, batch=4) as s:
            s._unit_of_work = _Slow(db)
            assert await s.run_due() == 30
    assert len(sink.messages) == 30
    assert {d.status for d in (await by_recipient(db)).values()} == {"sent"}
    assert [x for x, _ in await outbox(db)] == ["mentorship.notification.sent"] * 30


async def test_one_batch_of_several_programs_sends_and_records_each_delivery_once(
    db, tmp_path, smtp_port
):
    # the batch's deliveries are looked up by (program, delivery) grouped per program
    # (shared.db.keys_in), not as a row-value IN list
    for program in ("prog-a", "prog-b", "prog-c"):
        await register_pair(db, program)
        await db.apply(on_session_scheduled, scheduled(program))
    with catching(tmp_path / "mail", smtp_port) as catcher:
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 6
            db.clock.advance(dt.timedelta(weeks=2))
            assert await s.run_due() == 0
        caught = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Message-ID"]
            for p in catcher.messages()
        ]
    async with db.sessions() as session:
        rows = list(await session.scalars(select(store.Delivery)))
    assert {r.program_id for r in rows} == {"prog-a", "prog-b", "prog-c"}
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert sorted(caught) == sorted(r.message_id for r in rows)
    sent = await outbox(db)
    assert sorted(body["delivery_id"] for _, body in sent) == sorted(r.delivery_id for r in rows)


async def test_invitations_go_ahead_of_a_backlog_of_notices_queued_before_them(
    db, tmp_path, smtp_port
):
    for i in range(6):  # a round's pair-formed mails, queued first
        for who in (f"m{i}", f"e{i}"):
            await db.apply(on_participant_registered, registered("prog", who))
        formed = envelope(
            "prog", pair_id=f"pair-{i}", round_id="r1", mentor_id=f"m{i}", mentee_id=f"e{i}",
            language="en",
        )  # fmt: skip
        await db.apply(on_pair_formed, PairFormed.model_validate(formed))
    db.clock.advance(dt.timedelta(seconds=1))
    await queue_invitations(db)  # then a session's invitations
    with catching(tmp_path / "mail", smtp_port) as catcher:
        async with sender(db, tmp_path, batch=2) as s:
            assert await s.run_once() == 2
            first = {
                email.message_from_bytes(p.read_bytes(), policy=email.policy.default)[
                    "Content-Type"
                ].content_type
                for p in catcher.messages()
            }
            assert first == {"multipart/mixed"}  # the two invitations, not two notices
            assert await s.run_due() == 12
    rows = await by_recipient(db)
    assert {d.status for d in rows.values()} == {"sent"}


class _PipeliningSink(Sink):
    """Offers PIPELINING; drops the connection once, as the `drop_at`-th message arrives."""

    def __init__(self, drop_at: int) -> None:
        super().__init__()
        self.drop_at = drop_at
        self.arrived = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.arrived += 1
        if self.arrived == self.drop_at:
            assert server.transport is not None
            server.transport.abort()  # neither kept nor answered
            return "451 never seen"
        return await super().handle_DATA(server, session, envelope)


async def test_a_pipelining_server_dropping_mid_batch_keeps_what_it_answered_and_retries_the_rest(
    db, tmp_path, smtp_port
):
    await queue_many(db, 10)
    sink = _PipeliningSink(drop_at=4)
    with smtp_server(sink, smtp_port):
        async with sender(db, tmp_path) as s:
            assert await s.run_due() == 10
            assert len(sink.messages) == 9  # the rest went over a new connection at once
            rows = await by_recipient(db)
            assert sorted(d.status for d in rows.values()) == ["pending"] + ["sent"] * 9
            db.clock.advance(dt.timedelta(seconds=10))  # the dropped one's retry is due
            assert await s.run_due() == 1
    assert sorted(sink.message_ids()) == sorted(d.message_id for d in rows.values())
    assert {d.status for d in (await by_recipient(db)).values()} == {"sent"}
    assert [x for x, _ in await outbox(db)] == ["mentorship.notification.sent"] * 10
