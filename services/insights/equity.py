"""Equity views: outcomes per demographic group, with small groups suppressed.

Only demographics participants consented to share reach insights (participant.registered's
`demographics`). A group of fewer than MIN_GROUP people is never shown, and no combination of
what is shown (the whole program's view and every cohort's, added and subtracted in any way)
isolates a set of 1 to MIN_GROUP - 1 people: `publication` decides over the attribute's whole
table of groups and cohorts at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

MIN_GROUP = 5

# the metrics an equity row carries per group, besides the number of people
OPPORTUNITY_KINDS = ("stretch", "sponsorship", "introduction")


class GroupFigures(BaseModel):
    """One group's figures, or only `suppressed` when it is too small to show."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    group: str
    suppressed: bool
    people: int | None = None
    opportunities_per_capita: dict[str, float] | None = None
    match_quality: float | None = None
    session_adherence: float | None = None
    flags: list[str] = []


@dataclass(frozen=True)
class GroupTotals:
    """The raw sums of one group, as projected."""

    people: int
    opportunities: Mapping[str, int]
    matched: int = 0
    match_score_sum: float = 0.0
    sessions_held: int = 0
    sessions_missed: int = 0

    @property
    def match_quality(self) -> float | None:
        return round(self.match_score_sum / self.matched, 3) if self.matched else None

    @property
    def session_adherence(self) -> float | None:
        past = self.sessions_held + self.sessions_missed
        return round(self.sessions_held / past, 3) if past else None


REST = "\x00rest"  # the column of people in no cohort (counted only in the whole program)
_INF = 1 << 40


@dataclass(frozen=True)
class Publication:
    """What of one attribute may be shown: groups of the whole program, (group, cohort) cells."""

    groups: frozenset[str]
    cells: frozenset[tuple[str, str]]

    def of_cohort(self, cohort: str) -> set[str]:
        return {group for group, c in self.cells if c == cohort}


def publication(whole: Mapping[str, int], cells: Mapping[tuple[str, str], int]) -> Publication:
    """The groups and cohort cells of one attribute that may be shown, decided over the whole
    table at once, so that no combination of the answers (the whole program's view and every
    cohort's) isolates a set of 1 to 4 people.

    The table: groups x cohorts (`cells`, people per group and cohort; `whole`, per group; people
    in no cohort are a column never shown). Assumed known besides what is shown: each cohort's
    number of people (the coordinators know their cohorts) and that an absent cell is 0. What
    the shown figures determine is then every combination a_g + b_c of the hidden cells (a row's
    sum when its group is shown in the whole view, a column's sum always); a 0/1 one of these is
    a set of people whose number is known. Each such set is a directed cut of the hidden cells'
    bipartite graph (group -> cohort, the groups not shown in the whole view merged into one
    vertex), so a set of 1 to 4 people is found as a max-flow below 5 between the two ends of a
    hidden cell (a cohort of under 5 people is known anyway: only sets that do not hold all of
    it are looked for). Cells of 1 to 4 people and groups under 5 are hidden first; while a set
    of 1 to 4 people can be worked out, the smallest shown cell across its cut is hidden too
    (else two more groups of the whole view). Hiding never makes more known, so this ends.
    """
    table = {key: n for key, n in cells.items() if n > 0}
    for group, n in whole.items():  # people in no cohort: the whole program minus the cohorts
        rest = n - sum(m for (g, _), m in table.items() if g == group)
        if rest > 0:
            table[(group, REST)] = rest
    groups = {group for group, n in whole.items() if n >= MIN_GROUP}
    shown = {(g, c) for (g, c), n in table.items() if n >= MIN_GROUP and g in groups and c != REST}
    while (side := _leak(table, groups, shown)) is not None:
        across = [
            (table[(g, c)], g, c)
            for g, c in shown
            if (_vertex(g, groups) in side) != (("c", c) in side)
        ]
        if across:  # hidden, it adds 5 or more to the cut, or joins its two sides
            _, g, c = min(across)
            shown.discard((g, c))
            continue
        # no shown cell crosses the cut: join its sides by hiding groups of the whole view on
        # both (one group hidden alone is the total minus the shown ones; the groups hidden
        # already are one vertex, on one side)
        hidden = any(n > 0 and g not in groups for g, n in whole.items())
        skip = {_G in side} if hidden else set()
        before = len(groups)
        for in_side in (True, False):
            if in_side not in skip:
                pick = sorted((whole[g], g) for g in groups if (("g", g) in side) == in_side)
                if pick:
                    groups.discard(pick[0][1])
        if len(groups) == before:  # nothing left to join them with: hide the attribute
            if groups:
                groups.clear()
            elif shown:
                shown.clear()
            else:
                break
    return Publication(frozenset(groups), frozenset(shown))


_G = ("g", "\x00hidden")  # the groups not shown in the whole view, merged: their sums are unknown


def _vertex(group: str, groups: set[str]) -> tuple[str, str]:
    return ("g", group) if group in groups else _G


def _leak(
    table: Mapping[tuple[str, str], int], groups: set[str], shown: set[tuple[str, str]]
) -> set[tuple[str, str]] | None:
    """The source side of a cut whose hidden cells are a known set of 1 to 4 people, or None."""
    capacity: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    column_total: dict[str, int] = {}
    for (g, c), n in table.items():
        column_total[c] = column_total.get(c, 0) + n
        if (g, c) in shown:
            continue
        u, v = _vertex(g, groups), ("c", c)
        capacity.setdefault(u, {})
        capacity.setdefault(v, {})
        capacity[u][v] = capacity[u].get(v, 0) + n
        capacity[v][u] = _INF  # a cohort's vertex on the known side takes its groups along
    hidden_cells = sorted((a, b) for a in capacity if a[0] == "g" for b in capacity[a])
    for u, v in hidden_cells:
        sinks_of: list[set[tuple[str, str]]]
        if column_total[v[1]] >= MIN_GROUP:
            sinks_of = [{v}]
        else:  # the cohort's total is known anyway: look for sets leaving one of its groups out
            sinks_of = [{v, w} for w in capacity[v] if w != u]
        for sinks in sinks_of:
            side = _cut_below(capacity, u, sinks, MIN_GROUP)
            if side is not None:
                return side
    return None


def _cut_below(
    capacity: Mapping[tuple[str, str], Mapping[tuple[str, str], int]],
    source: tuple[str, str],
    sinks: set[tuple[str, str]],
    limit: int,
) -> set[tuple[str, str]] | None:
    """The source side of a min cut from source to sinks if its capacity is under `limit`."""
    flow: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}

    def residual(a: tuple[str, str], b: tuple[str, str]) -> int:
        return capacity[a].get(b, 0) - flow.get((a, b), 0) + flow.get((b, a), 0)

    total = 0
    while True:
        parent: dict[tuple[str, str], tuple[str, str] | None] = {source: None}
        queue, reached = [source], None
        while queue and reached is None:
            a = queue.pop(0)
            for b in capacity[a]:
                if b not in parent and residual(a, b) > 0:
                    parent[b] = a
                    if b in sinks:
                        reached = b
                        break
                    queue.append(b)
        if reached is None:
            return set(parent)  # what the source still reaches: the min cut's source side
        path, end = [], reached
        while (start := parent[end]) is not None:
            path.append((start, end))
            end = start
        push = min(residual(a, b) for a, b in path)
        for a, b in path:
            back = min(push, flow.get((b, a), 0))
            if back:
                flow[(b, a)] -= back
            if push - back:
                flow[(a, b)] = flow.get((a, b), 0) + push - back
        total += push
        if total >= limit:
            return None


def shown_groups(sizes: Mapping[str, int]) -> set[str]:
    """The groups of one attribute a view of the whole program alone may show."""
    return set(publication(sizes, {}).groups)


def figures(
    attribute: str,
    totals: Mapping[str, GroupTotals],
    *,
    shown: set[str] | None = None,
    gap_threshold: float = 0.2,
) -> list[GroupFigures]:
    """Each group's figures, those not `shown` suppressed (by default: what shown_groups
    allows), gaps beyond the threshold flagged."""
    if shown is None:
        shown = shown_groups({group: t.people for group, t in totals.items()})
    shown = {group for group in shown if group in totals}
    rows: list[GroupFigures] = []
    per_capita = {
        group: {
            kind: round(t.opportunities.get(kind, 0) / t.people, 3) for kind in OPPORTUNITY_KINDS
        }
        for group, t in totals.items()
        if group in shown
    }
    best = {
        kind: max((pc[kind] for pc in per_capita.values()), default=0.0)
        for kind in OPPORTUNITY_KINDS
    }
    adherence = [a for g in shown if (a := totals[g].session_adherence) is not None]
    quality = [q for g in shown if (q := totals[g].match_quality) is not None]
    for group in sorted(totals):
        t = totals[group]
        if group not in shown:
            rows.append(GroupFigures(attribute=attribute, group=group, suppressed=True))
            continue
        flags = [
            f"{kind} opportunities {per_capita[group][kind]:.2f} per person vs "
            f"{best[kind]:.2f} in the best-served group"
            for kind in OPPORTUNITY_KINDS
            if best[kind] > 0
            and (best[kind] - per_capita[group][kind]) / best[kind] > gap_threshold
        ]
        if (
            t.session_adherence is not None
            and adherence
            and (max(adherence) - t.session_adherence > gap_threshold)
        ):
            flags.append(f"session adherence {t.session_adherence:.2f} vs {max(adherence):.2f}")
        if (
            t.match_quality is not None
            and quality
            and max(quality) > 0
            and ((max(quality) - t.match_quality) / max(quality) > gap_threshold)
        ):
            flags.append(f"match quality {t.match_quality:.2f} vs {max(quality):.2f}")
        rows.append(
            GroupFigures(
                attribute=attribute,
                group=group,
                suppressed=False,
                people=t.people,
                opportunities_per_capita=per_capita[group],
                match_quality=t.match_quality,
                session_adherence=t.session_adherence,
                flags=flags,
            )
        )
    return rows


def opportunity_kind(kind: str) -> str:
    """The equity bucket of an opportunity.offered kind ('stretch assignment' -> 'stretch')."""
    lowered = kind.lower()
    for bucket in OPPORTUNITY_KINDS:
        if lowered.startswith(bucket[:5]):
            return bucket
    return "other"
