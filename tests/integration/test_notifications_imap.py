"""The notifications service reading calendar replies from an IMAP mailbox: real nats-server,
SQLite and PostgreSQL, a real IMAP server (pymap) and SMTP sink; a reply in the mailbox is one
session.responded on the bus, also after the service restarts."""

from __future__ import annotations

from cli.launcher import free_port
from services.notifications.app import definition
from tests.integration.test_notifications_service import catching, publish_session
from tests.support.waiting import bodies_on, eventually, running, settings_for, subject_counts
from tests.unit.notifications.test_replies_imap import (
    ORGANIZER,
    PASSWORD,
    deliver,
    flags,
    pymap_server,
    reply_ical,
    reply_mail,
)

SENT = "mentorship.notification.sent"
RESPONDED = "mentorship.session.responded"


async def test_a_reply_in_the_imap_mailbox_is_one_session_responded_across_a_restart(
    tmp_path, nats_server, js, database_url
):
    smtp_port = free_port()
    with pymap_server() as imap_port, catching(tmp_path / "mail", smtp_port):
        settings = settings_for(
            tmp_path,
            nats_server.url,
            database_url,
            smtp_port=smtp_port,
            mail_from=ORGANIZER,
            replies_imap_host="127.0.0.1",
            replies_imap_port=imap_port,
            replies_imap_security="none",
            replies_imap_username=ORGANIZER,
            replies_imap_password=PASSWORD,
            replies_imap_poll_seconds=0.3,
        )
        async with running(definition(), settings):
            await publish_session(js)

            async def invited() -> bool:
                return (await subject_counts(js)).get(SENT, 0) >= 2

            await eventually(invited, what="both invitations sent")
            deliver(imap_port, reply_mail(reply_ical("DECLINED", comment="Travelling")))

            async def answered() -> bool:
                return (await subject_counts(js)).get(RESPONDED, 0) >= 1

            await eventually(answered, what="session.responded from the IMAP reply")
        assert list(flags(imap_port).values()) == [{"\\Seen"}]
        # the same reply again (resent by the attendee's client), read by the restarted service
        deliver(imap_port, reply_mail(reply_ical("DECLINED", comment="Travelling")))
        async with running(definition(), settings):

            async def read_again() -> bool:
                return all("\\Seen" in f for f in flags(imap_port).values())

            await eventually(read_again, what="the copy read")
        [event] = await bodies_on(js, RESPONDED)
        assert (event["participant_id"], event["response"], event["comment"]) == (
            "e",
            "declined",
            "Travelling",
        )
