"""notifications against a real nats-server, database and SMTP server: events in, email out."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cli.launcher import free_port
from cli.mailcatcher import MailCatcher
from services.notifications import deliveries, store
from services.notifications import sender as sender_module
from services.notifications.app import definition
from shared.service import Running
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, running, settings_for, subject_counts

REGISTERED = "mentorship.participant.registered"
SCHEDULED = "mentorship.session.scheduled"
SENT = "mentorship.notification.sent"
ICAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:s1@mentorship\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@contextlib.contextmanager
def catching(folder: Path, port: int) -> Iterator[MailCatcher]:
    catcher = MailCatcher(folder, port=port)
    catcher.start()
    try:
        yield catcher
    finally:
        catcher.stop()


def session_scheduled(program: str, *attendees: str) -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    return envelope(
        program,
        session_id="s1",
        pair_id="pair-1",
        kind="kickoff",
        start=start.isoformat(),
        end=(start + dt.timedelta(hours=1)).isoformat(),
        anchor_timezone="Europe/Berlin",
        attendee_ids=list(attendees),
        uid="s1@mentorship",
        sequence=0,
        ical=ICAL,
    )


async def publish_session(js: Any) -> None:
    await publish(js, REGISTERED, registration("prog", "m", role="mentor"))
    await publish(js, REGISTERED, registration("prog", "e", timezone="Asia/Tokyo"))
    await publish(js, SCHEDULED, session_scheduled("prog", "m", "e"))


def parsed(catcher: MailCatcher) -> list[Any]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in catcher.messages()
    ]


async def timer_states(rt: Running) -> list[tuple[str, int, str | None]]:
    async with rt.sessions() as session:
        rows = await session.execute(
            select(store.timers.c.status, store.timers.c.attempts, store.timers.c.last_error).where(
                store.timers.c.kind == deliveries.SEND
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_scheduled_session_sends_one_email_per_attendee_and_reports_each_sent(
    tmp_path, nats_server, js, database_url
):
    port = free_port()
    settings = settings_for(tmp_path, nats_server.url, database_url, smtp_port=port)
    with catching(tmp_path / "mail", port) as catcher:
        async with running(definition(), settings):
            await publish_session(js)

            async def delivered() -> bool:
                sent = (await subject_counts(js)).get(SENT, 0)
                return len(catcher.messages()) >= 2 and sent >= 2

            await eventually(delivered, what="two emails and two notification.sent")
            mails = parsed(catcher)
            reports = await bodies_on(js, SENT)
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == [
        "e@example.org",
        "m@example.org",
    ]
    assert sorted(m["Message-ID"] for m in mails) == sorted(r["message_id"] for r in reports)
    assert {(r["program_id"], r["recipient_id"]) for r in reports} == {("prog", "m"), ("prog", "e")}


async def test_a_batch_that_queues_mail_due_now_wakes_the_sender_at_its_commit(
    tmp_path, nats_server, js, database_url, monkeypatch
):
    monkeypatch.setattr(sender_module, "POLL_SECONDS", 120.0)  # its poll alone would be late
    port = free_port()
    settings = settings_for(tmp_path, nats_server.url, database_url, smtp_port=port)
    with catching(tmp_path / "mail", port) as catcher:
        async with running(definition(), settings) as rt:
            await publish(js, REGISTERED, registration("prog", "m", role="mentor"))
            await publish(js, REGISTERED, registration("prog", "e", timezone="Asia/Tokyo"))

            async def registered() -> bool:
                async with rt.sessions() as session:
                    return len((await session.execute(select(store.Contact))).all()) == 2

            await eventually(registered, what="both registrations consumed")
            # the sender looked once at its start, found nothing and sleeps (120 s)
            await publish(js, SCHEDULED, session_scheduled("prog", "m", "e"))

            async def invited() -> bool:
                return len(catcher.messages()) >= 2

            await eventually(invited, timeout=15, what="both invitations, long before the poll")


async def test_mail_queued_while_smtp_is_down_arrives_exactly_once_when_it_is_back(
    tmp_path, nats_server, js, database_url
):
    port = free_port()  # nothing listens there yet
    settings = settings_for(tmp_path, nats_server.url, database_url, smtp_port=port)
    async with running(definition(), settings) as rt:
        await publish_session(js)

        async def both_failed_once() -> bool:
            states = await timer_states(rt)
            return len(states) == 2 and all(a >= 1 and error for _, a, error in states)

        await eventually(both_failed_once, what="a failed first attempt of both sends")
        assert (await subject_counts(js)).get(SENT, 0) == 0
        with catching(tmp_path / "mail", port) as catcher:

            async def all_done() -> bool:
                return [s for s, _, _ in await timer_states(rt)] == ["done", "done"]

            await eventually(all_done, what="both sends done once SMTP is back")
            await eventually(
                lambda: _count_is(js, SENT, 2), what="notification.sent for both deliveries"
            )
            # every send is done: no timer item is left that could send again
            mails = parsed(catcher)
            async with rt.sessions() as session:
                statuses = list(await session.scalars(select(store.Delivery.status)))
    assert statuses == ["sent", "sent"]
    assert len(mails) == 2
    assert len({m["Message-ID"] for m in mails}) == 2


async def _count_is(js: Any, subject: str, count: int) -> bool:
    return (await subject_counts(js)).get(subject, 0) == count
