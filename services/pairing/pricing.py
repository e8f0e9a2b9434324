"""Scores of mentor-mentee pairs, and the search for pairs worth adding to the candidate graph.

Everyone is encoded as arrays (encoding.py). A pair's score is the sum of its components
(skills, goals, shared hours, channel, seniority, waitlist), each an integer number of points,
or -1 when a hard constraint rules the pair out. Mentors are grouped into chunks of alike
mentors (same zone-and-hours class and languages, similar skills); a chunk's bound is the
highest score any of its members could reach for a mentee. `search` finds, for each mentee,
the pairs whose score less the mentor's price beats a threshold, visiting chunks best bound
first and skipping every chunk and member whose bound cannot beat it: the exact answer without
scoring every pair. Compiled with numba; no I/O.
"""

from __future__ import annotations

import numba
import numpy as np

SKILLS, GOALS, HOURS, CHANNEL, SENIORITY, WAITLIST = range(6)
COMPONENTS = ("skills", "goals", "shared hours", "channel", "seniority", "waitlist")


@numba.njit(cache=True, inline="always")
def _level_value(wanted, offered):  # type: ignore[no-untyped-def]
    """2 when the mentor is ahead of the mentee in the skill, 1 when level with them."""
    if offered == 0:
        return 0
    if offered > wanted:
        return 2
    if offered == wanted:
        return 1
    return 0


@numba.njit(cache=True)
def components(i, j, e, m, t, w, out):  # type: ignore[no-untyped-def]
    """Writes the pair's components into out; returns False when a hard constraint fails.

    e, m: mentee and mentor arrays (tuples, see encoding.py), t: class tables, w: weights.
    """
    ze, zm = e[0][i], m[0][j]
    if not t[0][ze, zm]:
        return False
    if (e[1][i] & m[1][j]) == 0:
        return False
    if w[7] != 0 and e[9][i] >= 0 and e[9][i] == m[5][j]:
        return False
    key = i * t[3] + j
    forbidden = t[2]
    pos = np.searchsorted(forbidden, key)
    if pos < len(forbidden) and forbidden[pos] == key:
        return False
    offered = m[2]
    total = 0
    for s in range(e[2].shape[1]):
        skill = e[2][i, s]
        if skill < 0:
            break
        total += _level_value(e[3][i, s], offered[j, skill])
    n_sought = e[4][i]
    out[SKILLS] = (w[0] * total) // (2 * n_sought) if n_sought > 0 else 0
    hits = 0
    for g in range(e[5].shape[1]):
        goal = e[5][i, g]
        if goal < 0:
            break
        if offered[j, goal] > 0:
            hits += 1
    n_goals = e[6][i]
    out[GOALS] = (w[1] * hits) // n_goals if n_goals > 0 else 0
    out[HOURS] = t[1][ze, zm]
    out[CHANNEL] = w[2] if (e[7][i] & m[3][j]) != 0 else 0
    gap = m[4][j] - e[8][i]
    known = e[8][i] >= 0 and m[4][j] >= 0
    out[SENIORITY] = w[3] if known and w[4] <= gap <= w[5] else 0
    out[WAITLIST] = e[10][i]
    return True


@numba.njit(cache=True)
def score(i, j, e, m, t, w, scratch):  # type: ignore[no-untyped-def]
    """The pair's score in points, or -1 when a hard constraint rules it out."""
    if not components(i, j, e, m, t, w, scratch):
        return -1
    return scratch.sum()


@numba.njit(cache=True, inline="always")
def _total(i, j, e, m, t, w, f_lo, f_hi):  # type: ignore[no-untyped-def]
    """score() for the search's inner loop: the same sum, no scratch, the mentee's own
    forbidden keys forbidden[f_lo:f_hi] scanned directly (there are few)."""
    ze, zm = e[0][i], m[0][j]
    if not t[0][ze, zm] or (e[1][i] & m[1][j]) == 0:
        return -1
    if w[7] != 0 and e[9][i] >= 0 and e[9][i] == m[5][j]:
        return -1
    key = i * t[3] + j
    for x in range(f_lo, f_hi):
        if t[2][x] == key:
            return -1
    offered = m[2]
    value = 0
    for s in range(e[2].shape[1]):
        skill = e[2][i, s]
        if skill < 0:
            break
        value += _level_value(e[3][i, s], offered[j, skill])
    total = (w[0] * value) // (2 * e[4][i]) if e[4][i] > 0 else 0
    hits = 0
    for g in range(e[5].shape[1]):
        goal = e[5][i, g]
        if goal < 0:
            break
        if offered[j, goal] > 0:
            hits += 1
    if e[6][i] > 0:
        total += (w[1] * hits) // e[6][i]
    total += t[1][ze, zm]
    if (e[7][i] & m[3][j]) != 0:
        total += w[2]
    if e[8][i] >= 0 and m[4][j] >= 0 and w[4] <= m[4][j] - e[8][i] <= w[5]:
        total += w[3]
    return total + e[10][i]


@numba.njit(cache=True, inline="always")
def _seniority_span(i, e, w):  # type: ignore[no-untyped-def]
    """The mentor seniority levels (as bits) that earn mentee i the seniority points."""
    span = np.uint64(0)
    sen = e[8][i]
    if sen >= 0:
        lo, hi = max(sen + w[4], 0), min(sen + w[5], 63)
        for level in range(lo, hi + 1):
            span |= np.uint64(1) << np.uint64(level)
    return span


@numba.njit(cache=True, inline="always")
def _bound(i, c, e, ch, t, w, span):  # type: ignore[no-untyped-def]
    """chunk_bound without the class check (the caller visits feasible classes only)."""
    if (e[1][i] & ch[2][c]) == 0:
        return -1
    best = ch[3]
    total = 0
    for s in range(e[2].shape[1]):
        skill = e[2][i, s]
        if skill < 0:
            break
        total += _level_value(e[3][i, s], best[c, skill])
    n_sought = e[4][i]
    bound = (w[0] * total) // (2 * n_sought) if n_sought > 0 else 0
    hits = 0
    for g in range(e[5].shape[1]):
        goal = e[5][i, g]
        if goal < 0:
            break
        if best[c, goal] > 0:
            hits += 1
    n_goals = e[6][i]
    bound += (w[1] * hits) // n_goals if n_goals > 0 else 0
    bound += t[1][e[0][i], ch[1][c]]
    if (e[7][i] & ch[4][c]) != 0:
        bound += w[2]
    if (ch[5][c] & span) != 0:
        bound += w[3]
    return bound + e[10][i]


@numba.njit(cache=True)
def chunk_bound(i, c, e, ch, t, w):  # type: ignore[no-untyped-def]
    """The best score any mentor of chunk c could reach with mentee i, or -1 if none can."""
    if not t[0][e[0][i], ch[1][c]]:
        return -1
    return _bound(i, c, e, ch, t, w, _seniority_span(i, e, w))


@numba.njit(cache=True, inline="always")
def _popcount(x):  # type: ignore[no-untyped-def]
    x = np.uint64(x)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, inline="always")
def _offered_count(i, j, bits, extra, offers):  # type: ignore[no-untyped-def]
    """At least how many of mentee i's skills in bits (sought, or goals) mentor j offers."""
    low = bits[i, 0] & offers[j, 0]
    high = bits[i, 1] & offers[j, 1]
    count = _popcount(low) + _popcount(high)
    if high < 0:  # the last bit (index 127 on), shared by the skills from there on
        count += extra
    return count


@numba.njit(cache=True, inline="always")
def _member_bound(i, j, e, m, w, base):  # type: ignore[no-untyped-def]
    """An upper bound on pair (i, j)'s score without its level lookups: every sought skill
    j offers at 2 points of level, the goals it offers, channel and seniority exactly; base is
    the shared hours and waitlist points (the same for a chunk)."""
    bound = base
    n_sought = e[4][i]
    if n_sought > 0:
        bound += (w[0] * 2 * _offered_count(i, j, e[11], e[13][i, 0], m[6])) // (2 * n_sought)
    if e[6][i] > 0:
        bound += (w[1] * _offered_count(i, j, e[12], e[13][i, 1], m[6])) // e[6][i]
    if (e[7][i] & m[3][j]) != 0:
        bound += w[2]
    if e[8][i] >= 0 and m[4][j] >= 0 and w[4] <= m[4][j] - e[8][i] <= w[5]:
        bound += w[3]
    return bound


@numba.njit(cache=True, inline="always")
def _sift_down(keys, at, size):  # type: ignore[no-untyped-def]
    """Restores a max-heap of keys[:size] below position at."""
    key = keys[at]
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] > keys[child]:
            child += 1
        if keys[child] <= key:
            break
        keys[at] = keys[child]
        at = child
    keys[at] = key


BLOCK = 256  # mentees per parallel task
ROTATE = 2654435761  # Knuth's multiplicative hash: where mentee i starts in a run of equal prices


@numba.njit(cache=True, parallel=True)
def search(e, m, ch, t, w, price, floor, k, rows, ends):  # type: ignore[no-untyped-def]
    """For each mentee i = rows[r], up to k pairs with score - price[j] > floor[i], best first.

    Returns (mentor index, score) arrays of shape (len(rows), k), -1 where fewer were found,
    the best value max(floor[i], max over every feasible j of score - price[j]) per row, and how
    many pairs were scored. The chunk bounds make the best value exact without scoring all.
    ch[0] lists each chunk's members by ascending price (matching.py sorts them each pass), so
    a chunk's cheapest member comes first and a scan stops at the first member too dear; ends[x]
    is where the run of members at ch[0][x]'s price ends: each mentee scans a run from its own
    place in it (a rotation by mentee), so mentees with equal scores for many equally priced
    mentors (a cohort of alike people) are offered different ones, not all the same k; ch[7]
    and ch[8] list the chunks each mentee class shares enough time with (CSR by class). The
    mentees are searched in parallel blocks (numba prange).
    """
    n = len(rows)
    n_chunks = len(ch[1])
    found_j = np.full((n, k), -1, dtype=np.int64)
    found_s = np.full((n, k), -1, dtype=np.int64)
    best_value = np.empty(n, dtype=np.int64)
    members = ch[0]
    starts = ch[6]
    class_start = ch[7]
    class_chunks = ch[8]
    n_blocks = (n + BLOCK - 1) // BLOCK
    scored_by_block = np.zeros(n_blocks, dtype=np.int64)
    for blk in numba.prange(n_blocks):
        bounds = np.empty(max(n_chunks, 1), dtype=np.int64)
        open_chunks = np.empty(max(n_chunks, 1), dtype=np.int64)
        keys = np.empty(max(n_chunks, 1), dtype=np.int64)
        vals = np.empty(k, dtype=np.int64)
        scored = 0
        for r in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
            i = rows[r]
            vals[:] = np.int64(-(2**62))
            count = 0
            threshold = floor[i]
            top = floor[i]
            f_lo = np.searchsorted(t[2], i * t[3])
            f_hi = np.searchsorted(t[2], (i + 1) * t[3])
            span = _seniority_span(i, e, w)
            ze = e[0][i]
            # no pair of this mentee scores more: a chunk whose cheapest member is dearer than
            # that allows is skipped before its bound is computed
            most = w[0] + w[6] + w[2] + w[3] + e[10][i] + (w[1] if e[6][i] > 0 else 0)
            n_open = 0
            # visited from this mentee's own place in its class's list (a rotation), so that
            # among chunks of equal bound (alike mentors) different mentees try different ones
            first, n_class = class_start[ze], class_start[ze + 1] - class_start[ze]
            turn = (i * ROTATE) % n_class if n_class > 0 else 0
            for y in range(n_class):
                c = class_chunks[first + (turn + y) % n_class]
                if starts[c] == starts[c + 1]:
                    continue
                cheapest = price[members[starts[c]]]
                if most - cheapest <= threshold:
                    continue
                b = _bound(i, c, e, ch, t, w, span)
                if b >= 0 and b - cheapest > threshold:
                    bounds[n_open] = b - cheapest
                    open_chunks[n_open] = c
                    n_open += 1
            # best bound first (equal bounds in the rotated order: the key breaks ties by
            # position), taken one at a time from a heap: the scan usually stops after a few
            # of the open chunks, once a bound cannot beat the threshold (nor can the rest)
            for o in range(n_open):
                keys[o] = bounds[o] * n_open + (n_open - 1 - o)
            for o in range(n_open // 2 - 1, -1, -1):
                _sift_down(keys, o, n_open)
            heap_size = n_open
            while heap_size > 0:
                top_key = keys[0]
                heap_size -= 1
                keys[0] = keys[heap_size]
                _sift_down(keys, 0, heap_size)
                o = n_open - 1 - (top_key - (top_key // n_open) * n_open)
                pick = open_chunks[o]
                pick_bound = bounds[o]
                if pick_bound <= threshold:
                    break
                ub = pick_bound + price[members[starts[pick]]]
                # what a member offering none of the wanted skills could score at most: a
                # member's own bound (_member_bound) is checked only when this cannot beat it
                base = t[1][ze, ch[1][pick]] + e[10][i]
                plain = base + w[2] + w[3]
                run, run_end, at = starts[pick], starts[pick], 0
                for x in range(starts[pick], starts[pick + 1]):
                    if x == run_end:  # a run of members at one price: this mentee's turn in it
                        run, run_end = x, ends[x]
                        at = (i * ROTATE) % (run_end - run)
                    j = members[run + (at + x - run) % (run_end - run)]
                    if ub - price[j] <= threshold:
                        break  # members by ascending price: the rest cannot beat it either
                    if (
                        plain - price[j] <= threshold
                        and _member_bound(i, j, e, m, w, base) - price[j] <= threshold
                    ):
                        continue
                    s = _total(i, j, e, m, t, w, f_lo, f_hi)
                    scored += 1
                    if s < 0:
                        continue
                    value = s - price[j]
                    if value > top:
                        top = value
                    if value <= threshold:
                        continue
                    # insert into the top-k list (kept sorted, best first)
                    pos = count if count < k else k - 1
                    while pos > 0 and vals[pos - 1] < value:
                        if pos < k:
                            vals[pos] = vals[pos - 1]
                            found_j[r, pos] = found_j[r, pos - 1]
                            found_s[r, pos] = found_s[r, pos - 1]
                        pos -= 1
                    vals[pos] = value
                    found_j[r, pos] = j
                    found_s[r, pos] = s
                    if count < k:
                        count += 1
                    if count == k and vals[k - 1] > threshold:
                        threshold = vals[k - 1]
            best_value[r] = top
        scored_by_block[blk] = scored
    return found_j, found_s, best_value, scored_by_block.sum()


@numba.njit(cache=True)
def pair_components(mentee, mentor, e, m, t, w):  # type: ignore[no-untyped-def]
    """The components of each (mentee[x], mentor[x]) pair, one row each (zeros if infeasible)."""
    out = np.zeros((len(mentee), 6), dtype=np.int64)
    scratch = np.zeros(6, dtype=np.int64)
    for x in range(len(mentee)):
        if components(mentee[x], mentor[x], e, m, t, w, scratch):
            out[x] = scratch
    return out
