"""The min-cost flow against OR-tools' on random candidate graphs, and its duals as a proof."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow

from services.pairing.flow import UNMATCHED, solve


def reference_optimum(n, m, tails, heads, scores, free, load, load_cost, unmatched_cost) -> int:
    """The best objective by OR-tools' min-cost flow (every place of a mentor an arc)."""
    f = min_cost_flow.SimpleMinCostFlow()
    sink = n + m
    ones = np.ones(len(tails), dtype=np.int64)
    f.add_arcs_with_capacity_and_unit_cost(tails, n + heads, ones, -scores)
    for i in range(n):
        f.add_arc_with_capacity_and_unit_cost(i, sink, 1, unmatched_cost)
    for j in range(m):
        for k in range(int(free[j])):
            f.add_arc_with_capacity_and_unit_cost(n + j, sink, 1, load_cost * int(load[j] + k))
    for node in range(n + m + 1):
        f.set_node_supply(node, 1 if node < n else (-n if node == sink else 0))
    assert f.solve() == f.OPTIMAL
    return -int(f.optimal_cost())


@st.composite
def graphs(draw: st.DrawFn):
    n = draw(st.integers(1, 14))
    m = draw(st.integers(1, 6))
    pairs = sorted(
        draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, m - 1)), max_size=40))
    )
    scores = draw(st.lists(st.integers(0, 60), min_size=len(pairs), max_size=len(pairs)))
    free = draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))
    load = draw(st.lists(st.integers(0, 2), min_size=m, max_size=m))
    return (
        n,
        m,
        np.array([p[0] for p in pairs], dtype=np.int64),
        np.array([p[1] for p in pairs], dtype=np.int64),
        np.array(scores, dtype=np.int64),
        np.array(free, dtype=np.int64),
        np.array(load, dtype=np.int64),
        draw(st.integers(0, 12)),
        draw(st.sampled_from([0, 5, 10_000])),
    )


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_the_flow_is_optimal_and_its_duals_prove_it(graph):
    n, m, tails, heads, scores, free, load, load_cost, unmatched_cost = graph
    start = np.searchsorted(tails, np.arange(n + 1)).astype(np.int64)
    flow = solve(start, heads, scores, free, load, load_cost, unmatched_cost)
    taken = np.bincount(flow.assigned[flow.assigned >= 0], minlength=m)
    assert (taken <= free).all() and (taken == flow.new_load).all()
    objective = -unmatched_cost * int((flow.assigned == UNMATCHED).sum())
    for i in np.flatnonzero(flow.assigned >= 0):
        arcs = [a for a in range(start[i], start[i + 1]) if heads[a] == flow.assigned[i]]
        assert arcs, "a mentee is assigned along an arc of the graph"
        assert flow.assigned_score[i] == scores[arcs[0]]
        objective += int(scores[arcs[0]])
    objective -= sum(load_cost * int(load[j] + k) for j in range(m) for k in range(taken[j]))
    optimum = reference_optimum(n, m, tails, heads, scores, free, load, load_cost, unmatched_cost)
    assert objective == optimum
    # the Lagrangian bound at the flow's mentor prices equals the objective: proven optimal
    price = flow.mentor_price
    best = np.full(n, -unmatched_cost, dtype=np.int64)
    for a in range(len(tails)):
        if free[heads[a]] > 0:
            best[tails[a]] = max(best[tails[a]], scores[a] - price[heads[a]])
    places = sum(
        max(0, int(price[j]) - load_cost * int(load[j] + k))
        for j in range(m)
        for k in range(int(free[j]))
    )
    assert int(best.sum()) + places == objective


def _objective(flow, start, heads, scores, load, load_cost, unmatched_cost, m) -> int:
    taken = np.bincount(flow.assigned[flow.assigned >= 0], minlength=m)
    objective = -unmatched_cost * int((flow.assigned == UNMATCHED).sum())
    for i in np.flatnonzero(flow.assigned >= 0):
        arcs = [a for a in range(start[i], start[i + 1]) if heads[a] == flow.assigned[i]]
        assert arcs, "a mentee is assigned along an arc of the graph"
        assert flow.assigned_score[i] == scores[arcs[0]]
        objective += int(scores[arcs[0]])
    return objective - sum(load_cost * int(load[j] + k) for j in range(m) for k in range(taken[j]))


@settings(max_examples=300, deadline=None)
@given(graphs(), st.data())
def test_a_warm_start_from_fewer_arcs_reaches_the_same_optimum_and_proof(graph, data):
    """Column generation's re-solve: the optimum on a subset of the arcs, then every arc with
    the mentees that gained arcs routed again; the sink may lack nothing while mentors lack a
    mentee (paths through the sink), which the reference checks."""
    n, m, tails, heads, scores, free, load, load_cost, unmatched_cost = graph
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(tails), max_size=len(tails))))
    keep = keep.astype(bool) if len(tails) else np.zeros(0, dtype=bool)
    sub_start = np.searchsorted(tails[keep], np.arange(n + 1)).astype(np.int64)
    first = solve(sub_start, heads[keep], scores[keep], free, load, load_cost, unmatched_cost)
    start = np.searchsorted(tails, np.arange(n + 1)).astype(np.int64)
    reroute = np.zeros(n, dtype=bool)
    reroute[tails[~keep]] = True
    flow = solve(
        start,
        heads,
        scores,
        free,
        load,
        load_cost,
        unmatched_cost,
        warm=first,
        reroute=reroute,
    )
    taken = np.bincount(flow.assigned[flow.assigned >= 0], minlength=m)
    assert (taken <= free).all() and (taken == flow.new_load).all()
    objective = _objective(flow, start, heads, scores, load, load_cost, unmatched_cost, m)
    optimum = reference_optimum(n, m, tails, heads, scores, free, load, load_cost, unmatched_cost)
    assert objective == optimum
    price = flow.mentor_price
    best = np.full(n, -unmatched_cost, dtype=np.int64)
    for a in range(len(tails)):
        if free[heads[a]] > 0:
            best[tails[a]] = max(best[tails[a]], scores[a] - price[heads[a]])
    places = sum(
        max(0, int(price[j]) - load_cost * int(load[j] + k))
        for j in range(m)
        for k in range(int(free[j]))
    )
    assert int(best.sum()) + places == objective


@settings(max_examples=200, deadline=None)
@given(graphs(), st.data())
def test_warm_re_solves_in_a_row_on_a_market_short_of_places_stay_optimal_and_proven(graph, data):
    """Column generation's later iterations on "popular": fewer places than mentees, so every
    place ends up taken and each re-solve moves who stays unmatched through the sink (where a
    search is bounded by the nearest mentor with a place left empty). Arcs arrive in three
    batches; after each warm re-solve the flow is optimal and its duals prove it, and the
    potentials it leaves are what the next re-solve starts from."""
    n, m, tails, heads, scores, free, load, load_cost, unmatched_cost = graph
    free = np.minimum(free, max(1, n // max(m, 1) - 1))  # places short of mentees, mostly
    batch = np.array(
        data.draw(st.lists(st.integers(0, 2), min_size=len(tails), max_size=len(tails)))
    )
    batch = batch.astype(np.int64) if len(tails) else np.zeros(0, dtype=np.int64)
    flow = None
    for upto in range(3):
        keep = batch <= upto
        start = np.searchsorted(tails[keep], np.arange(n + 1)).astype(np.int64)
        reroute = np.zeros(n, dtype=bool)
        reroute[tails[batch == upto]] = True
        flow = solve(
            start,
            heads[keep],
            scores[keep],
            free,
            load,
            load_cost,
            unmatched_cost,
            warm=flow,
            reroute=None if flow is None else reroute,
        )
        t, h, s = tails[keep], heads[keep], scores[keep]
        objective = _objective(flow, start, h, s, load, load_cost, unmatched_cost, m)
        assert objective == reference_optimum(n, m, t, h, s, free, load, load_cost, unmatched_cost)
        price = flow.mentor_price
        best = np.full(n, -unmatched_cost, dtype=np.int64)
        for a in range(len(t)):
            if free[h[a]] > 0:
                best[t[a]] = max(best[t[a]], s[a] - price[h[a]])
        places = sum(
            max(0, int(price[j]) - load_cost * int(load[j] + k))
            for j in range(m)
            for k in range(int(free[j]))
        )
        assert int(best.sum()) + places == objective
