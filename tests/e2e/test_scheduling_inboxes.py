"""End to end, through events only: a zone change, an absence and a charter reach both inboxes.

scheduling and notifications run as they are, on one nats-server, with an SMTP catcher: the
mentee moves to New York (an updated invitation, same UID, higher SEQUENCE) and the mentor is
away for a week (a cancellation of that occurrence, METHOD:CANCEL with RECURRENCE-ID); a
weekly charter cancels the monthly series' future under its UID and invites a new series.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from icalendar import Calendar

from cli.launcher import free_port
from cli.mailcatcher import MailCatcher
from services.notifications.app import definition as notifications
from services.scheduling.app import definition as scheduling
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, running, settings_for

# two services, the mail catcher and nats-server: on a loaded two-core machine (CI runs three
# test workers) a change took over 30 s to reach both inboxes; the wait proves arrival, not speed
WAIT = 90.0


@contextlib.asynccontextmanager
async def system(tmp_path: Path, url: str, database_url: str | None) -> AsyncIterator[MailCatcher]:
    port = free_port()
    catcher = MailCatcher(tmp_path / "mail", port=port)
    catcher.start()
    conf = settings_for(
        tmp_path, url, database_url, smtp_port=port, session_cadence_days=30,
        link_secret="s" * 40,
    )  # fmt: skip
    try:
        async with running(scheduling(), conf), running(notifications(), conf):
            yield catcher
    finally:
        catcher.stop()


def calendars_by_recipient(catcher: MailCatcher) -> dict[str, list[Calendar]]:
    found: dict[str, list[Calendar]] = defaultdict(list)
    for path in catcher.messages():
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in mail.walk():
            if part.get_content_type() == "text/calendar":
                found[str(mail["To"])].append(Calendar.from_ical(part.get_content()))
                break
    return found


def methods(calendars: list[Calendar], uid: str) -> list[tuple[str, int, bool]]:
    """(METHOD, SEQUENCE, has RECURRENCE-ID) of each calendar about the UID."""
    seen = []
    for cal in calendars:
        for vevent in cal.walk("VEVENT"):
            if str(vevent["UID"]) == uid:
                seen.append(
                    (str(cal["METHOD"]), int(vevent["SEQUENCE"]), "RECURRENCE-ID" in vevent)
                )
                break
    return seen


async def test_a_zone_change_and_an_absence_reach_both_inboxes(tmp_path, nats_server, js):
    async with system(tmp_path, nats_server.url, None) as catcher:
        await publish(
            js, "mentorship.participant.registered", registration("prog", "m", role="mentor")
        )
        await publish(js, "mentorship.participant.registered", registration("prog", "e"))
        formed = envelope(
            "prog", pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en"
        )
        await publish(js, "mentorship.pair.formed", formed)

        async def invited() -> bool:
            return sum(len(v) for v in calendars_by_recipient(catcher).values()) >= 4

        await eventually(
            invited, what="kickoff and series invitations in both inboxes", timeout=WAIT
        )
        [series] = [b for b in await bodies_on(js, "mentorship.session.scheduled") if b["rrule"]]
        change = envelope(
            "prog", participant_id="e", old_timezone="Europe/Berlin",
            new_timezone="America/New_York", effective_date=series["start"][:10],
        )  # fmt: skip
        await publish(js, "mentorship.participant.timezone_changed", change)
        await eventually(
            lambda: _any_on(js, "mentorship.session.rescheduled"),
            what="session.rescheduled",
            timeout=WAIT,
        )
        moved = await bodies_on(js, "mentorship.session.rescheduled")
        last = moved[-1]["start"][:10]
        absent = envelope("prog", participant_id="m", start_date=last, end_date=last)
        await publish(js, "mentorship.participant.unavailable", absent)

        async def both_told() -> bool:
            by = calendars_by_recipient(catcher)
            return len(by) == 2 and all(
                {"REQUEST", "CANCEL"} <= {m for m, s, _ in methods(c, series["uid"]) if s > 0}
                for c in by.values()
            )

        await eventually(
            both_told, what="an update and a cancellation in both inboxes", timeout=WAIT
        )
        by = calendars_by_recipient(catcher)
    assert set(by) == {"Person m <m@example.org>", "Person e <e@example.org>"}
    for calendars in by.values():
        seen = methods(calendars, series["uid"])
        assert seen[0] == ("REQUEST", 0, False)  # the series invitation
        assert any(m == "REQUEST" and s > 0 and rid for m, s, rid in seen)  # one occurrence moved
        assert any(m == "CANCEL" and rid for m, s, rid in seen)  # one occurrence cancelled
        sequences = [s for _, s, _ in seen]
        assert sequences[0] == 0 and max(sequences) == len(moved) + 1


async def _any_on(js: Any, subject: str) -> bool:
    return bool(await bodies_on(js, subject))


async def test_a_charter_reaches_both_inboxes_as_a_cancel_and_a_new_series(
    tmp_path, nats_server, js
):
    async with system(tmp_path, nats_server.url, None) as catcher:
        await publish(
            js, "mentorship.participant.registered", registration("prog", "m", role="mentor")
        )
        await publish(js, "mentorship.participant.registered", registration("prog", "e"))
        formed = envelope(
            "prog", pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en"
        )
        await publish(js, "mentorship.pair.formed", formed)

        async def invited() -> bool:
            return sum(len(v) for v in calendars_by_recipient(catcher).values()) >= 4

        await eventually(
            invited, what="kickoff and series invitations in both inboxes", timeout=WAIT
        )
        charter = envelope("prog", pair_id="p", cadence_days=7, session_minutes=60)
        await publish(js, "mentorship.charter.agreed", charter)
        await eventually(
            lambda: _count_on(js, "mentorship.session.scheduled", 3),
            what="the charter's series",
            timeout=WAIT,
        )
        old, new = [b for b in await bodies_on(js, "mentorship.session.scheduled") if b["rrule"]]

        async def both_told() -> bool:
            by = calendars_by_recipient(catcher)
            return len(by) == 2 and all(
                ("CANCEL", 1, True) in methods(c, old["uid"])
                and ("REQUEST", 0, False) in methods(c, new["uid"])
                for c in by.values()
            )

        await eventually(
            both_told, what="the old series cancelled and the new one in both inboxes", timeout=WAIT
        )
        by = calendars_by_recipient(catcher)
    assert new["uid"] != old["uid"] and new["rrule"].startswith("FREQ=WEEKLY;INTERVAL=1;")
    for calendars in by.values():
        [request] = [
            v for c in calendars for v in c.walk("VEVENT")
            if str(v["UID"]) == new["uid"] and "RECURRENCE-ID" not in v
        ]  # fmt: skip
        assert str(request["RRULE"].to_ical().decode()).startswith("FREQ=WEEKLY")
        length = request["DTEND"].dt - request["DTSTART"].dt
        assert length.total_seconds() == 60 * 60


async def _count_on(js: Any, subject: str, n: int) -> bool:
    return len(await bodies_on(js, subject)) >= n
