"""What consumers say about bad messages, and how long they wait before retrying."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.backoff import backoff
from shared.deadletters import describe_invalid
from shared.events import ParticipantRegistered
from tests.unit.shared.samples import registration


def validation_error(data: Any) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        ParticipantRegistered.model_validate(data)
    return exc.value


class _Wrapped(BaseModel):
    """How faststream validates a handler argument named `event`."""

    event: ParticipantRegistered


# --- describe_invalid -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"not json at all", b"\xff\xfe\x00garbage", b'{"a": ', b""])
def test_non_json_payload_is_described_as_unparseable_json(payload):
    error = validation_error({})
    reason = describe_invalid(error, payload)
    assert reason.startswith("unparseable JSON (")
    assert "schema violation" not in reason


def test_schema_violation_names_the_field_and_the_problem():
    data = registration(timezone="Mars/Olympus_Mons")
    reason = describe_invalid(validation_error(data), json.dumps(data).encode())
    assert reason.startswith("schema violation: timezone: ")
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in reason
    assert "unparseable" not in reason


def test_schema_violation_gives_the_path_of_nested_fields():
    data = registration(working_hours=[{"weekday": 9, "start": "09:00", "end": "17:00"}])
    reason = describe_invalid(validation_error(data), json.dumps(data).encode())
    assert reason.startswith("schema violation: working_hours.0.weekday: ")


def test_schema_violation_of_the_whole_body_is_labelled_body():
    data = registration(role="mentor")  # no capacity: a model-level rule
    reason = describe_invalid(validation_error(data), json.dumps(data).encode())
    assert reason.startswith("schema violation: body: ")
    assert "a mentor needs a capacity" in reason


def test_schema_violation_drops_the_handler_argument_name_from_the_path():
    data = {"event": registration(timezone="Nowhere/Town")}
    with pytest.raises(ValidationError) as exc:
        _Wrapped.model_validate(data)
    reason = describe_invalid(exc.value, json.dumps(data).encode())
    assert reason.startswith("schema violation: timezone: ")
    assert "event." not in reason


def test_schema_violation_lists_five_problems_and_counts_the_rest():
    data: dict[str, Any] = {}  # 9 required fields missing
    error = validation_error(data)
    assert error.error_count() == 9
    reason = describe_invalid(error, b"{}")
    assert reason.count("Field required") == 5
    assert reason.endswith(" (+4 more)")
    assert "program_id: Field required" in reason


def test_schema_violation_with_few_problems_has_no_more_suffix():
    data = registration(email="nope")
    reason = describe_invalid(validation_error(data), json.dumps(data).encode())
    assert reason.startswith("schema violation: email: ")
    assert "more)" not in reason


# --- the one backoff ------------------------------------------------------------------------


def test_backoff_starts_at_the_base_and_doubles():
    assert [backoff(n, base=0.5, cap=1000) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped():
    assert backoff(5, base=1.0, cap=30.0) == 16.0
    assert backoff(6, base=1.0, cap=30.0) == 30.0
    assert backoff(50, base=1.0, cap=30.0) == 30.0


@given(st.floats(0.01, 100), st.floats(0.01, 10_000))
def test_backoff_never_decreases_is_a_float_and_stays_within_base_and_cap(base, cap):
    delays = [backoff(n, base=base, cap=cap) for n in range(0, 40)]
    assert delays == sorted(delays)
    assert all(isinstance(d, float) for d in delays)
    assert all(min(base, cap) <= d <= cap for d in delays)
