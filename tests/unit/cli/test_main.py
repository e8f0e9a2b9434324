"""Pure parts of the `mentorship` command: dead letters grouped by original, picked by number."""

from __future__ import annotations

import pytest

from cli.main import CommandFailed, _chosen, by_original
from shared.deadletters import ParkedMessage


def _parked(sequence: int, original: int, consumer: str) -> ParkedMessage:
    return ParkedMessage(
        sequence=sequence,
        service=consumer.split("-")[0],
        consumer=consumer,
        original_subject="mentorship.participant.registered",
        original_sequence=original,
        reason="unparseable JSON",
        at="2025-03-03T09:00:00+00:00",
        payload=b"not json",
        headers={},
    )


def test_dead_letters_of_one_original_message_form_one_group_in_stream_order():
    parked = [
        _parked(20, 7, "pairing-registered"),
        _parked(21, 3, "pairing-registered"),
        _parked(22, 7, "insights-registered"),
        _parked(23, 0, "scheduling-registered"),  # no original sequence: a group of its own
        _parked(24, 0, "insights-registered"),
    ]
    groups = by_original(parked)
    assert [[p.sequence for p in group] for group in groups] == [[23], [24], [21], [20, 22]]


def test_replay_by_number_picks_those_dead_letters_once_each():
    parked = [_parked(20, 7, "pairing-registered"), _parked(22, 7, "insights-registered")]
    assert [p.sequence for p in _chosen(parked, [22, 22])] == [22]
    assert _chosen(parked, None) == parked


def test_unknown_dead_letter_numbers_fail_naming_them():
    with pytest.raises(CommandFailed, match="not dead letters: #99"):
        _chosen([_parked(20, 7, "pairing-registered")], [20, 99])
