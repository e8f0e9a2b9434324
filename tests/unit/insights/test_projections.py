"""Delivery outcomes in the read model: the same status whatever order the reports arrive in."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.insights.projections import (
    CheckinStatus,
    DeliveryStatus,
    Streak,
    checkin_status,
    delivery_status,
    streak_answered,
    streak_missed,
)

SENT, FAILED = DeliveryStatus.SENT, DeliveryStatus.FAILED


def test_a_first_report_sets_the_status():
    assert delivery_status(None, SENT) is SENT
    assert delivery_status(None, FAILED) is FAILED


def test_a_sent_delivery_stays_sent_when_a_failure_is_reported():
    assert delivery_status(SENT, FAILED) is SENT


def test_a_failed_delivery_becomes_sent_when_sending_is_reported():
    assert delivery_status(FAILED, SENT) is SENT


@given(st.lists(st.sampled_from(DeliveryStatus), min_size=1, max_size=8), st.randoms())
def test_any_order_of_the_same_reports_gives_the_same_status(reports, random):
    def folded(order: list[DeliveryStatus]) -> DeliveryStatus | None:
        status: DeliveryStatus | None = None
        for reported in order:
            status = delivery_status(status, reported)
        return status

    shuffled = list(reports)
    random.shuffle(shuffled)
    assert folded(shuffled) == folded(reports) == (SENT if SENT in reports else FAILED)


checkin_reports = st.lists(
    st.tuples(st.integers(0, 9), st.sampled_from(["overdue", "submitted"])), max_size=30
)


@given(checkin_reports, st.randoms())
def test_the_overdue_streak_is_the_missed_check_ins_after_the_last_answered_in_any_order(
    reports, random
):
    """Check-in n is due on day n; the streak ends as the overdue, unanswered check-ins due
    after the latest answered one, whatever order the reports came in."""
    start = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    random.shuffle(reports)
    status: dict[int, CheckinStatus] = {}
    streak: Streak = []
    reported: dt.datetime | None = None
    for n, report in reports:
        before = status.get(n, CheckinStatus.DUE)
        after = checkin_status(before, CheckinStatus(report))
        status[n] = after
        if after is before:
            continue
        due = start + dt.timedelta(days=n)
        if after is CheckinStatus.SUBMITTED:
            streak, reported = streak_answered(streak, reported, f"c{n}", due)
        else:
            streak = streak_missed(streak, reported, f"c{n}", due)
    answered = [n for n, s in status.items() if s is CheckinStatus.SUBMITTED]
    last = max(answered, default=-1)
    expected = sorted(n for n, s in status.items() if s is CheckinStatus.OVERDUE and n > last)
    assert [int(cid[1:]) for _, cid in streak] == expected
    assert reported == (start + dt.timedelta(days=last) if answered else None)
