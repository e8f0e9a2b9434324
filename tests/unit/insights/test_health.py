"""Pair health: one point per reason, bands by the program's thresholds."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.insights.health import Health, PairFacts, Thresholds, assess, crossed_into_risk

FORMED = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
counts = st.integers(0, 20)


@given(
    held=counts,
    missed=counts,
    due=counts,
    submitted=counts,
    overdue=counts,
    days=st.integers(0, 90),
    mentor_fb=counts,
    mentee_fb=counts,
)
def test_the_score_is_the_number_of_reasons_and_the_band_follows_it(
    held, missed, due, submitted, overdue, days, mentor_fb, mentee_fb
):
    facts = PairFacts(
        formed_at=FORMED,
        sessions_held=held,
        sessions_missed=missed,
        checkins_due=due,
        checkins_submitted=min(submitted, due),
        overdue_streak=overdue,
        feedback_from_mentor=mentor_fb,
        feedback_from_mentee=mentee_fb,
    )
    verdict = assess(facts, Thresholds(), FORMED + dt.timedelta(days=days))
    assert verdict.score == len(verdict.reasons)
    expected = (
        Health.AT_RISK if verdict.score >= 2 else Health.WATCH if verdict.score else Health.HEALTHY
    )
    assert verdict.health is expected


def test_each_reason_names_the_fact_behind_it():
    facts = PairFacts(
        formed_at=FORMED,
        sessions_held=1,
        sessions_missed=3,
        no_shows_mentee=2,
        fit_rating_sum=4,
        fit_rating_count=2,
        feedback_from_mentor=3,
    )
    verdict = assess(facts, Thresholds(), FORMED + dt.timedelta(days=30))
    assert verdict.reasons == (
        "1 of 4 sessions held",
        "no contact for 30 days",
        "mentee missed 2 sessions",
        "feedback only from the mentor (3)",
        "low fit rating (2.0 of 5)",
    )


def test_thresholds_are_the_programs():
    facts = PairFacts(formed_at=FORMED, last_contact_at=FORMED)
    at = FORMED + dt.timedelta(days=10)
    assert assess(facts, Thresholds(), at).health is Health.HEALTHY
    strict = Thresholds(max_days_without_contact=7, at_risk_score=1)
    assert assess(facts, strict, at).health is Health.AT_RISK


def test_a_pair_not_formed_now_is_not_scored():
    facts = PairFacts(formed_at=FORMED, sessions_missed=10, active=False)
    assert assess(facts, Thresholds(), FORMED + dt.timedelta(days=99)).health is Health.INACTIVE


def test_only_the_step_into_risk_is_a_crossing():
    assert crossed_into_risk(Health.WATCH, Health.AT_RISK)
    assert crossed_into_risk(Health.INACTIVE, Health.AT_RISK)
    assert not crossed_into_risk(Health.AT_RISK, Health.AT_RISK)
    assert not crossed_into_risk(Health.AT_RISK, Health.WATCH)
