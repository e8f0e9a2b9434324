"""Calendar replies from an IMAP mailbox: a real IMAP server (pymap, in-memory backend, in a
process of its own), the stdlib client of the poller, real SQLite: each iMIP REPLY becomes
session.responded exactly once, other mail is left alone or moved, broken replies are kept."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.launcher import free_port
from services.notifications import imap, store
from services.notifications.handlers import on_participant_registered, on_session_scheduled
from services.notifications.imap import ImapPoller, classify
from shared.db import make_engine, make_sessions
from shared.events import ParticipantRegistered, SessionScheduled
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork, unit_of_work
from tests.support.factories import registration
from tests.support.handlers import HandlerDb, _test_pool, handler_db
from tests.unit.notifications.test_replies import (
    ORGANIZER,
    _scheduled,
    reply_ical,
    reply_mail,
    responded,
)

PASSWORD = "s3cret-pw"
NOT_A_REPLY = (
    b"From: Someone <someone@example.org>\r\nTo: " + ORGANIZER.encode() + b"\r\n"
    b"Subject: Out of office\r\nMessage-ID: <ooo@example.org>\r\n\r\nBack on Monday.\r\n"
)
BROKEN_REPLY = reply_mail(reply_ical("DECLINED").replace("SEQUENCE:0", "SEQUENCE:soon"))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    """Eli (e) and Mo (m) known, and invited to session s1, as in test_replies."""
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from=ORGANIZER,
    ) as db:
        for pid, role in (("m", "mentor"), ("e", "mentee")):
            body = registration("p1", pid, role=role)
            await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
        await db.apply(on_session_scheduled, SessionScheduled.model_validate(_scheduled()))
        yield db


@contextlib.contextmanager
def pymap_server() -> Iterator[int]:
    """A pymap IMAP server (plain, in memory) with the organizer's account; its port."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pymap.main import main; main()",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-tls",
            "dict",
            "--demo-user",
            ORGANIZER,
            "--demo-password",
            PASSWORD,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pymap did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def server() -> Iterator[int]:
    with pymap_server() as port:
        yield port


@contextlib.contextmanager
def mailbox(port: int, folder: str = "INBOX") -> Iterator[imaplib.IMAP4]:
    """A person's (or the mail system's) own connection to the organizer's mailbox."""
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    conn.login(ORGANIZER, PASSWORD)
    conn.select(folder)
    try:
        yield conn
    finally:
        conn.logout()


def deliver(port: int, *raws: bytes) -> None:
    with mailbox(port) as conn:
        for raw in raws:
            assert conn.append("INBOX", None, None, raw)[0] == "OK"


def flags(port: int, folder: str = "INBOX") -> dict[int, set[str]]:
    """UID -> flags of each message in the folder."""
    with mailbox(port, folder) as conn:
        status, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
    assert status == "OK"
    found = {}
    for line in data:
        if not isinstance(line, bytes):
            continue
        uid = re.search(rb"UID (\d+)", line)
        listed = re.search(rb"FLAGS \(([^)]*)\)", line)
        if uid and listed:
            found[int(uid.group(1))] = set(listed.group(1).decode().split()) - {"\\Recent"}
    return found


def imap_settings(port: int, **extra: Any) -> Settings:
    return Settings(
        mail_from=ORGANIZER,
        replies_imap_host="127.0.0.1",
        replies_imap_port=port,
        replies_imap_security="none",
        replies_imap_username=ORGANIZER,
        replies_imap_password=PASSWORD,
        replies_imap_poll_seconds=0.2,
        **extra,
    )


def poller(db: HandlerDb, port: int, **extra: Any) -> ImapPoller:
    return ImapPoller(imap_settings(port, **extra), db.unit_of_work)


async def test_a_reply_in_the_mailbox_becomes_session_responded_once_and_is_marked_read(db, server):
    deliver(server, reply_mail(reply_ical("DECLINED", comment="Ill that day")))
    reader = poller(db, server)
    await reader.poll_once()
    [event] = await responded(db)
    assert (event["participant_id"], event["response"], event["comment"]) == (
        "e",
        "declined",
        "Ill that day",
    )
    assert list(flags(server).values()) == [{"\\Seen"}]
    await reader.poll_once()
    await ImapPoller(reader.settings, db.unit_of_work).poll_once()  # a restarted process
    assert len(await responded(db)) == 1
    assert (reader.counts.replies, reader.counts.responded, reader.check()) == (1, 1, None)


async def test_a_reply_recorded_but_not_yet_marked_when_the_process_died_is_not_sent_twice(
    db, server
):
    deliver(server, reply_mail(reply_ical("ACCEPTED")))
    await poller(db, server).poll_once()
    with mailbox(server) as conn:  # the state the crash leaves: recorded, flags not stored
        conn.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    assert list(flags(server).values()) == [set()]
    restarted = poller(db, server)
    await restarted.poll_once()
    assert [e["response"] for e in await responded(db)] == ["accepted"]
    assert (restarted.counts.replies, restarted.counts.responded) == (1, 0)
    assert list(flags(server).values()) == [{"\\Seen"}]


def test_pymap_allows_no_keywords_so_the_poller_marks_replies_seen(server):
    """The poller's \\Seen mode is what these tests see; servers that allow keywords
    (PERMANENTFLAGS with \\*) get $MentorshipRead as well."""
    with mailbox(server) as conn:
        _, permitted = conn.response("PERMANENTFLAGS")
    assert "\\*" not in str(permitted)


async def test_other_mail_is_left_unread_where_it_is_and_counted(db, server):
    deliver(server, NOT_A_REPLY, reply_mail(reply_ical("ACCEPTED")))
    reader = poller(db, server)
    await reader.poll_once()
    await reader.poll_once()
    assert sorted(map(sorted, flags(server).values())) == [[], ["\\Seen"]]
    assert (reader.counts.other, reader.counts.replies) == (1, 1)
    assert len(await responded(db)) == 1


async def test_other_mail_is_moved_to_the_configured_folder(db, server):
    deliver(server, NOT_A_REPLY, reply_mail(reply_ical("ACCEPTED")))
    reader = poller(db, server, replies_imap_other_mailbox="Not replies")
    await reader.poll_once()
    assert list(flags(server).values()) == [{"\\Seen"}]
    assert list(flags(server, '"Not replies"').values()) == [set()]  # unread, for a person
    assert reader.counts.other == 1


async def test_a_broken_reply_is_kept_unread_logged_once_and_does_not_stop_the_others(
    db, server, caplog
):
    deliver(server, BROKEN_REPLY, reply_mail(reply_ical("DECLINED"), message_id="<r2@c>"))
    reader = poller(db, server)
    with caplog.at_level(logging.WARNING, logger=imap.log.name):
        await reader.poll_once()
        await reader.poll_once()
    assert [e["response"] for e in await responded(db)] == ["declined"]
    broken = [r for r in caplog.records if "kept unread" in r.getMessage()]
    assert len(broken) == 1
    assert "answer the attendee by hand" in broken[0].getMessage()
    assert sorted(map(sorted, flags(server).values())) == [[], ["\\Seen"]]
    assert reader.counts.malformed == 1


async def test_the_database_away_leaves_the_reply_unmarked_until_it_is_recorded(db, server, caplog):
    deliver(server, reply_mail(reply_ical("DECLINED")))
    # a real database nobody listens on: connecting is refused
    away = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    current = {"sessions": make_sessions(away)}

    def unit() -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(
            sessions=current["sessions"],
            tables=db.tables,
            clock=db.clock,
            settings=db.settings,
            source="notifications",
            cpu=_test_pool(),
        )

    reader = ImapPoller(imap_settings(server), unit)
    with caplog.at_level(logging.WARNING, logger=imap.log.name):
        await reader.poll_once()
        await reader.poll_once()
    assert list(flags(server).values()) == [set()]
    assert reader.counts.retried == 2
    assert len([r for r in caplog.records if "database is unreachable" in r.getMessage()]) == 1
    current["sessions"] = db.sessions  # the database is back
    await reader.poll_once()
    assert [e["response"] for e in await responded(db)] == ["declined"]
    assert list(flags(server).values()) == [{"\\Seen"}]
    await away.dispose()


async def test_a_refused_login_is_one_readiness_problem_saying_what_to_check(db, server, caplog):
    reader = ImapPoller(
        imap_settings(server).model_copy(update={"replies_imap_password": None}), db.unit_of_work
    )
    with caplog.at_level(logging.WARNING, logger=imap.log.name):
        await reader.poll_once()
        await reader.poll_once()
    problem = reader.check()
    assert problem is not None
    assert "MENTORSHIP_REPLIES_IMAP_PASSWORD" in problem
    assert len(caplog.records) == 1


async def test_the_server_away_is_a_readiness_problem_until_it_answers(db):
    reader = ImapPoller(imap_settings(free_port()), db.unit_of_work)
    await reader.poll_once()
    problem = reader.check()
    assert problem is not None
    assert "MENTORSHIP_REPLIES_IMAP_HOST" in problem


async def test_a_full_mailbox_is_read_over_several_polls_each_reply_once(db, server, monkeypatch):
    monkeypatch.setattr(imap, "BATCH", 3)
    mails = [
        reply_mail(reply_ical(state), message_id=f"<r{i}@client>")
        for i, state in enumerate(["ACCEPTED", "DECLINED", "TENTATIVE"] * 3)
    ]
    deliver(server, *mails, NOT_A_REPLY)
    reader = poller(db, server)
    polls = 1
    while await reader.poll_once():
        polls += 1
    assert polls == 4
    assert len(await responded(db)) == 9
    assert (reader.counts.replies, reader.counts.other) == (9, 1)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_any_bytes_at_all_are_classified_without_raising(raw: bytes) -> None:
    assert classify(raw) in ("reply", "malformed", "other")
    assert classify(b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n" + raw) in ("reply", "malformed", "other")


def test_classification_of_replies_other_mail_and_broken_replies() -> None:
    assert classify(reply_mail(reply_ical("ACCEPTED"))) == "reply"
    assert classify(NOT_A_REPLY) == "other"
    assert classify(BROKEN_REPLY) == "malformed"
    needs_action = reply_mail(reply_ical("NEEDS-ACTION"))
    assert classify(needs_action) == "malformed"  # says REPLY, answers nothing readable
    request = reply_mail(reply_ical("ACCEPTED").replace("METHOD:REPLY", "METHOD:REQUEST"))
    assert classify(request) == "other"
