"""Delivery outcomes in the read model: the same status whatever order the reports arrive in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.insights.projections import DeliveryStatus, delivery_status

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
