"""The mails that are not calendar entries, on a real SQLite database: who gets which, once per
logical notification, with signed links, and each kind rendered inert with hostile input."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from services.notifications import deliveries, store
from services.notifications.handlers import on_pair_formed, on_participant_registered
from services.notifications.notices import (
    on_checkin_due,
    on_checkin_overdue,
    on_matching_completed,
    on_mentee_unmatched,
    on_milestone_reached,
    on_pair_at_risk,
    on_pair_proposed,
    on_session_missed,
)
from shared.errors import UnknownReference
from shared.events import (
    CheckinDue,
    CheckinOverdue,
    MatchingCompleted,
    MilestoneReached,
    PairAtRisk,
    PairFormed,
    PairProposed,
    ParticipantRegistered,
    SessionMissed,
)
from shared.events.pairs import MenteeUnmatched
from shared.links import CHECKIN_REPORT, PAIR_RESPONSE, RELATIONSHIP, link_signer
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

# HTML, quotes, a line separator, bidi overrides/isolates; CRLF where the schema lets it through
NAME = 'Ann "<b>x</b>" & <script>alert(1)</script>\u2028\u202eevil\u2066'
TEXT = 'Bad\r\nBcc: victim@evil.example\r\n\r\n<img src=x onerror="alert(1)">\u2028\u202e\u2067 end'
UNSAFE_CHARS = "\u2028\u2029\u202e\u2066\u2067"
DUE = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from="team@mentoring.example",
        mail_from_name="Mentoring Team",
        link_secret="y" * 40,
        coordinators={"p1": "Ada Lee <ada@mentoring.example>"},
    ) as db:
        yield db


def person(participant: str, **changes: Any) -> ParticipantRegistered:
    body = registration("p1", participant, role=changes.pop("role", "mentee"))
    return ParticipantRegistered.model_validate(body | changes)


async def pair(db: HandlerDb, *, hostile: bool = False) -> None:
    name = {"display_name": NAME} if hostile else {}
    await db.apply(on_participant_registered, person("m", role="mentor", **name))
    await db.apply(on_participant_registered, person("e", timezone="Asia/Tokyo", **name))
    formed = envelope(
        "p1",
        pair_id="pair-1",
        round_id="r1",
        mentor_id="m",
        mentee_id="e",
        language="en",
        reasons=[TEXT if hostile else "both work in data science"],
    )
    await db.apply(on_pair_formed, PairFormed.model_validate(formed))


async def mails(db: HandlerDb, kind: str) -> list[tuple[store.Delivery, Any]]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(store.Delivery)
            .where(store.Delivery.kind == kind)
            .order_by(store.Delivery.recipient_id)
        )
        return [
            (row, email.message_from_bytes(row.message, policy=email.policy.default))
            for row in rows
        ]


def body(message: Any, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content())


def link_data(db: HandlerDb, text: str, path: str, purpose: str) -> dict[str, Any]:
    link = next(word for word in text.split() if path in word)
    token = parse_qs(urlparse(link).query)["t"][0]
    return link_signer(db.settings).verify(token, purpose, db.clock.now())


def proposed(**changes: Any) -> PairProposed:
    body_ = envelope("p1", pair_id="prop-1", round_id="r1", mentor_id="m", mentee_id="e", score=0.9)
    return PairProposed.model_validate(body_ | {"reasons": ["same city"]} | changes)


def overdue(level: int) -> CheckinOverdue:
    return CheckinOverdue.model_validate(
        envelope(
            "p1",
            checkin_id="c1",
            pair_id="pair-1",
            participant_id="e",
            due_at=DUE.isoformat(),
            escalation_level=level,
        )
    )


async def test_pair_formed_tells_both_with_the_reasons_and_the_charter_prompt(db):
    await pair(db)
    [(_, to_e), (_, to_m)] = await mails(db, "pair.formed")
    assert to_e["Subject"] == "You are matched: Person m is your mentor"
    assert to_m["Subject"] == "You are matched: Person e is your mentee"
    assert to_e["Reply-To"] == "Ada Lee <ada@mentoring.example>"
    text = body(to_e, "plain")
    assert "both work in data science" in text and "charter" in text
    assert "List-Unsubscribe" not in to_e  # essential


def relationship_of(db: HandlerDb, message: Any) -> dict[str, Any]:
    """The relationship link of a mail: the same in text and HTML, pairing's, verified."""
    text, html = body(message, "plain"), body(message, "html")
    [link] = [word for word in text.split() if RELATIONSHIP.path in word]
    assert f'href="{link}"' in html
    assert link.startswith(db.settings.public_url_for("pairing") + RELATIONSHIP.path + "?t=")
    return link_data(db, text, RELATIONSHIP.path, RELATIONSHIP.purpose)


async def test_pair_mails_link_each_person_to_their_pairs_relationship_hub(db):
    await pair(db)
    missed = envelope("p1", session_id="s1", pair_id="pair-1")
    await db.apply(on_session_missed, SessionMissed.model_validate(missed))
    reached = envelope("p1", pair_id="pair-1", milestone_id="ms1", title="First talk given")
    await db.apply(on_milestone_reached, MilestoneReached.model_validate(reached))
    for kind in ("pair.formed", "session.missed", "milestone.reached"):
        found = await mails(db, kind)
        assert [row.recipient_id for row, _ in found] == ["e", "m"], kind
        for row, message in found:
            assert relationship_of(db, message) == {
                "program_id": "p1",
                "pair_id": "pair-1",
                "participant_id": row.recipient_id,
            }, kind
    [(_, to_e), _] = await mails(db, "pair.formed")
    token = parse_qs(urlparse(relationship_of_link(to_e)).query)["t"][0]
    with pytest.raises(ValueError, match="something else"):  # not an accept/decline link
        link_signer(db.settings).verify(token, PAIR_RESPONSE.purpose, db.clock.now())


def relationship_of_link(message: Any) -> str:
    return next(w for w in body(message, "plain").split() if RELATIONSHIP.path in w)


async def test_pair_proposed_carries_a_signed_accept_decline_link_per_person_once(db):
    await pair(db)
    await db.apply(on_pair_proposed, proposed())
    await db.apply(on_pair_proposed, proposed())  # a copy with another event id
    found = await mails(db, "pair.proposed")
    assert [row.recipient_id for row, _ in found] == ["e", "m"]
    for row, message in found:
        data = link_data(db, body(message, "plain"), "/links/pair-response", PAIR_RESPONSE.purpose)
        assert data == {
            "program_id": "p1",
            "proposal_id": "prop-1",
            "participant_id": row.recipient_id,
        }
        assert "both of you accept" in body(message, "plain")


async def test_unmatched_mentees_hear_why_and_about_the_next_round_but_not_on_a_dry_run(db):
    await pair(db)
    await db.apply(on_participant_registered, person("u"))
    completed = envelope(
        "p1", round_id="r1", pairs_formed=1, unmatched_mentees=1, unmatched_mentee_ids=["u"]
    )
    await db.apply(on_matching_completed, MatchingCompleted.model_validate(completed))
    [(row, message)] = await mails(db, "pairing.unmatched")
    assert row.recipient_id == "u"
    assert "next matching round" in body(message, "plain")
    assert "Why:" not in body(message, "plain")  # the event names no reason: none is claimed
    await db.apply(
        on_matching_completed,
        MatchingCompleted.model_validate(completed | {"round_id": "r2", "dry_run": True}),
    )
    assert len(await mails(db, "pairing.unmatched")) == 1


async def test_an_unmatched_mentee_hears_the_reason_once_even_when_the_round_names_them_too(db):
    await pair(db)
    await db.apply(on_participant_registered, person("u"))
    unmatched = envelope(
        "p1", round_id="r1", participant_id="u", reason="no_shared_time",
        detail="mentors sharing en: best overlap 30 of 60 minutes (m-7)",
    )  # fmt: skip
    await db.apply(on_mentee_unmatched, MenteeUnmatched.model_validate(unmatched))
    completed = envelope(
        "p1", round_id="r1", pairs_formed=1, unmatched_mentees=1, unmatched_mentee_ids=["u"]
    )
    await db.apply(on_matching_completed, MatchingCompleted.model_validate(completed))
    [(row, message)] = await mails(db, "pairing.unmatched")
    text = body(message, "plain")
    assert row.recipient_id == "u"
    assert "Why: no mentor who shares your language has enough working time" in text
    assert "m-7" not in text  # the coordinator's detail (another person's id) is not mailed
    assert "next matching round" in text


async def test_checkin_due_links_to_the_report_form_in_the_recipients_zone(db):
    await pair(db)
    due = CheckinDue.model_validate(
        envelope(
            "p1", checkin_id="c1", pair_id="pair-1", participant_id="e", due_at=DUE.isoformat()
        )
    )
    await db.apply(on_checkin_due, due)
    [(_, message)] = await mails(db, "checkin.due")
    text = body(message, "plain")
    assert "Mon 1 Mar 18:00 JST" in text
    data = link_data(db, text, "/links/checkin-report", CHECKIN_REPORT.purpose)
    assert data == {"program_id": "p1", "checkin_id": "c1", "participant_id": "e"}


async def test_the_overdue_ladder_reaches_mentee_then_mentor_then_coordinator_once_per_level(db):
    await pair(db)
    for level in (1, 1, 2, 2, 3, 3):  # each level delivered twice
        await db.apply(on_checkin_overdue, overdue(level))
    found = await mails(db, "checkin.overdue")
    assert sorted(row.recipient_id for row, _ in found) == ["coordinator", "e", "e", "m"]
    by_address = {row.recipient_email: message for row, message in found}
    assert "/links/checkin-report" not in body(by_address["m@example.org"], "plain")
    assert by_address["m@example.org"]["Subject"] == "Person e's check-in is overdue"
    assert "last step" in body(by_address["ada@mentoring.example"], "plain")


async def test_level_three_without_a_coordinator_sends_nothing(db):
    db.settings = db.settings.model_copy(update={"coordinators": {}})
    await pair(db)
    await db.apply(on_checkin_overdue, overdue(3))
    assert await mails(db, "checkin.overdue") == []


async def test_a_milestone_is_celebrated_with_the_pair_and_feedback_is_asked_once(db):
    await pair(db)
    reached = envelope("p1", pair_id="pair-1", milestone_id="ms1", title="First talk given")
    await db.apply(on_milestone_reached, MilestoneReached.model_validate(reached))
    again = reached | {"event_id": envelope("p1")["event_id"]}  # a copy with another event id
    await db.apply(on_milestone_reached, MilestoneReached.model_validate(again))
    assert [r.recipient_id for r, _ in await mails(db, "milestone.reached")] == ["e", "m"]
    assert [r.recipient_id for r, _ in await mails(db, "feedback.request")] == ["e", "m"]


async def test_a_notice_about_a_pair_never_formed_is_refused_not_dropped(db):
    await pair(db)
    missed = envelope("p1", session_id="s9", pair_id="pair-9")
    with pytest.raises(UnknownReference, match=r"pair\.formed"):
        await db.apply(on_session_missed, SessionMissed.model_validate(missed))
    reached = envelope("p1", pair_id="pair-9", milestone_id="ms9", title="Shipped")
    with pytest.raises(UnknownReference, match=r"pair\.formed"):
        await db.apply(on_milestone_reached, MilestoneReached.model_validate(reached))


async def test_an_at_risk_pair_alerts_the_coordinator_only(db):
    await pair(db)
    risk = envelope("p1", pair_id="pair-1", reasons=["no session in 6 weeks"], score=0.82)
    await db.apply(on_pair_at_risk, PairAtRisk.model_validate(risk))
    [(row, message)] = await mails(db, "pair.at_risk")
    assert row.recipient_email == "ada@mentoring.example"
    assert message["Subject"] == "Pair at risk: Person m and Person e"
    assert "no session in 6 weeks" in body(message, "plain")


async def send_due(db: HandlerDb, delivery_id: str) -> dt.datetime:
    async with db.sessions() as session:
        due = await session.scalar(
            select(store.timers.c.due_at).where(
                store.timers.c.kind == deliveries.SEND, store.timers.c.key == delivery_id
            )
        )
    assert due is not None
    return due.replace(tzinfo=dt.UTC)


async def coordinator_mails(db: HandlerDb) -> list[tuple[store.Delivery, Any]]:
    await pair(db)
    risk = envelope("p1", pair_id="pair-1", reasons=["no session in 6 weeks"], score=0.82)
    await db.apply(on_pair_at_risk, PairAtRisk.model_validate(risk))
    await db.apply(on_checkin_overdue, overdue(3))
    found = await mails(db, "pair.at_risk") + await mails(db, "checkin.overdue")
    assert [row.recipient_email for row, _ in found] == ["ada@mentoring.example"] * 2
    return found


async def test_a_coordinator_in_their_own_zone_gets_mail_outside_their_quiet_hours(db):
    coordinators = {"p1": "Ada Lee <ada@mentoring.example>; America/Los_Angeles"}
    db.settings = db.settings.model_copy(update={"coordinators": coordinators})
    found = await coordinator_mails(db)
    # Monday 08:00 UTC is midnight in Los Angeles: the alert waits for 08:00 there
    for row, _ in found:
        assert await send_due(db, row.delivery_id) == dt.datetime(2027, 3, 1, 16, tzinfo=dt.UTC)
    [(_, late)] = [(r, m) for r, m in found if r.kind == "checkin.overdue"]
    assert "Mon 1 Mar 01:00 PST" in body(late, "plain")  # the due time in her zone
    [(_, to_e), _] = await mails(db, "pair.formed")
    assert to_e["Reply-To"] == "Ada Lee <ada@mentoring.example>"  # the zone is no part of it


@pytest.mark.parametrize(
    "entry", ["Ada Lee <ada@mentoring.example>", "Ada Lee <ada@mentoring.example>; Mars/Olympus"]
)
async def test_a_coordinator_without_a_valid_zone_has_quiet_hours_in_utc(db, entry, caplog):
    db.settings = db.settings.model_copy(update={"coordinators": {"p1": entry}})
    for row, message in await coordinator_mails(db):
        assert await send_due(db, row.delivery_id) == db.clock.now()  # 08:00 UTC: allowed
        assert message["To"].addresses[0].display_name == "Ada Lee"
    assert ("no IANA time zone" in caplog.text) == entry.endswith("Olympus")


def _hostile_events() -> list[tuple[str, Any, Any]]:
    return [
        ("pair.formed", None, None),
        ("pair.proposed", on_pair_proposed, proposed(reasons=[TEXT])),
        (
            "pairing.unmatched",
            on_matching_completed,
            MatchingCompleted.model_validate(
                envelope("p1", round_id="r1", pairs_formed=0, unmatched_mentee_ids=["e"])
            ),
        ),
        (
            "checkin.due",
            on_checkin_due,
            CheckinDue.model_validate(
                envelope(
                    "p1",
                    checkin_id="c1",
                    pair_id="pair-1",
                    participant_id="e",
                    due_at=DUE.isoformat(),
                )
            ),
        ),
        ("checkin.overdue", on_checkin_overdue, overdue(2)),
        (
            "session.missed",
            on_session_missed,
            SessionMissed.model_validate(
                envelope("p1", session_id="s1", pair_id="pair-1", reason=TEXT)
            ),
        ),
        (
            "milestone.reached",
            on_milestone_reached,
            MilestoneReached.model_validate(
                envelope("p1", pair_id="pair-1", milestone_id="ms1", title=TEXT[:200])
            ),
        ),
        (
            "feedback.request",
            on_milestone_reached,
            MilestoneReached.model_validate(
                envelope("p1", pair_id="pair-1", milestone_id="ms2", title=TEXT[:200])
            ),
        ),
        (
            "pair.at_risk",
            on_pair_at_risk,
            PairAtRisk.model_validate(envelope("p1", pair_id="pair-1", reasons=[TEXT], score=0.9)),
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "handler", "event"), _hostile_events(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_every_kind_renders_hostile_input_inert(db, kind, handler, event):
    await pair(db, hostile=True)
    if handler is not None:
        await db.apply(handler, event)
    found = await mails(db, kind)
    assert found, f"no {kind} mail"
    for row, message in found:
        head = row.message.split(b"\r\n\r\n", 1)[0].decode("ascii")
        names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith(" ")]
        assert "Bcc" not in names and len(names) == len(set(names))
        assert message["Auto-Submitted"] == "auto-generated"
        html, text = body(message, "html"), body(message, "plain")
        assert "<script" not in html and "<img" not in html and "<b>" not in html
        assert "&lt;" in html  # escaped, not dropped
        for char in UNSAFE_CHARS:
            assert char not in html and char not in text
            assert char not in str(message["Subject"])
        assert "\r" not in text.replace("\r\n", "") and "\nBcc:" not in text
        assert "\nBcc:" not in html
