"""Who mentors whom: the exact optimum of a program's round, with its proof and explanations.

Hard constraints: a shared language; enough weekly shared working time with one unbroken
stretch for a session (real dates, DST-aware); mentor capacity; no pair inside a reporting line
(nor one department when the program says so); avoid lists; ended pairs are not formed again.
The soft score (pricing.py) sums weighted components; each further mentee of one mentor costs
more (diminishing returns on load). The optimum is a min-cost flow (flow.py) over a sparse
candidate graph grown by column generation: after each solve, the mentors' dual prices say
which unseen pairs could still improve it; they are added until none can, and the dual bound
then equals the objective (a certificate, checked over every feasible pair through the chunk
bounds, not assumed). See docs/adr/0011-exact-matching-by-column-generation.md and
0013-seeded-candidate-graph-and-incremental-pricing.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from services.pairing import cardinality, explain, flow, pricing
from services.pairing.encoding import Encoded, encode
from services.pairing.model import (
    MIN_SHARED_STRETCH_MINUTES,
    MIN_WEEKLY_OVERLAP_MINUTES,
    Alternative,
    Certificate,
    MatchResult,
    Objective,
    Profile,
    Proposal,
    Rules,
    Unmatched,
    Weights,
)

__all__ = [
    "MIN_SHARED_STRETCH_MINUTES",
    "MIN_WEEKLY_OVERLAP_MINUTES",
    "Alternative",
    "Certificate",
    "MatchResult",
    "Objective",
    "Profile",
    "Proposal",
    "Rules",
    "Unmatched",
    "Weights",
    "propose_pairs",
]

FIRST_CANDIDATES = 8  # per mentee, before any price is known
ADDED_PER_ROUND = 6  # violating pairs added per mentee and iteration
MAX_ITERATIONS = 60
SPREAD_PASSES = 2
SPREAD_CANDIDATES = 4
SPREAD_SLACK = 2
SPREAD_PRICE = 1000
SEED_PASSES = 3  # rounds of arcs to mentors with places left, for mentees the graph cannot match
SEED_CANDIDATES = 4
CLOSED = 2**40  # a price no pair can beat: the mentor takes no one in a seeding pass


def propose_pairs(
    mentors: Sequence[Profile],
    mentees: Sequence[Profile],
    *,
    current_load: Mapping[str, int],
    week_of: dt.date,
    rules: Rules | None = None,
    ended: Collection[tuple[str, str]] = (),
    waitlisted: Collection[str] = (),
) -> MatchResult:
    """Pairs mentees with mentors at the exact optimum; deterministic for the same input.

    ended: (mentor_id, mentee_id) of pairs that ended (never formed again); waitlisted: mentees
    a previous round left unmatched, who get the waitlist bonus so this round serves them first.
    """
    rules = rules or Rules()
    waiting = set(waitlisted)
    bonus = [rules.weights.waitlist if p.participant_id in waiting else 0 for p in mentees]
    enc = encode(
        mentors,
        mentees,
        current_load=current_load,
        forbidden=_ruled_out(mentors, mentees, ended),
        bonus=bonus,
        rules=rules,
        week_of=week_of,
    )
    solved, certificate, arcs = _optimise(enc, rules, len(mentees))
    return explain.result(
        enc, solved, certificate, arcs, mentors, mentees, rules=rules, week_of=week_of
    )


def unmatched_cost(rules: Rules, enc: Encoded, n_mentees: int) -> int:
    """What leaving a mentee unmatched costs: nothing for quality; for participation more than
    any difference in quality, so that the count of matched mentees comes first."""
    if rules.objective is Objective.QUALITY:
        return 0
    w = rules.weights
    best_pair = w.skills + w.goals + w.hours + w.channel + w.seniority + w.waitlist
    most_load = w.load * int(enc.load.max(initial=0) + enc.free.max(initial=0))
    return (best_pair + most_load + 1) * (n_mentees + 1)


def _optimise(
    enc: Encoded, rules: Rules, n_mentees: int
) -> tuple[flow.Flow, Certificate, tuple[NDArray[np.int64], ...]]:
    load_cost = rules.weights.load
    u_cost = unmatched_cost(rules, enc, n_mentees)
    price = load_cost * enc.load
    floor = np.full(n_mentees, -u_cost, dtype=np.int64)
    found_j, found_s, _, scored = _search(enc, price, floor, FIRST_CANDIDATES)
    tails, heads, scores = _arcs(found_j, found_s)
    # the first arcs are everyone's favourites; priced by how over-asked each mentor is, a
    # second pass adds each mentee's best options among the others (fewer unmatched to start)
    for _ in range(SPREAD_PASSES):
        asked = np.bincount(heads, minlength=len(enc.free))
        over = np.maximum(0, asked - SPREAD_SLACK * enc.free)
        price = load_cost * enc.load + (SPREAD_PRICE * over) // np.maximum(asked, 1)
        found_j, found_s, _, more = _search(enc, price, floor, SPREAD_CANDIDATES)
        scored += more
        t2, h2, s2 = _arcs(found_j, found_s)
        tails = np.concatenate([tails, t2])
        heads = np.concatenate([heads, h2])
        scores = np.concatenate([scores, s2])
    if SPREAD_PASSES:
        tails, heads, scores = _unique_arcs(tails, heads, scores, len(enc.free))
    # a mentee no matching of the graph can place costs the flow a search of the whole graph
    # before it ends unmatched: first give such mentees arcs to the mentors with room left
    for _ in range(SEED_PASSES):
        start, heads, scores, tails = _csr(tails, heads, scores, n_mentees)
        placed = cardinality.maximum_matching(start, heads, enc.free)
        left = np.flatnonzero(placed < 0)
        if len(left) == 0:
            break
        room = enc.free - np.bincount(placed[placed >= 0], minlength=len(enc.free))
        price = np.where(room > 0, load_cost * enc.load, CLOSED)
        found_j, found_s, _, more = _search(enc, price, floor, SEED_CANDIDATES, rows=left)
        scored += more
        t2, h2, s2 = _arcs(found_j, found_s, rows=left)
        if len(t2) == 0:
            break
        tails, heads, scores = _unique_arcs(
            np.concatenate([tails, t2]),
            np.concatenate([heads, h2]),
            np.concatenate([scores, s2]),
            len(enc.free),
        )
    iterations = 0
    solved: flow.Flow | None = None
    reroute = None
    proved = np.zeros(n_mentees, dtype=np.bool_)
    last: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None
    while True:
        iterations += 1
        start, heads, scores, tails = _csr(tails, heads, scores, n_mentees)
        # warm: only the mentees with new arcs are routed again, from the last optimum
        solved = flow.solve(
            start,
            heads,
            scores,
            enc.free,
            enc.load,
            load_cost,
            u_cost,
            warm=solved,
            reroute=reroute,
        )
        price = solved.mentor_price
        floor = solved.mentee_dual
        found_j, found_s, best, more = _violations(enc, price, floor, proved, last)
        scored += more
        proved = found_j[:, -1] < 0  # fewer than asked for: every violating pair was added
        last = (price, floor)
        new_t, new_h, new_s = _arcs(found_j, found_s)
        if len(new_t) == 0 or iterations >= MAX_ITERATIONS:
            break
        reroute = np.zeros(n_mentees, dtype=np.bool_)
        reroute[new_t] = True
        tails = np.concatenate([tails, new_t])
        heads = np.concatenate([heads, new_h])
        scores = np.concatenate([scores, new_s])
    primal = _primal(solved, enc, load_cost, u_cost)
    bound = int(best.sum()) + _slot_bound(price, enc, load_cost)
    certificate = Certificate(
        primal=primal, bound=bound, iterations=iterations, arcs=len(tails), scored=scored
    )
    return solved, certificate, (start, heads, scores)


def _violations(
    enc: Encoded,
    price: NDArray[np.int64],
    floor: NDArray[np.int64],
    proved: NDArray[np.bool_],
    last: tuple[NDArray[np.int64], NDArray[np.int64]] | None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
    """The pairs that could improve the optimum at these prices (_search's result, per mentee).

    A mentee proved at the last prices (every pair then violating was added) whose dual has
    not fallen can only be beaten now by a mentor whose price fell: only those are searched.
    The best value per mentee stays exact: nothing else can beat its dual.
    """
    n, k = len(floor), ADDED_PER_ROUND
    found_j = np.full((n, k), -1, dtype=np.int64)
    found_s = np.full((n, k), -1, dtype=np.int64)
    best = floor.astype(np.int64).copy()
    full = ~proved if last is None else ~proved | (floor < last[1])
    scored = 0
    passes: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = [(np.flatnonzero(full), price)]
    if last is not None and (price < last[0]).any():
        passes.append((np.flatnonzero(~full), np.where(price < last[0], price, CLOSED)))
    for rows, at in passes:
        if len(rows) == 0:
            continue
        fj, fs, b, more = _search(enc, at, floor, k, rows=rows)
        found_j[rows], found_s[rows], best[rows] = fj, fs, b
        scored += more
    return found_j, found_s, best, scored


def _search(
    enc: Encoded,
    price: NDArray[np.int64],
    floor: NDArray[np.int64],
    k: int,
    rows: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
    """Per mentee (of rows, default all), its best k pairs with score - price above floor."""
    ch = enc.chunks
    price = price.astype(np.int64)
    order, starts = ch[0], ch[6]
    # each chunk's members by ascending price: a scan stops at the first one too dear
    chunk_of = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    by_price = order[np.lexsort((order, price[order], chunk_of))] if len(order) else order
    # where each member's run of equal price in its chunk ends (the search rotates within it)
    if len(order):
        cut = np.flatnonzero((np.diff(chunk_of) != 0) | (np.diff(price[by_price]) != 0)) + 1
        edges = np.concatenate(([0], cut, [len(order)])).astype(np.int64)
        ends = np.repeat(edges[1:], np.diff(edges))
    else:
        ends = np.zeros(0, dtype=np.int64)
    found_j, found_s, best, scored = pricing.search(
        enc.mentees,
        enc.mentors,
        (by_price, *ch[1:]),
        enc.tables,
        enc.weights,
        price,
        floor.astype(np.int64),
        k,
        np.arange(len(floor), dtype=np.int64) if rows is None else rows.astype(np.int64),
        ends,
    )
    return found_j, found_s, best, int(scored)


def _arcs(
    found_j: NDArray[np.int64],
    found_s: NDArray[np.int64],
    rows: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    at, cols = np.nonzero(found_j >= 0)
    tails = at.astype(np.int64) if rows is None else rows[at].astype(np.int64)
    return tails, found_j[at, cols], found_s[at, cols]


def _unique_arcs(
    tails: NDArray[np.int64], heads: NDArray[np.int64], scores: NDArray[np.int64], m: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    _, first = np.unique(tails * max(m, 1) + heads, return_index=True)
    return tails[first], heads[first], scores[first]


def _csr(
    tails: NDArray[np.int64], heads: NDArray[np.int64], scores: NDArray[np.int64], n: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    order = np.lexsort((heads, tails))
    tails, heads, scores = tails[order], heads[order], scores[order]
    start = np.searchsorted(tails, np.arange(n + 1)).astype(np.int64)
    return start, heads, scores, tails


def _primal(solved: flow.Flow, enc: Encoded, load_cost: int, u_cost: int) -> int:
    matched = solved.assigned >= 0
    first, taken = enc.load, solved.new_load
    # the k-th place costs load_cost * k: sum over k = first .. first + taken - 1
    slots = load_cost * (taken * first + taken * (taken - 1) // 2)
    return int(solved.assigned_score[matched].sum() - slots.sum() - u_cost * int((~matched).sum()))


def _slot_bound(price: NDArray[np.int64], enc: Encoded, load_cost: int) -> int:
    """Sum over every free place of max(0, price - the place's cost)."""
    total = 0
    for k in range(int(enc.free.max(initial=0))):
        has = enc.free > k
        cost = load_cost * (enc.load + k)
        total += int(np.maximum(0, price - cost)[has].sum())
    return total


def _ruled_out(
    mentors: Sequence[Profile], mentees: Sequence[Profile], ended: Collection[tuple[str, str]]
) -> set[tuple[int, int]]:
    """(mentee, mentor) positions no pair may join: reporting lines, avoid lists, ended pairs."""
    mentor_at = {p.participant_id: j for j, p in enumerate(mentors)}
    mentee_at = {p.participant_id: i for i, p in enumerate(mentees)}
    manager = {p.participant_id: p.manager_id for p in (*mentors, *mentees) if p.manager_id}
    out: set[tuple[int, int]] = set()

    def chain(person: str) -> list[str]:
        seen: list[str] = []
        boss = manager.get(person)
        while boss is not None and boss not in seen and len(seen) < 50:
            seen.append(boss)
            boss = manager.get(boss)
        return seen

    for i, p in enumerate(mentees):
        for boss in chain(p.participant_id):
            if boss in mentor_at:
                out.add((i, mentor_at[boss]))
        for other in p.avoid:
            if other in mentor_at:
                out.add((i, mentor_at[other]))
    for j, p in enumerate(mentors):
        for boss in chain(p.participant_id):
            if boss in mentee_at:
                out.add((mentee_at[boss], j))
        for other in p.avoid:
            if other in mentee_at:
                out.add((mentee_at[other], j))
    for mentor_id, mentee_id in ended:
        if mentor_id in mentor_at and mentee_id in mentee_at:
            out.add((mentee_at[mentee_id], mentor_at[mentor_id]))
    return out
