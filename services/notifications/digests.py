"""Mail that a durable timer sends, not a single event: a person's daily digest of held
low-urgency items, a program's weekly wins, the quarterly assessment survey, and the
touchpoint (a reflective prompt) between a pair's sessions.

Each is one per logical thing (the person and digest window, the program and week, the program
and quarter, the session held), so a timer run again queues nothing more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from sqlalchemy import select

from services.notifications import deliveries, notices, preferences, store
from services.notifications.queueing import queue_all
from shared.events import CharterAgreed, SessionHeld
from shared.timers import Due
from shared.unit_of_work import UnitOfWork

ASSESSMENT_LINK_DAYS = 45  # the survey stays open this long after the quarter began

QUESTIONS = (  # (score name, the statement rated 1..5): what insights averages per cohort
    ("relevance", "The program is relevant to my work and goals."),
    ("impact", "The program has made a difference to my work."),
    ("satisfaction", "Overall, I am satisfied with the program."),
    ("fairness", "I am treated fairly in the program."),
)

PROMPTS = (
    "What is one thing from your last session you have tried since, and how did it go?",
    "What question would you most like to bring to your next session?",
    "Which of your goals moved forward since you last met, and what held it back?",
    "What did you learn about how you work best, from your last conversation?",
)


async def on_digest_due(item: Due, uow: UnitOfWork) -> None:
    """A person's digest is due: one mail listing what was held for it, then those items are
    marked as sent with it (items of kinds refused meanwhile are marked so, not listed)."""
    pid, window = item.payload["participant_id"], item.payload["window"]
    rows = list(
        await uow.session.scalars(
            select(store.HeldItem)
            .where(
                store.HeldItem.program_id == item.program_id,
                store.HeldItem.participant_id == pid,
                store.HeldItem.digest_window == window,
                store.HeldItem.status == "held",
            )
            .order_by(store.HeldItem.held_at, store.HeldItem.idempotency_key)
        )
    )
    if not rows:
        return
    refused = (
        await store.refused_kinds(uow.session, program_id=item.program_id, participant_ids=[pid])
    ).get(pid, set())
    listed = []
    for row in rows:
        if preferences.unsubscribed_from(row.kind, refused):
            row.status = "unsubscribed"
        else:
            row.status = "digested"
            listed.append({"subject": row.subject, "headline": row.headline, "link": row.link})
    if not listed:
        return
    person = (
        await store.contact_or_raise(uow.session, program_id=item.program_id, participant_id=pid)
    ).attendee()
    source = deliveries.logical_id("digest", item.program_id, pid, window)
    plan = notices._plan(
        uow,
        item.program_id,
        source,
        person,
        preferences.DIGEST,
        f"Your mentorship digest: {len(listed)} update{'s' if len(listed) != 1 else ''}",
        {
            "headline": "What happened in your mentorship program since your last email.",
            "items": listed,
        },
    )
    await queue_all(item.program_id, [plan], uow)


async def on_wins_due(item: Due, uow: UnitOfWork) -> None:
    """A program's weekly wins: the public milestones of the week, to everyone in the program
    (each in their own quiet hours; those who unsubscribed are recorded, not mailed)."""
    week = item.payload["week"]
    wins = list(
        await uow.session.scalars(
            select(store.Win)
            .where(store.Win.program_id == item.program_id, store.Win.week == week)
            .order_by(store.Win.reached_at, store.Win.milestone_id)
        )
    )
    if not wins:
        return
    listed = [{"title": w.title, "names": w.names} for w in wins]
    source = deliveries.logical_id("wins", item.program_id, week)
    contacts = await store.program_contacts(uow.session, program_id=item.program_id)
    day = preferences.wins_day(week)
    planned = [
        dataclasses.replace(
            notices._plan(
                uow,
                item.program_id,
                source,
                contact.attendee(),
                preferences.WINS,
                f"This week's wins in the program: {len(listed)} milestone"
                f"{'s' if len(listed) != 1 else ''}",
                {
                    "headline": "Pairs in your program reached these milestones this week.",
                    "wins": listed,
                },
            ),
            not_before=preferences.local_hour_on(day, contact.timezone),
        )
        for contact in contacts
    ]
    await queue_all(item.program_id, planned, uow)


_ASSESSMENT_ARMED = "notifications.assessment_armed"  # session.info: programs armed this batch


def arm_assessment(uow: UnitOfWork, program_id: str) -> None:
    """Arms the program's next quarterly survey (arming it again changes nothing)."""
    if not uow.settings.assessment_survey:
        return
    armed = uow.session.info.setdefault(_ASSESSMENT_ARMED, set())
    if program_id in armed:  # a cohort import's batch: the first registration armed it
        return
    armed.add(program_id)
    quarter, due = preferences.next_quarter(uow.clock.now())
    uow.upsert(
        store.timers,
        store.send_timer_row(program_id=program_id, delivery_id="", due_at=due)
        | {"kind": preferences.ASSESSMENT, "key": quarter, "payload": {"quarter": quarter}},
    )


async def on_assessment_due(item: Due, uow: UnitOfWork) -> None:
    """The quarterly program assessment: everyone in the program gets the survey link (the
    answers go to insights as assessment.submitted); the next quarter's survey is armed."""
    quarter = item.payload["quarter"]
    contacts = await store.program_contacts(uow.session, program_id=item.program_id)
    expires = item.due_at + dt.timedelta(days=ASSESSMENT_LINK_DAYS)
    source = deliveries.logical_id("assessment", item.program_id, quarter)
    planned = []
    for contact in contacts:
        link = notices._link(
            uow,
            preferences.ASSESSMENT_FORM,
            {
                "program_id": item.program_id,
                "participant_id": contact.participant_id,
                "quarter": quarter,
            },
            expires,
        )
        plan = notices._plan(
            uow,
            item.program_id,
            source,
            contact.attendee(),
            preferences.ASSESSMENT,
            f"Four questions about the mentorship program ({quarter})",
            {
                "headline": "How is the mentorship program working for you? Four "
                "questions, one minute.",
                "questions": [text for _, text in QUESTIONS],
                "survey_link": link,
                "closes": notices._local(expires, contact.timezone),
            },
        )
        at = preferences.local_hour_on(preferences.quarter_day(quarter), contact.timezone)
        planned.append(dataclasses.replace(plan, not_before=at))
    await queue_all(item.program_id, planned, uow)
    if uow.settings.assessment_survey:
        following, due = preferences.next_quarter(item.due_at + dt.timedelta(days=1))
        uow.upsert(
            store.timers,
            store.send_timer_row(program_id=item.program_id, delivery_id="", due_at=due)
            | {
                "kind": preferences.ASSESSMENT,
                "key": following,
                "payload": {"quarter": following},
            },
        )


async def on_session_held(event: SessionHeld, uow: UnitOfWork) -> None:
    """Arms the touchpoint between sessions: a reflective prompt, with the takeaways the pair
    chose to note, TOUCHPOINT_DAYS after the session."""
    days = uow.settings.touchpoint_days
    if days <= 0:
        return
    uow.upsert(
        store.timers,
        store.send_timer_row(
            program_id=event.program_id,
            delivery_id="",
            due_at=event.held_at + dt.timedelta(days=days),
        )
        | {
            "kind": preferences.TOUCHPOINT,
            "key": f"{event.pair_id}/{event.session_id}",
            "payload": {
                "pair_id": event.pair_id,
                "session_id": event.session_id,
                "takeaways": list(event.takeaways),
            },
        },
    )


async def on_charter_agreed(event: CharterAgreed, uow: UnitOfWork) -> None:
    """Keeps what the pair chose for between sessions (a reading, a prompt); a charter without
    one goes back to the program's own prompts."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    pair.touchpoint = getattr(event, "touchpoint", None) or None


def prompt_for(session_id: str) -> str:
    """The reflective prompt of a touchpoint: one of PROMPTS, the same for the same session."""
    digest = hashlib.sha256(session_id.encode()).digest()
    return PROMPTS[digest[0] % len(PROMPTS)]


async def on_touchpoint_due(item: Due, uow: UnitOfWork) -> None:
    """Both people of the pair get the touchpoint: what their charter chose, else one of the
    program's prompts (a pair notifications never heard formed gets none)."""
    p = item.payload
    pair = await store.get_pair(uow.session, program_id=item.program_id, pair_id=p["pair_id"])
    if pair is None:
        return
    people = [
        c.attendee()
        for pid in (pair.mentor_id, pair.mentee_id)
        if (
            c := await store.get_contact(
                uow.session, program_id=item.program_id, participant_id=pid
            )
        )
    ]
    source = deliveries.logical_id("touchpoint", item.program_id, p["pair_id"], p["session_id"])
    planned = [
        notices._plan(
            uow,
            item.program_id,
            source,
            person,
            preferences.TOUCHPOINT,
            "A question to think about before your next mentorship session",
            {
                "headline": "Between sessions: a minute to reflect.",
                "prompt": "" if pair.touchpoint else prompt_for(str(p["session_id"])),
                "chosen": pair.touchpoint or "",
                "takeaways": [str(t) for t in p.get("takeaways") or []][:20],
                "relationship_link": notices.relationship_link(
                    uow, item.program_id, pair.pair_id, person.participant_id
                ),
            },
        )
        for person in people
    ]
    await queue_all(item.program_id, planned, uow)
