"""Shadow sessions (real SQLite): a shadowing opportunity offered plans one, once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from icalendar import Calendar

from services.scheduling import kinds, store
from services.scheduling.handlers import (
    on_opportunity_offered,
    on_pair_ended,
    on_pair_formed,
    on_participant_registered,
)
from shared.events import (
    OpportunityOffered,
    PairEnded,
    PairFormed,
    ParticipantRegistered,
    SessionScheduled,
)
from shared.worktime import Interval
from tests.support.factories import registration
from tests.support.handlers import HandlerDb, handler_db
from tests.unit.scheduling.test_charters import all_rows, event, formed_pair, span
from tests.unit.scheduling.test_contingencies import nine_to_five
from tests.unit.scheduling.test_planning import inside


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, source="scheduling", session_cadence_days=7
    ) as db:
        yield db


def offered(
    kind: str = "shadowing", opportunity: str = "op-1", who: str = "e"
) -> OpportunityOffered:
    return event(
        OpportunityOffered, opportunity_id=opportunity, participant_id=who, kind=kind,
        title="Shadow the mentor's design review",
    )  # fmt: skip


async def test_a_shadowing_opportunity_plans_one_90_minute_shadow_session_both_can_make(db):
    kickoff, regular = await formed_pair(db)
    [shadow] = (await db.apply(on_opportunity_offered, offered())).emitted
    assert isinstance(shadow, SessionScheduled)
    assert shadow.kind == "shadowing" and shadow.series_id is None
    assert shadow.end - shadow.start == dt.timedelta(minutes=90)
    assert shadow.agenda == kinds.profile(shadow.kind).agenda
    assert shadow.uid not in (kickoff.uid, regular.uid)
    assert set(shadow.attendee_ids) == {"m", "e"}
    assert shadow.start >= db.clock.now() + dt.timedelta(hours=db.settings.session_notice_hours)
    assert inside(nine_to_five("Europe/Berlin"), Interval(shadow.start, shadow.end))
    buffer = dt.timedelta(minutes=db.settings.session_buffer_minutes)
    for row in await all_rows(db):
        if row.session_id != shadow.session_id and row.status == "scheduled":
            other = span(row)
            assert other.end + buffer <= shadow.start or shadow.end + buffer <= other.start
    cal = Calendar.from_ical(shadow.ical)
    [vevent] = cal.walk("VEVENT")
    assert cal["METHOD"] == "REQUEST" and str(vevent["SUMMARY"]).startswith("Shadow session")
    assert (await db.apply(on_opportunity_offered, offered())).emitted == []  # once per offer
    [second] = (await db.apply(on_opportunity_offered, offered(opportunity="op-2"))).emitted
    assert isinstance(second, SessionScheduled) and second.uid != shadow.uid
    assert second.start >= shadow.end + buffer or second.end + buffer <= shadow.start


@pytest.mark.parametrize("kind", ["stretch assignment", "sponsorship", "introduction"])
async def test_other_opportunities_plan_nothing(db, kind):
    await formed_pair(db)
    assert (await db.apply(on_opportunity_offered, offered(kind=kind))).emitted == []


async def test_a_shadowing_opportunity_for_someone_in_no_pair_or_an_ended_one_plans_nothing(db):
    assert (await db.apply(on_opportunity_offered, offered())).emitted == []
    await formed_pair(db)
    assert (await db.apply(on_opportunity_offered, offered(who="m"))).emitted == []  # a mentor
    await db.apply(on_pair_ended, event(PairEnded, pair_id="p"))
    assert (await db.apply(on_opportunity_offered, offered())).emitted == []


async def test_with_a_second_pair_the_current_pair_gets_the_shadow_session(db):
    await formed_pair(db)
    await db.apply(on_pair_ended, event(PairEnded, pair_id="p"))
    body = registration("prog", "m2", role="mentor")
    await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
    again = event(
        PairFormed, pair_id="p2", round_id="r2", mentor_id="m2", mentee_id="e", language="en"
    )
    await db.apply(on_pair_formed, again)
    [shadow] = (await db.apply(on_opportunity_offered, offered(kind="Shadow day"))).emitted
    assert isinstance(shadow, SessionScheduled)
    assert shadow.pair_id == "p2" and set(shadow.attendee_ids) == {"m2", "e"}


async def test_an_offer_through_a_named_pair_plans_for_that_pair_if_the_person_is_in_it(db):
    await formed_pair(db)
    through = offered(who="m").model_copy(update={"pair_id": "p"})
    [shadow] = (await db.apply(on_opportunity_offered, through)).emitted
    assert isinstance(shadow, SessionScheduled) and shadow.pair_id == "p"
    stranger = offered(who="x", opportunity="op-9").model_copy(update={"pair_id": "p"})
    assert (await db.apply(on_opportunity_offered, stranger)).emitted == []
