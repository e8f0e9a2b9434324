"""The coordinators' overview: counts passed through, the paired share computed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.insights.overview import build_overview

COUNTS = {
    "mentors": 4,
    "mentees": 9,
    "timezones": 5,
    "pairs_formed": 6,
    "unmatched_mentees": 3,
    "sessions_scheduled": 6,
    "emails_sent": 11,
    "emails_failed": 1,
}


def test_counts_are_reported_as_given():
    overview = build_overview("prog-1", COUNTS, {})
    assert overview.program_id == "prog-1"
    assert overview.model_dump(exclude={"program_id", "mentees_paired_share", "events_seen"}) == (
        COUNTS
    )


@pytest.mark.parametrize(
    ("pairs", "mentees", "share"),
    [(6, 9, 0.667), (1, 3, 0.333), (2, 3, 0.667), (4, 4, 1.0), (0, 5, 0.0), (1, 8, 0.125)],
)
def test_paired_share_is_pairs_over_mentees_rounded_to_three_places(pairs, mentees, share):
    counts = {**COUNTS, "pairs_formed": pairs, "mentees": mentees}
    assert build_overview("prog-1", counts, {}).mentees_paired_share == share


def test_paired_share_is_zero_without_mentees():
    counts = {**COUNTS, "mentees": 0, "pairs_formed": 0}
    overview = build_overview("prog-1", counts, {})
    assert overview.mentees_paired_share == 0.0
    assert isinstance(overview.mentees_paired_share, float)


def test_events_seen_are_sorted_by_subject():
    seen = {
        "mentorship.pair.formed": 6,
        "mentorship.participant.registered": 13,
        "mentorship.matching.completed": 1,
    }
    overview = build_overview("prog-1", COUNTS, seen)
    assert list(overview.events_seen) == [
        "mentorship.matching.completed",
        "mentorship.pair.formed",
        "mentorship.participant.registered",
    ]
    assert overview.events_seen == seen


def test_overview_does_not_share_the_callers_mapping():
    seen = {"mentorship.pair.formed": 6}
    overview = build_overview("prog-1", COUNTS, seen)
    seen["mentorship.pair.formed"] = 99
    assert overview.events_seen == {"mentorship.pair.formed": 6}


def test_overview_is_frozen():
    overview = build_overview("prog-1", COUNTS, {})
    with pytest.raises(ValidationError):
        overview.mentors = 0  # type: ignore[misc]


def test_missing_count_is_an_error():
    counts = {k: v for k, v in COUNTS.items() if k != "emails_failed"}
    with pytest.raises(KeyError):
        build_overview("prog-1", counts, {})
