"""Equity suppression: no group under 5 people is shown or can be worked out from what is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.insights.equity import MIN_GROUP, GroupTotals, figures, shown_groups

sizes = st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 30), min_size=1)


@given(sizes)
def test_no_small_group_is_shown_and_never_just_one_is_hidden(groups):
    shown = shown_groups(groups)
    assert all(groups[g] >= MIN_GROUP for g in shown)
    hidden = [g for g in groups if g not in shown and groups[g] > 0]
    # one hidden group beside shown ones would be the total minus what is shown
    assert not (len(hidden) == 1 and shown)


@given(sizes, st.data())
def test_a_cohorts_group_is_shown_only_if_the_rest_of_the_program_is_not_small(whole, data):
    cohort = {g: data.draw(st.integers(0, n)) for g, n in whole.items()}
    for group in shown_groups(cohort, whole):
        rest = whole[group] - cohort[group]
        assert cohort[group] >= MIN_GROUP and (rest == 0 or rest >= MIN_GROUP)


def test_gaps_over_the_threshold_are_flagged_per_group():
    totals = {
        "a": GroupTotals(
            people=10, opportunities={"stretch": 10}, sessions_held=9, sessions_missed=1
        ),
        "b": GroupTotals(
            people=10, opportunities={"stretch": 2}, sessions_held=5, sessions_missed=5
        ),
    }
    by_group = {row.group: row for row in figures("group", totals)}
    assert by_group["a"].flags == []
    assert by_group["b"].flags == [
        "stretch opportunities 0.20 per person vs 1.00 in the best-served group",
        "session adherence 0.50 vs 0.90",
    ]
    assert by_group["b"].opportunities_per_capita == {
        "stretch": 0.2,
        "sponsorship": 0.0,
        "introduction": 0.0,
    }


def test_a_suppressed_group_carries_no_figures():
    totals = {
        "a": GroupTotals(people=9, opportunities={"stretch": 3}),
        "b": GroupTotals(people=6, opportunities={}),
        "c": GroupTotals(people=2, opportunities={"stretch": 2}),
    }
    rows = {row.group: row for row in figures("group", totals)}
    assert rows["c"].suppressed and rows["c"].people is None and rows["c"].flags == []
    # c alone hidden would be known from the total: b, the smallest shown, is hidden too
    assert rows["b"].suppressed and not rows["a"].suppressed
