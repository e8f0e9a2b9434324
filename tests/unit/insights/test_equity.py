"""Equity suppression: no group under 5 people is shown, and no combination of what is shown
(the whole program's view and every cohort's) isolates a set of 1 to 4 people."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.insights.equity import (
    MIN_GROUP,
    REST,
    GroupTotals,
    Publication,
    figures,
    publication,
    shown_groups,
)

sizes = st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 30), min_size=1)
# people per (group, cohort): mostly small, so that suppression has work to do
people = st.integers(0, 12) | st.sampled_from([0, 1, 2, 3, 4, 5, 6])


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """An attribute's table: people per group and cohort, and per group in the whole program
    (with, at times, people in no cohort, counted only there)."""
    groups = draw(st.lists(st.sampled_from("abcde"), min_size=1, max_size=4, unique=True))
    cohorts = draw(st.lists(st.sampled_from("PQRST"), min_size=1, max_size=4, unique=True))
    cells = {(g, c): draw(people) for g in groups for c in cohorts}
    no_cohort = draw(st.booleans())
    whole = {
        g: sum(n for (h, _), n in cells.items() if h == g) + (draw(people) if no_cohort else 0)
        for g in groups
    }
    return whole, cells


def isolated_sets(
    whole: Mapping[str, int], cells: Mapping[tuple[str, str], int], shown: Publication
) -> list[list[tuple[str, str]]]:
    """Every set of 1 to 4 people that the shown answers determine, found by brute force.

    The attacker knows each shown cell, each shown group's whole-program total, each cohort's
    size (people in no cohort too) and which cells are 0. A set (a union of cells) has a known
    size when its indicator is a linear combination of those; a cohort of under 5 is known
    anyway, so a union of whole cohorts is not counted as isolated."""
    atoms = {key: n for key, n in cells.items() if n}
    for g, n in whole.items():
        rest = n - sum(m for (h, _), m in cells.items() if h == g)
        if rest:
            atoms[(g, REST)] = rest
    order = sorted(atoms)
    index = {key: i for i, key in enumerate(order)}
    known: list[np.ndarray] = []

    def vector(keys: list[tuple[str, str]]) -> np.ndarray:
        v = np.zeros(len(order))
        for key in keys:
            v[index[key]] = 1
        return v

    known += [vector([key]) for key in order if key in shown.cells]
    known += [vector([k for k in order if k[0] == g]) for g in shown.groups]
    columns = {c for _, c in order}
    known += [vector([k for k in order if k[1] == c]) for c in columns]
    matrix = np.array(known) if known else np.zeros((0, len(order)))
    rank = np.linalg.matrix_rank(matrix) if known else 0
    hidden = [key for key in order if key not in shown.cells]
    found = []
    for size in range(1, MIN_GROUP):
        for subset in itertools.combinations(hidden, size):
            if sum(atoms[k] for k in subset) >= MIN_GROUP:
                continue
            touched = {c for _, c in subset}
            if set(subset) == {k for k in order if k[1] in touched}:
                continue  # whole cohorts: their size is known without insights
            candidate = np.vstack([matrix, vector(list(subset))])
            if np.linalg.matrix_rank(candidate) == rank:
                found.append(list(subset))
    return found


@settings(max_examples=300, deadline=None)
@given(tables())
def test_no_combination_of_the_shown_answers_isolates_one_to_four_people(table):
    whole, cells = table
    shown = publication(whole, cells)
    assert all(whole[g] >= MIN_GROUP for g in shown.groups)
    assert all(cells[key] >= MIN_GROUP and key[1] != REST for key in shown.cells)
    assert isolated_sets(whole, cells, shown) == []


def test_the_auditor_finds_the_three_overlapping_queries_of_the_last_stop():
    """Group g has 14 people: 5 in cohort A, 5 in B, 4 in C. Each of A's and B's cells leaves 9
    outside it, so the rule comparing one cohort with the program showed both; the program's
    14 minus A's 5 minus B's 5 is C's 4."""
    whole = {"g": 14, "h": 30}
    cells = {("g", "A"): 5, ("g", "B"): 5, ("g", "C"): 4}
    cells |= {("h", "A"): 10, ("h", "B"): 10, ("h", "C"): 10}
    old = Publication(
        groups=frozenset({"g", "h"}),
        cells=frozenset({("g", "A"), ("g", "B"), ("h", "A"), ("h", "B"), ("h", "C")}),
    )
    assert [("g", "C")] in isolated_sets(whole, cells, old)
    shown = publication(whole, cells)
    assert isolated_sets(whole, cells, shown) == []
    assert ("g", "C") not in shown.cells and shown.cells & {("g", "A"), ("g", "B")} != {
        ("g", "A"),
        ("g", "B"),
    }


def test_a_table_of_large_cells_is_shown_whole():
    whole = {"g": 20, "h": 30}
    cells = {("g", "A"): 5, ("g", "B"): 15, ("h", "A"): 10, ("h", "B"): 20}
    assert publication(whole, cells) == Publication(frozenset(whole), frozenset(cells))


@given(sizes)
def test_no_small_group_is_shown_and_the_hidden_ones_are_never_1_to_4_together(groups):
    shown = shown_groups(groups)
    assert all(groups[g] >= MIN_GROUP for g in shown)
    hidden = sum(n for g, n in groups.items() if g not in shown)
    # the hidden groups together are the total minus what is shown (a program of under 5
    # people in all is known to the coordinators anyway, so with nothing shown it may be small)
    assert hidden == 0 or hidden >= MIN_GROUP or not shown


def test_two_small_groups_hidden_together_under_5_hide_another():
    assert shown_groups({"a": 10, "b": 12, "c": 1, "d": 2}) == {"b"}


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
