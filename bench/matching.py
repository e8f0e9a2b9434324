"""A whole matching round at program size, against greedy and an exact solver in the same run.

    .venv/bin/python -m bench.matching [--sizes 1000 10000 50000] [--shapes diverse popular]
                                       [--exact-up-to 1000] [--greedy-up-to 10000] [--timeout 300]
                                       [--phases]

Each (size, shape) runs in its own process (peak RSS per size): a synthetic program
(bench/matching_data.py: zones clustered by region, Zipf skills, capacities 1-5, a third as many
mentors as mentees), then `propose_pairs` from profiles to proposals with explanations. Printed:
wall time and peak RSS of the round, the certified gap (dual bound against the objective), the
total score and pairs against the greedy rule (most-constrained first, each mentee its best
mentor with room) and, up to --exact-up-to, against OR-tools' min-cost flow over every
feasible pair. Targets: 50k x ~17k in <= 5 s and <= 1 GB, gap <= 0.01%, exact where checked.
--phases adds where the round's time goes: exclusion rules, encoding, pricing passes, flow solves
(each, with the mentees it leaves unmatched), explanations.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numba
import numpy as np

from bench.matching_data import WEEK_OF, program
from services.pairing import explain, flow, matching, pricing
from services.pairing.encoding import encode
from services.pairing.matching import Rules, _ruled_out, propose_pairs, unmatched_cost

RULES = Rules(separate_departments=True)


@numba.njit(cache=True)
def _greedy(e, m, t, w, free, load, load_cost):  # type: ignore[no-untyped-def]
    n, nm = len(e[0]), len(m[0])
    taken = np.zeros(nm, dtype=np.int64)
    total = 0
    pairs = 0
    lo_hi = np.zeros(2, dtype=np.int64)
    for i in range(n):
        lo_hi[0] = np.searchsorted(t[2], i * t[3])
        lo_hi[1] = np.searchsorted(t[2], (i + 1) * t[3])
        best, best_j = -1, -1
        for j in range(nm):
            if taken[j] >= free[j]:
                continue
            s = pricing._total(i, j, e, m, t, w, lo_hi[0], lo_hi[1])
            if s < 0:
                continue
            value = s - load_cost * (load[j] + taken[j])
            if value > best:
                best, best_j = value, j
        if best_j >= 0:
            taken[best_j] += 1
            total += best
            pairs += 1
    return total, pairs


@numba.njit(cache=True)
def _all_pairs(e, m, t, w):  # type: ignore[no-untyped-def]
    n, nm = len(e[0]), len(m[0])
    tails, heads, scores = [], [], []
    for i in range(n):
        lo = np.searchsorted(t[2], i * t[3])
        hi = np.searchsorted(t[2], (i + 1) * t[3])
        for j in range(nm):
            s = pricing._total(i, j, e, m, t, w, lo, hi)
            if s >= 0:
                tails.append(i)
                heads.append(j)
                scores.append(s)
    return np.array(tails), np.array(heads), np.array(scores)


def _exact(enc: Any, n: int) -> tuple[int, int]:
    """OR-tools over every feasible pair: (objective in the matcher's units, arcs)."""
    from ortools.graph.python import min_cost_flow

    tails, heads, scores = _all_pairs(enc.mentees, enc.mentors, enc.tables, enc.weights)
    m = len(enc.free)
    u = unmatched_cost(RULES, enc, n)
    f = min_cost_flow.SimpleMinCostFlow()
    sink = n + m
    f.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int64), n + heads.astype(np.int64), np.ones(len(tails), np.int64), -scores
    )
    f.add_arcs_with_capacity_and_unit_cost(
        np.arange(n), np.full(n, sink), np.ones(n, np.int64), np.full(n, u, np.int64)
    )
    slot_m = np.repeat(np.arange(m), enc.free)
    slot_k = np.concatenate([enc.load[j] + np.arange(enc.free[j]) for j in range(m)])
    f.add_arcs_with_capacity_and_unit_cost(
        n + slot_m,
        np.full(len(slot_m), sink),
        np.ones(len(slot_m), np.int64),
        RULES.weights.load * slot_k,
    )
    supplies = np.zeros(n + m + 1, dtype=np.int64)
    supplies[:n], supplies[sink] = 1, -n
    f.set_nodes_supplies(np.arange(n + m + 1), supplies)
    assert f.solve() == f.OPTIMAL
    return -int(f.optimal_cost()), len(tails)


def _timed_phases() -> tuple[dict[str, float], list[str]]:
    """Wraps the round's phases with timers (this process only: the bench's child)."""
    spent: dict[str, float] = {}
    solves: list[str] = []

    def timed(owner: Any, name: str, phase: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            out = inner(*args, **kwargs)
            took = time.perf_counter() - started
            spent[phase] = spent.get(phase, 0.0) + took
            if phase == "flow":
                warm = "warm" if kwargs.get("warm") is not None else "cold"
                left = int((out.assigned < 0).sum())
                solves.append(f"{warm} {took:.2f} s ({left} unmatched)")
            return out

        setattr(owner, name, wrapper)

    timed(matching, "_ruled_out", "rules")
    timed(matching, "encode", "encoding")
    timed(matching, "_search", "pricing")
    timed(flow, "solve", "flow")
    timed(explain, "result", "explanations")
    return spent, solves


def run_one(
    size: int, shape: str, exact: bool, greedy: bool, phases: bool = False
) -> dict[str, Any]:
    """One round in this process; what the parent prints."""
    mentors, mentees = program(size, shape=shape)
    started = time.perf_counter()
    # load the compiled code (numba's cache; compiles once per machine, then only loads)
    propose_pairs(mentors[:3], mentees[:3], current_load={}, week_of=WEEK_OF)
    warmup = time.perf_counter() - started
    spent, solves = _timed_phases() if phases else ({}, [])
    started = time.perf_counter()
    result = propose_pairs(mentors, mentees, current_load={}, week_of=WEEK_OF, rules=RULES)
    seconds = time.perf_counter() - started
    cert = result.certificate
    assert cert is not None
    out: dict[str, Any] = {
        "size": size,
        "mentors": len(mentors),
        "shape": shape,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pairs": len(result.pairs),
        "score": sum(p.score for p in result.pairs),
        "gap": cert.gap,
        "primal": cert.primal,
        "bound": cert.bound,
        "iterations": cert.iterations,
        "arcs": cert.arcs,
        "scored": cert.scored,
    }
    if phases:
        out |= {"phases": spent, "solves": solves}
    if greedy or exact:
        enc = encode(
            mentors,
            mentees,
            current_load={},
            forbidden=_ruled_out(mentors, mentees, ()),
            bonus=[0] * len(mentees),
            rules=RULES,
            week_of=WEEK_OF,
        )
    if greedy:
        started = time.perf_counter()
        g_score, g_pairs = _greedy(
            enc.mentees,
            enc.mentors,
            enc.tables,
            enc.weights,
            enc.free,
            enc.load,
            RULES.weights.load,
        )
        out |= {
            "greedy_seconds": time.perf_counter() - started,
            "greedy_score": int(g_score),
            "greedy_pairs": int(g_pairs),
        }
    if exact:
        started = time.perf_counter()
        value, arcs = _exact(enc, len(mentees))
        out |= {
            "exact_seconds": time.perf_counter() - started,
            "exact_primal": value,
            "exact_arcs": arcs,
        }
    return out


def _line(r: dict[str, Any]) -> str:
    text = (
        f"{r['size']:>6} x {r['mentors']:<6} {r['shape']:<8} round {r['seconds']:7.2f} s  "
        f"peak RSS {r['rss_mb']:6.0f} MB  gap {100 * r['gap']:.4f}%  pairs {r['pairs']}  "
        f"iterations {r['iterations']}  arcs {r['arcs']}  scored {r['scored']}"
    )
    if "warmup_seconds" in r:
        text += f"\n{'':22}compiled code loaded in {r['warmup_seconds']:.2f} s (not in the round)"
    if "phases" in r:
        text += f"\n{'':22}phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["phases"].items())
        text += f"\n{'':22}flow solves: " + "; ".join(r["solves"])
    if "greedy_score" in r:
        text += (
            f"\n{'':22}vs greedy: score x{r['score'] / max(1, r['greedy_score']):.4f}, "
            f"pairs x{r['pairs'] / max(1, r['greedy_pairs']):.4f} "
            f"(greedy {r['greedy_seconds']:.2f} s: {r['greedy_pairs']} pairs)"
        )
    if "exact_primal" in r:
        same = "equal" if r["exact_primal"] == r["primal"] else "DIFFERENT"
        text += (
            f"\n{'':22}vs exact (OR-tools, {r['exact_arcs']} feasible pairs, "
            f"{r['exact_seconds']:.2f} s): objective {same}; round x"
            f"{r['exact_seconds'] / max(r['seconds'], 1e-9):.1f} faster"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--shapes", nargs="+", default=["diverse", "popular"])
    parser.add_argument("--exact-up-to", type=int, default=1000)
    parser.add_argument("--greedy-up-to", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--phases", action="store_true", help="time each phase of the round")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        size, shape, exact, greedy, phases = args.one
        print(json.dumps(run_one(int(size), shape, exact == "1", greedy == "1", phases == "1")))
        return
    for size in args.sizes:
        for shape in args.shapes:
            flags = [
                str(int(size <= args.exact_up_to)),
                str(int(size <= args.greedy_up_to)),
                str(int(args.phases)),
            ]
            command = [sys.executable, "-m", "bench.matching", "--one", str(size), shape, *flags]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=args.timeout, check=True
                )
            except subprocess.TimeoutExpired:
                print(f"{size:>6} {shape:<8} did not finish in {args.timeout:.0f} s")
                continue
            except subprocess.CalledProcessError as exc:
                print(f"{size:>6} {shape:<8} failed:\n{exc.stderr[-2000:]}")
                continue
            print(_line(json.loads(done.stdout.strip().splitlines()[-1])), flush=True)


if __name__ == "__main__":
    main()
