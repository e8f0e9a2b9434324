"""What a matching round forms and announces, as pure decisions."""

from __future__ import annotations

import datetime as dt
import json
import pickle

import pytest
from pydantic import ValidationError

from services.pairing import rounds
from services.pairing.matching import MatchResult, Objective, Profile, Proposal, Rules, Weights
from services.pairing.model import Certificate
from shared.events import MatchingCompleted, PairFormed, RoundRules, RoundWeights
from shared.worktime import Availability, Hours

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
WEEKDAYS = [Hours(d, dt.time(9), dt.time(17)) for d in range(5)]


def person(pid: str, *, capacity: int = 0) -> Profile:
    return Profile(pid, Availability("Europe/Berlin", WEEKDAYS), ("en",), capacity=capacity)


def test_pair_id_is_stable_and_differs_between_programs_and_rounds():
    assert rounds.pair_id("prog-a", "r1", "e-1") == rounds.pair_id("prog-a", "r1", "e-1")
    assert rounds.pair_id("prog-a", "r1", "e-1") != rounds.pair_id("prog-b", "r1", "e-1")
    assert rounds.pair_id("prog-a", "r1", "e-1") != rounds.pair_id("prog-a", "r2", "e-1")


def test_match_leaves_out_paired_mentees_and_counts_the_load_of_their_mentors():
    standing = rounds.Standing(
        mentors=(person("m-1", capacity=2), person("m-2", capacity=1)),
        mentees=(person("e-old"), person("e-1"), person("e-2")),
        pairings=(("m-1", "e-old"),),
        week_of=NOW.date(),
    )
    result = rounds.match(standing)
    # m-1 has one place left after e-old, m-2 one: each takes one of the new mentees
    assert sorted(p.mentor_id for p in result.pairs) == ["m-1", "m-2"]
    assert sorted(p.mentee_id for p in result.pairs) == ["e-1", "e-2"]
    assert result.unmatched_mentee_ids == []


def test_a_standing_and_its_result_cross_into_a_worker_process_unchanged():
    standing = rounds.Standing(
        mentors=(person("m-1", capacity=1),),
        mentees=(person("e-1"),),
        pairings=(),
        week_of=NOW.date(),
    )
    assert pickle.loads(pickle.dumps(standing)) == standing
    result = rounds.match(standing)
    assert pickle.loads(pickle.dumps(result)) == result


def test_outcome_announces_each_pair_then_the_round_with_a_bounded_sample_of_unmatched():
    unmatched = [f"e-{i:03}" for i in range(250)]
    result = MatchResult(
        pairs=[Proposal("m-1", "e-paired", "en", ("shared language: en",))],
        unmatched_mentee_ids=unmatched,
    )
    outcome = rounds.outcome(program_id="prog", round_id="r1", result=result, now=NOW)
    formed, completed = outcome.events
    assert isinstance(formed, PairFormed) and isinstance(completed, MatchingCompleted)
    assert formed.pair_id == rounds.pair_id("prog", "r1", "e-paired")
    assert formed.reasons == ["shared language: en"]
    assert (completed.pairs_formed, completed.unmatched_mentees) == (1, 250)
    assert completed.unmatched_mentee_ids == unmatched[: rounds.UNMATCHED_SAMPLE]
    assert [(p.pair_id, p.status) for p in outcome.pairs] == [(formed.pair_id, rounds.ACTIVE)]
    assert all(e.occurred_at == NOW and e.program_id == "prog" for e in outcome.events)


def test_a_round_that_pairs_nobody_still_announces_its_outcome():
    outcome = rounds.outcome(program_id="prog", round_id="r1", result=MatchResult(), now=NOW)
    [completed] = outcome.events
    assert isinstance(completed, MatchingCompleted)
    assert (completed.pairs_formed, completed.unmatched_mentees, outcome.pairs) == (0, 0, ())


def test_timed_match_brings_back_what_a_round_keeps_and_the_seconds_it_took():
    standing = rounds.Standing(
        mentors=(person("m-1", capacity=2), person("m-2", capacity=1)),
        mentees=(person("e-1"), person("e-2"), person("e-3"), person("e-4")),
        pairings=(),
        week_of=NOW.date(),
    )
    full = rounds.match(standing)
    lean, seconds = rounds.timed_match(standing)
    kept = [(p.mentor_id, p.mentee_id, p.language, p.reasons, p.score) for p in full.pairs]
    assert [(p.mentor_id, p.mentee_id, p.language, p.reasons, p.score) for p in lean.pairs] == kept
    assert len(kept) == 3 and any(p.shared and p.components for p in full.pairs)
    # the explanations the round does not store stay in the worker
    assert all(not (p.shared or p.components or p.alternatives) for p in lean.pairs)
    assert lean.unmatched_mentee_ids == full.unmatched_mentee_ids == ["e-4"]
    assert lean.unmatched == full.unmatched and lean.certificate == full.certificate
    assert 0 < seconds < 60


def test_a_timeline_keeps_each_phase_in_order_and_adds_a_phase_measured_elsewhere():
    timeline = rounds.Timeline()
    timeline.mark("load")
    timeline.mark("pool")
    timeline.add("match", 0.25)
    timeline.mark("load")  # a phase met again adds up
    data = json.loads(timeline.json())
    assert list(data["phases"]) == ["load", "pool", "match"]
    assert data["phases"]["match"] == 0.25
    assert all(seconds >= 0 for seconds in data["phases"].values())
    assert data["started_at"] <= data["ended_at"]


# --- which rules a round uses -----------------------------------------------------------------


def test_a_rounds_own_rules_win_over_the_programs_which_win_over_the_defaults():
    asked = RoundRules(objective="quality")
    stored = RoundRules(min_weekly_minutes=240, weights=RoundWeights(skills=900))
    rules, source = rounds.chosen_rules(asked, stored)
    # the request's replace the program's whole: what it leaves unset is the default
    assert source == "request"
    assert rules == Rules(objective=Objective.QUALITY)
    rules, source = rounds.chosen_rules(None, stored)
    assert source == "program"
    assert (rules.min_weekly_minutes, rules.weights.skills) == (240, 900)
    assert rules.weights.goals == Weights().goals and rules.objective is Rules().objective
    assert rounds.chosen_rules(None, None) == (Rules(), "default")
    # empty rules in the request are a round on the defaults, whatever the program stored
    assert rounds.chosen_rules(RoundRules(), stored) == (Rules(), "request")


def test_the_rules_a_coordinator_reads_set_every_field_and_give_back_the_same_rules():
    stored = RoundRules(min_stretch_minutes=45, seniority_gap=(1, 4), separate_departments=True)
    rules = rounds.rules_of(stored)
    shown = rounds.as_round_rules(rules)
    assert None not in shown.model_dump().values()
    assert None not in shown.weights.model_dump().values()  # type: ignore[union-attr]
    assert rounds.rules_of(shown) == rules
    assert rounds.as_round_rules(Rules()).min_weekly_minutes == 60


def test_a_bad_rule_is_named_with_what_to_write_instead():
    bad = {"objective": "fastest", "weights": {"skils": 3, "hours": -1}, "seniority_gap": [9, 2]}
    with pytest.raises(ValidationError) as caught:
        RoundRules.model_validate(bad)
    problems = dict(rounds.rule_problems(caught.value))
    assert set(problems) == {"objective", "weights.skils", "weights.hours", "seniority_gap"}
    assert "'quality' or 'participation'" in problems["objective"]
    assert '"fastest"' in problems["objective"]
    assert "use one of: skills, goals" in problems["weights.skils"]
    assert "greater than or equal to 0" in problems["weights.hours"]
    assert "write [2, 9]" in problems["seniority_gap"]
    with pytest.raises(ValidationError) as caught:
        RoundRules.model_validate_json("[1, 2]")
    assert "JSON object of rules" in rounds.rule_problems(caught.value)[0][1]


def test_a_round_the_matcher_could_not_prove_optimal_says_so_and_a_proven_one_says_nothing():
    def result(primal: int, bound: int) -> MatchResult:
        proof = Certificate(primal=primal, bound=bound, iterations=60, arcs=10, scored=10)
        return MatchResult(certificate=proof)

    assert rounds.unproven(result(600, 600)) is None
    assert rounds.unproven(MatchResult()) is None
    said = rounds.unproven(result(500, 600))
    assert said is not None
    assert "not proven optimal" in said and "60 iterations" in said and "report" in said
