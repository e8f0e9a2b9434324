"""Min-cost flow for one matching round: successive shortest paths with node potentials.

The network: every mentee sends one unit, either to a mentor (cost -score) or to "unmatched"
(cost `unmatched_cost`); a mentor passes at most its free capacity on to the sink, the k-th
mentee at an increasing slot cost (diminishing returns on load, a convex cost). Each mentee is
routed by Dijkstra on reduced costs (Jonker-Volgenant style, stopping at the sink), so the node
potentials are optimal duals when it ends: pricing (pricing.py) reads the mentors' prices from
them and the bound (primal against dual) certifies the result. Integer costs throughout, so
"optimal" is exact. Compiled with numba; the pure-Python reference solvers in tests check it.
See docs/adr/0011-exact-matching-by-column-generation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

UNPROCESSED = -2
UNMATCHED = -1
_INF = np.int64(2**62)


@dataclass(frozen=True)
class Flow:
    """An optimal assignment on the candidate graph and the duals that prove it."""

    assigned: NDArray[np.int64]  # mentor index per mentee, or UNMATCHED
    assigned_score: NDArray[np.int64]
    mentee_dual: NDArray[np.int64]  # u_i
    mentor_price: NDArray[np.int64]  # v_j
    new_load: NDArray[np.int64]  # mentees each mentor takes in this round


def solve(
    arc_start: NDArray[np.int64],
    arc_mentor: NDArray[np.int64],
    arc_score: NDArray[np.int64],
    free: NDArray[np.int64],
    load: NDArray[np.int64],
    load_cost: int,
    unmatched_cost: int,
) -> Flow:
    """The min-cost assignment over the candidate arcs (CSR by mentee), with its duals.

    free[j]: places mentor j has left; load[j]: mentees it has already (the k-th place, counted
    from zero, costs load_cost * k).
    """
    n, m = len(arc_start) - 1, len(free)
    assigned, score, q, new_load = _ssp(
        arc_start, arc_mentor, arc_score, free, load, load_cost, unmatched_cost, n, m
    )
    sink = q[n + m]
    return Flow(
        assigned=assigned,
        assigned_score=score,
        mentee_dual=q[:n] - sink,
        mentor_price=sink - q[n : n + m],
        new_load=new_load,
    )


@numba.njit(cache=True)
def _heap_push(keys, nodes, size, key, node):  # type: ignore[no-untyped-def]
    i = size
    keys[i] = key
    nodes[i] = node
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        nodes[parent], nodes[i] = nodes[i], nodes[parent]
        i = parent
    return size + 1


@numba.njit(cache=True)
def _heap_pop(keys, nodes, size):  # type: ignore[no-untyped-def]
    key, node = keys[0], nodes[0]
    size -= 1
    keys[0] = keys[size]
    nodes[0] = nodes[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[i], keys[child] = keys[child], keys[i]
        nodes[i], nodes[child] = nodes[child], nodes[i]
        i = child
    return key, node, size


@numba.njit(cache=True)
def _ssp(arc_start, arc_mentor, arc_score, free, load, load_cost, unmatched_cost, n, m):  # type: ignore[no-untyped-def]
    sink = n + m
    nodes_total = n + m + 1
    q = np.zeros(nodes_total, dtype=np.int64)
    for j in range(m):
        q[n + j] = -load_cost * load[j]
    assigned = np.full(n, UNPROCESSED, dtype=np.int64)
    assigned_score = np.zeros(n, dtype=np.int64)
    slot_start = np.zeros(m + 1, dtype=np.int64)
    for j in range(m):
        slot_start[j + 1] = slot_start[j] + free[j]
    slot_mentee = np.full(max(slot_start[m], 1), -1, dtype=np.int64)
    new_load = np.zeros(m, dtype=np.int64)

    dist = np.full(nodes_total, _INF, dtype=np.int64)
    stamp = np.zeros(nodes_total, dtype=np.int64)
    done = np.zeros(nodes_total, dtype=np.int64)
    pred = np.full(nodes_total, -1, dtype=np.int64)
    pred_score = np.zeros(nodes_total, dtype=np.int64)
    settled = np.empty(nodes_total, dtype=np.int64)
    heap_cap = len(arc_mentor) + slot_start[m] + 2 * n + 16
    heap_keys = np.empty(heap_cap, dtype=np.int64)
    heap_nodes = np.empty(heap_cap, dtype=np.int64)

    for source in range(n):
        best = q[sink] - unmatched_cost
        best_arc = -1
        for a in range(arc_start[source], arc_start[source + 1]):
            if free[arc_mentor[a]] == 0:
                continue
            value = arc_score[a] + q[n + arc_mentor[a]]
            if value > best:
                best = value
                best_arc = a
        q[source] = best
        # fast path: the tight arc leads straight to the sink at no reduced cost
        if best_arc < 0:
            assigned[source] = UNMATCHED
            continue
        j = arc_mentor[best_arc]
        if new_load[j] < free[j] and load_cost * (load[j] + new_load[j]) + q[n + j] == q[sink]:
            _add(slot_mentee, slot_start, new_load, j, source)
            assigned[source] = j
            assigned_score[source] = arc_score[best_arc]
            continue
        gen = source + 1
        size = 0
        n_settled = 0
        dist[source] = 0
        stamp[source] = gen
        pred[source] = -1
        size = _heap_push(heap_keys, heap_nodes, size, 0, source)
        total = _INF
        while size > 0:
            d, a, size = _heap_pop(heap_keys, heap_nodes, size)
            if done[a] == gen or d > dist[a]:
                continue
            done[a] = gen
            if a == sink:
                total = d
                break
            settled[n_settled] = a
            n_settled += 1
            reached = False
            if a < n:  # a mentee: to its other candidates, and to "unmatched" if it is not
                for arc in range(arc_start[a], arc_start[a + 1]):
                    b = n + arc_mentor[arc]
                    if assigned[a] == arc_mentor[arc] or free[arc_mentor[arc]] == 0:
                        continue
                    nd = d - arc_score[arc] + q[a] - q[b]
                    if stamp[b] != gen or nd < dist[b]:
                        stamp[b] = gen
                        dist[b] = nd
                        pred[b] = a
                        pred_score[b] = arc_score[arc]
                        size = _heap_push(heap_keys, heap_nodes, size, nd, b)
                if assigned[a] != UNMATCHED:
                    nd = d + unmatched_cost + q[a] - q[sink]
                    if stamp[sink] != gen or nd < dist[sink]:
                        stamp[sink] = gen
                        dist[sink] = nd
                        pred[sink] = a
                        size = _heap_push(heap_keys, heap_nodes, size, nd, sink)
                    if nd == d:  # nothing left in the heap is shorter: done
                        reached = True
            else:  # a mentor: back to one of its mentees, or on to the sink if it has room
                j = a - n
                for s in range(slot_start[j], slot_start[j] + new_load[j]):
                    b = slot_mentee[s]
                    nd = d + assigned_score[b] + q[a] - q[b]
                    if stamp[b] != gen or nd < dist[b]:
                        stamp[b] = gen
                        dist[b] = nd
                        pred[b] = a
                        size = _heap_push(heap_keys, heap_nodes, size, nd, b)
                if new_load[j] < free[j]:
                    nd = d + load_cost * (load[j] + new_load[j]) + q[a] - q[sink]
                    if stamp[sink] != gen or nd < dist[sink]:
                        stamp[sink] = gen
                        dist[sink] = nd
                        pred[sink] = a
                        size = _heap_push(heap_keys, heap_nodes, size, nd, sink)
                    if nd == d:  # nothing left in the heap is shorter: done
                        reached = True
            if reached:
                break
        if total == _INF:
            total = dist[sink]
        # potentials: settled nodes move by their distance short of the sink's
        for k in range(n_settled):
            v = settled[k]
            q[v] -= total - dist[v]
        # augment along the path, from the sink back to the source
        node = pred[sink]
        if node < n:  # the path ends with a mentee giving its place up: it stays unmatched
            old = assigned[node]
            if old >= 0:
                _remove(slot_mentee, slot_start, new_load, old, node)
            assigned[node] = UNMATCHED
            assigned_score[node] = 0
            node = pred[node]  # the mentor it left, or -1 when it is the source itself
        while node >= 0:  # node is a mentor; the mentee before it on the path moves in
            mentee = pred[node]
            old = assigned[mentee]
            if old >= 0:
                _remove(slot_mentee, slot_start, new_load, old, mentee)
            _add(slot_mentee, slot_start, new_load, node - n, mentee)
            assigned[mentee] = node - n
            assigned_score[mentee] = pred_score[node]
            node = pred[mentee]  # the mentor it left, or -1 for the source
    return assigned, assigned_score, q, new_load


@numba.njit(cache=True)
def _remove(slot_mentee, slot_start, new_load, j, mentee):  # type: ignore[no-untyped-def]
    first = slot_start[j]
    last = first + new_load[j] - 1
    for s in range(first, last + 1):
        if slot_mentee[s] == mentee:
            slot_mentee[s] = slot_mentee[last]
            slot_mentee[last] = -1
            new_load[j] -= 1
            return


@numba.njit(cache=True)
def _add(slot_mentee, slot_start, new_load, j, mentee):  # type: ignore[no-untyped-def]
    slot_mentee[slot_start[j] + new_load[j]] = mentee
    new_load[j] += 1
