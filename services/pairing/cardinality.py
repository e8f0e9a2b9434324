"""How many mentees the candidate graph can match at all: a maximum b-matching, to seed it.

Column generation starts from each mentee's favourites; on a tight market many of them name
the same mentors, and a mentee the graph cannot match costs the flow (flow.py) a search of the
whole graph before it ends "unmatched". A maximum matching over the candidate arcs (capacities
only, no scores) says cheaply which mentees those are, so that matching.py can give them arcs
to mentors with places left before the first solve. It only chooses which arcs the graph starts
with: the optimum and its proof still come from the flow and the pricing. Compiled with numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


def maximum_matching(
    arc_start: NDArray[np.int64], arc_mentor: NDArray[np.int64], free: NDArray[np.int64]
) -> NDArray[np.int64]:
    """A maximum matching of the candidate arcs (CSR by mentee) with each mentor taking at most
    free[j] mentees: the mentor index per mentee, or -1."""
    return _augment(arc_start, arc_mentor, free.astype(np.int64))  # type: ignore[no-any-return]


_FAR = np.int64(2**62)


@numba.njit(cache=True)
def _augment(arc_start, arc_mentor, free):  # type: ignore[no-untyped-def]
    """Greedy first, then Hopcroft-Karp phases until no augmenting path is left.

    A phase: one breadth-first search from every unplaced mentee at once gives each mentee its
    distance (in moves) from them, up to the nearest mentor with room; then a depth-first search
    from each unplaced mentee along those layers augments a shortest path where it finds one
    (a mentee whose search fails is out for the phase; a mentor whose occupants all fail too;
    a full mentor is crossed only from the layer that first reached it).
    It ends when a phase's breadth-first search reaches no mentor with room: the matching is
    then maximum. One search per mentee (Kuhn's) took 2-4 s at 50k popular.
    """
    n, m = len(arc_start) - 1, len(free)
    assigned = np.full(n, -1, dtype=np.int64)
    slot_start = np.zeros(m + 1, dtype=np.int64)
    for j in range(m):
        slot_start[j + 1] = slot_start[j] + max(free[j], 0)
    slot_mentee = np.full(max(slot_start[m], 1), -1, dtype=np.int64)
    taken = np.zeros(m, dtype=np.int64)
    for i in range(n):
        for a in range(arc_start[i], arc_start[i + 1]):
            j = arc_mentor[a]
            if taken[j] < free[j]:
                slot_mentee[slot_start[j] + taken[j]] = i
                taken[j] += 1
                assigned[i] = j
                break
    dist = np.empty(n, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    seen = np.zeros(m, dtype=np.int64)  # the phase that reached (or gave up on) each mentor
    level = np.zeros(m, dtype=np.int64)  # the layer of the mentees that first reached it
    path_e = np.empty(n + 1, dtype=np.int64)
    path_j = np.empty(n + 1, dtype=np.int64)
    next_arc = np.empty(n + 1, dtype=np.int64)
    next_slot = np.empty(n + 1, dtype=np.int64)
    phase = 0
    while True:
        phase += 1
        # breadth first from every unplaced mentee: layers up to the nearest mentor with room
        tail = 0
        for i in range(n):
            if assigned[i] < 0 and arc_start[i] < arc_start[i + 1]:
                dist[i] = 0
                queue[tail] = i
                tail += 1
            else:
                dist[i] = _FAR
        head = 0
        limit = _FAR
        while head < tail:
            u = queue[head]
            head += 1
            if dist[u] >= limit:
                break
            for a in range(arc_start[u], arc_start[u + 1]):
                j = arc_mentor[a]
                if j == assigned[u] or seen[j] == phase:
                    continue
                seen[j] = phase
                level[j] = dist[u]
                if taken[j] < free[j]:
                    limit = dist[u]
                    continue
                for s in range(slot_start[j], slot_start[j] + taken[j]):
                    b = slot_mentee[s]
                    if dist[b] == _FAR:
                        dist[b] = dist[u] + 1
                        queue[tail] = b
                        tail += 1
        if limit == _FAR:
            return assigned
        phase += 1  # the depth-first searches mark the mentors they give up on with this one
        for source in range(n):
            if dist[source] != 0 or assigned[source] >= 0:
                continue
            depth = 0
            path_e[0] = source
            path_j[0] = -1
            next_arc[0] = arc_start[source]
            end = -1
            while depth >= 0 and end < 0:
                u = path_e[depth]
                if path_j[depth] >= 0:  # a full mentor: one of its occupants one layer on
                    j = path_j[depth]
                    moved = False
                    while next_slot[depth] < taken[j]:
                        b = slot_mentee[slot_start[j] + next_slot[depth]]
                        next_slot[depth] += 1
                        if dist[b] == dist[u] + 1:
                            depth += 1
                            path_e[depth] = b
                            path_j[depth] = -1
                            next_arc[depth] = arc_start[b]
                            moved = True
                            break
                    if not moved:
                        seen[j] = phase
                        path_j[depth] = -1
                    continue
                advanced = False
                while next_arc[depth] < arc_start[u + 1]:
                    j = arc_mentor[next_arc[depth]]
                    next_arc[depth] += 1
                    if j == assigned[u] or seen[j] == phase:
                        continue
                    path_j[depth] = j
                    if taken[j] < free[j]:
                        end = depth
                    elif dist[u] < limit and dist[u] == level[j]:
                        # only from the layer that reached it first (its occupants are one
                        # layer on): giving it up from there gives it up for the phase
                        next_slot[depth] = 0
                    else:
                        path_j[depth] = -1
                        continue
                    advanced = True
                    break
                if not advanced:
                    dist[u] = _FAR
                    depth -= 1
            if end < 0:
                continue
            # each mentee on the path moves to its mentor; from the free end back to the source
            for y in range(end, -1, -1):
                e, j = path_e[y], path_j[y]
                old = assigned[e]
                if old >= 0:
                    for s in range(slot_start[old], slot_start[old] + taken[old]):
                        if slot_mentee[s] == e:
                            last = slot_start[old] + taken[old] - 1
                            slot_mentee[s] = slot_mentee[last]
                            slot_mentee[last] = -1
                            taken[old] -= 1
                            break
                slot_mentee[slot_start[j] + taken[j]] = e
                taken[j] += 1
                assigned[e] = j
                dist[e] = _FAR  # on a path this phase: not again
